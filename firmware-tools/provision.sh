#!/usr/bin/env bash
# Provisions a board for the EdgeTune agent: the edgetune system user, /var/lib/edgetune (A/B bundle slots, field
# log), /etc/edgetune (agent.toml, agent.env with a fresh token, trusted/ keys), the published agent in
# /opt/edgetune-agent, and the systemd unit (checked with systemd-analyze verify, enabled and started).
#
#   sudo firmware-tools/provision.sh --agent PUBLISH_DIR --board PROFILE --trust KEY.pub [--model FACTORY.gguf]
#                                    [--root DIR] [--no-start]
#
# --agent   the output of: dotnet publish device/EdgeTune.Agent -c Release -r linux-arm64 --self-contained -o DIR
# --board   the device profile name bundles must name in 'compatible' (edgetune profiles list)
# --trust   a public key from 'edgetune bundle keygen' (repeatable); never the .key
# --model   a GGUF served until the first bundle is installed (optional: install a bundle instead)
# --root    write everything under DIR instead of / (an image being built, or a test); skips useradd and systemctl
# Re-running is safe: an existing agent.toml and agent.env are kept.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
deploy="$here/../device/EdgeTune.Agent/deploy"
root="" agent="" board="" model="" start=1
trust=()
die() { echo "provision.sh: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) agent="${2:?}"; shift 2 ;;
    --board) board="${2:?}"; shift 2 ;;
    --trust) trust+=("${2:?}"); shift 2 ;;
    --model) model="${2:?}"; shift 2 ;;
    --root) root="${2:?}"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) usage ;;
    *) echo "provision.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -n "$agent" ] && [ -n "$board" ] && [ ${#trust[@]} -gt 0 ] || usage
[ -x "$agent/edgetune-agent" ] || die "$agent/edgetune-agent: not found or not executable (publish the agent first)"
for key in "${trust[@]}"; do
  [ -f "$key" ] || die "$key: no such key file"
  grep -q "PRIVATE KEY" "$key" && die "$key: a private key; devices get the public key (.pub) only"
  grep -q "BEGIN PUBLIC KEY" "$key" || die "$key: not a PEM public key"
done
[ -z "$model" ] || [ -f "$model" ] || die "$model: no such model file"
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run as root (or give --root DIR)"

owner=(-o root -g root)
state_owner=(-o root -g root)
if [ -z "$root" ]; then
  if ! id edgetune >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/edgetune --no-create-home --shell /usr/sbin/nologin edgetune
    for group in gpio i2c video render; do getent group "$group" >/dev/null && usermod -aG "$group" edgetune; done
  fi
  owner=(-o root -g edgetune)
  state_owner=(-o edgetune -g edgetune)
fi

install -d -m 0755 "$root/opt/edgetune-agent" "$root/usr/local/bin" "$root/etc/systemd/system"
cp -a "$agent/." "$root/opt/edgetune-agent/"
ln -sfn /opt/edgetune-agent/edgetune-agent "$root/usr/local/bin/edgetune-agent"

# State: writable by the agent only. systemd's StateDirectory= would create it too; doing it here lets a factory
# model be placed before the first start.
install -d -m 0750 "${state_owner[@]}" "$root/var/lib/edgetune" "$root/var/lib/edgetune/slots" "$root/var/lib/edgetune/data" "$root/var/lib/edgetune/factory"
[ -z "$model" ] || install -m 0640 "${state_owner[@]}" "$model" "$root/var/lib/edgetune/factory/model.gguf"

# Configuration: root-owned, readable by the agent's group, never writable by it.
install -d -m 0750 "${owner[@]}" "$root/etc/edgetune" "$root/etc/edgetune/trusted"
for key in "${trust[@]}"; do install -m 0644 "${owner[@]}" "$key" "$root/etc/edgetune/trusted/$(basename "$key")"; done
if [ ! -f "$root/etc/edgetune/agent.toml" ]; then
  sed -e "s/^board = \"[^\"]*\"/board = \"$board\"/" -e 's/^api_token = .*$/# api_token: EDGETUNE_AGENT_TOKEN in agent.env/' \
    "$deploy/agent.toml" > "$root/etc/edgetune/agent.toml.new"
  install -m 0640 "${owner[@]}" "$root/etc/edgetune/agent.toml.new" "$root/etc/edgetune/agent.toml"
  rm -f "$root/etc/edgetune/agent.toml.new"
fi
if [ ! -f "$root/etc/edgetune/agent.env" ]; then
  umask 077
  printf 'EDGETUNE_AGENT_TOKEN=%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')" > "$root/etc/edgetune/agent.env"
  chown "${owner[1]}:${owner[3]}" "$root/etc/edgetune/agent.env" 2>/dev/null || true
  chmod 0640 "$root/etc/edgetune/agent.env"
fi

install -m 0644 "$deploy/edgetune-agent.service" "$root/etc/systemd/system/edgetune-agent.service"
if command -v systemd-analyze >/dev/null 2>&1 && [ -z "$root" ]; then
  systemd-analyze verify /etc/systemd/system/edgetune-agent.service
fi
if [ -z "$root" ] && [ "$start" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable --now edgetune-agent
  echo "provision.sh: edgetune-agent started; the token is in /etc/edgetune/agent.env" >&2
else
  echo "provision.sh: provisioned ${root:-/} (not started)" >&2
fi

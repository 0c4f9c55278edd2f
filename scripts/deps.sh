#!/usr/bin/env bash
# Installs the Debian packages Trove builds against (and the tools its tests drive) when missing.
set -euo pipefail
need=()
for p in libzstd-dev libgit2-dev libssl-dev libsqlite3-dev pkg-config git git-lfs python3 openssh-client openssh-server curl openssl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install Swift 6.x (https://swift.org) first" >&2; exit 1; }

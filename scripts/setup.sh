#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: a second run only checks and returns.
# Debian packages, the wasm32 rustup target, cargo-installed tools and npm packages all come
# from here, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (packages are added here as the suite starts to need them)
if ((${#need_apt[@]})); then
  missing=()
  for p in "${need_apt[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "setup: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
  fi
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

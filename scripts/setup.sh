#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: a second run only checks and returns.
# Debian packages, the wasm32 rustup target, cargo-installed tools and npm packages all come
# from here, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=(
  # Mesa's software Vulkan driver (lavapipe): the WGSL shader tests and the wgpu backend of
  # aqn-native (fused kernels, model, training steps) run on it in CI.
  mesa-vulkan-drivers
  # Open MPI for data-parallel training (`train --workers N`, tests/cli_distributed.rs): the
  # launcher, and the headers + libclang the rsmpi bindings are generated from.
  openmpi-bin
  libopenmpi-dev
  libclang-dev
  # The browser of the playwright tests (WebGPU on its SwiftShader), and a font for screenshots.
  chromium
  fonts-dejavu-core
)
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

# wasm-bindgen-cli must equal the wasm-bindgen crate pinned in web/Cargo.toml (about 6 minutes
# once; skipped while the installed version matches). No --locked: it fails to resolve here.
wbg=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg" ]; then
  echo "setup: cargo install wasm-bindgen-cli --version $wbg"
  cargo install wasm-bindgen-cli --version "$wbg"
fi

# playwright-core (pinned by tests/web/package-lock.json); it drives Debian's chromium, so no
# browser download (never `npx playwright install`).
if ! command -v npm >/dev/null; then
  echo "setup: node and npm are needed for the playwright tests" >&2
  exit 1
fi
pw=$(sed -n 's/.*"playwright-core": "\(.*\)".*/\1/p' tests/web/package.json)
if [ "$(cat tests/web/node_modules/playwright-core/package.json 2>/dev/null | sed -n 's/^  "version": "\(.*\)",/\1/p')" != "$pw" ]; then
  echo "setup: npm ci in tests/web"
  (cd tests/web && npm ci --no-audit --no-fund)
fi

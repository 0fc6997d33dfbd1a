#!/usr/bin/env bash
# The whole test suite (README's second command; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Mesa lavapipe (the shader tests) warns without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

step() { printf '\n== %s ==\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "tests (release: numerical code in debug is 30-45x slower)"
cargo test --release --workspace

step "aqn-core pure math for wasm32"
cargo build --release -p aqn-core --no-default-features --target wasm32-unknown-unknown

step "browser playground: build (wasm32, wasm-bindgen)"
scripts/build_web.sh

step "browser playground: playwright (WebGPU on SwiftShader, CPU fallback, screenshots in target/web-test)"
cargo build --release -p aqn-native
(cd tests/web && node --test playground.test.mjs)

echo
echo "all tests passed"

#!/usr/bin/env bash
# The whole test suite (README's second command; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Mesa lavapipe (the shader tests and the wgpu backend) warns without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# One feature set for every cargo step (clippy, tests, the binary), so nothing is compiled twice:
# the defaults plus Burn's wgpu backend and the fused CubeCL kernels, whose tests run on Mesa
# lavapipe (tests/fused_quant_parity.rs: bit-exact format parity; tests/wgpu_model.rs: logits
# parity with the fixtures and AdamW steps beside the CPU's; tests/packed_linear.rs: packed
# projections bit-identical to fake quantization; tests/cli_wgpu.rs: train, pretrain, srdd and
# bench with --backend wgpu). A machine without a Vulkan adapter fails them: they never
# skip. `mpi`: data-parallel training over Open MPI (tests/cli_distributed.rs: two workers on
# 127.0.0.1 against one process).
FEATURES=aqn-core/wgpu,aqn-native/wgpu,aqn-native/mpi

step() { printf '\n== %s ==\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --release --workspace --all-targets --features "$FEATURES" -- -D warnings

step "tests (release: numerical code in debug is 30-45x slower; the wgpu ones on lavapipe)"
cargo test --release --workspace --features "$FEATURES"

step "aqn-core pure math for wasm32"
cargo build --release -p aqn-core --no-default-features --target wasm32-unknown-unknown

step "browser playground: build (wasm32, wasm-bindgen)"
scripts/build_web.sh

step "browser playground: playwright (WebGPU on SwiftShader, CPU fallback, screenshots in target/web-test)"
# target/release/aqn-native: the binary the tests above built and ran. This is a no-op that makes
# sure of it. `cargo build -p aqn-native` would resolve features without the workspace's
# dev-dependencies (criterion turns on ciborium's `default`), so it would compile ciborium, CubeCL,
# Burn and both crates a second time (checked: it starts over at ciborium; a cold wgpu build of
# that stack takes 17+ min here).
cargo test --release --workspace --features "$FEATURES" --no-run
# The binary lives under CARGO_TARGET_DIR when one is set (tests/web reads AQN_NATIVE).
export AQN_NATIVE="${AQN_NATIVE:-$(realpath "${CARGO_TARGET_DIR:-target}")/release/aqn-native}"
(cd tests/web && node --test playground.test.mjs)

echo
echo "all tests passed"

#!/usr/bin/env bash
# The GPU benchmarks of the native runner, on a machine with an NVIDIA GPU (not part of CI):
#   1. writes the Qwen2.5-1.5B architecture's config.json (random weights, nothing downloaded);
#   2. builds aqn-native with the CUDA backend and CubeCL autotune;
#   3. `aqn-native bench`: fused fake-quantize bandwidth (256M f32) beside a device copy, rollout
#      tokens/s and one GRPO forward+backward of the random-weight model, as JSON;
#   4. the same rollout and forward+backward in HF transformers (PyTorch) on the same GPU, and the
#      ratios (targets: fake-quantize >= 50% of the copy bandwidth, rollout tokens/s >= 1x HF).
# Usage: scripts/gpu_bench.sh [OUT_DIR]   (env: BACKEND=cuda|wgpu, BATCH, PROMPT_LEN, NEW_TOKENS,
#        ELEMENTS, REPEATS; PYTHON; CARGO_TARGET_DIR; AQN_NATIVE=path/to/aqn-native to skip the
#        build and use that binary, e.g. the one scripts/test.sh built). Needs the CUDA toolkit
#        (BACKEND=cuda) and `pip install torch transformers`.
# SMOKE=1: the same pipeline at toy sizes on any machine (default BACKEND=wgpu, so Mesa lavapipe
#        without a GPU; no autotune; the built-in tiny model's config.json instead of Qwen2.5's;
#        transformers on the CPU when there is no CUDA): checks that everything runs, measures
#        nothing worth reporting.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
smoke="${SMOKE:-0}"
if [ "$smoke" = 1 ]; then
  out="${1:-target/gpu-bench-smoke}"
  backend="${BACKEND:-wgpu}"
  features="$backend"
  batch="${BATCH:-2}"
  prompt_len="${PROMPT_LEN:-8}"
  new_tokens="${NEW_TOKENS:-8}"
  elements="${ELEMENTS:-65536}"
  repeats="${REPEATS:-1}"
else
  out="${1:-target/gpu-bench}"
  backend="${BACKEND:-cuda}"
  features="$backend,autotune"
  batch="${BATCH:-8}"
  prompt_len="${PROMPT_LEN:-128}"
  new_tokens="${NEW_TOKENS:-128}"
  elements="${ELEMENTS:-268435456}"
  repeats="${REPEATS:-3}"
fi
python="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"

if [ "$smoke" = 1 ]; then
  model="$out/tiny"
  mkdir -p "$model"
  cp assets/tiny/config.json "$model/config.json"
else
  model="$out/qwen2.5-1.5b"
  "$python" scripts/gpu_bench/qwen25_config.py --out "$model"
fi
if [ "$backend" = cuda ] && [ -z "${AQN_NATIVE:-}" ] &&
  ! compgen -G "$HOME/.local/share/tracel/tracel-llvm-*/.tracel-llvm-installed" >/dev/null; then
  # cubecl-cuda's build script (tracel-llvm-bundler) downloads an LLVM bundle from GitHub
  # releases; offline it fails with "failed to lookup address information".
  echo "note: building the CUDA backend downloads LLVM from github.com/tracel-ai/tracel-llvm" \
    "(into ~/.local/share/tracel); without network access use BACKEND=wgpu (Vulkan)," \
    "or AQN_NATIVE=<a binary built elsewhere>" >&2
fi
if [ -n "${AQN_NATIVE:-}" ]; then
  bin="$AQN_NATIVE"
else
  cargo build --release -p aqn-native --features "$features"
  bin="$target/release/aqn-native"
fi
"$bin" bench --backend "$backend" --elements "$elements" \
  --model "$model" --batch "$batch" --prompt-len "$prompt_len" \
  --new-tokens "$new_tokens" --repeats "$repeats" --json "$out/aqn.json"
"$python" scripts/gpu_bench/hf_baseline.py --model "$model" --batch "$batch" \
  --prompt-len "$prompt_len" --new-tokens "$new_tokens" --repeats "$repeats" \
  --json "$out/hf.json" --compare "$out/aqn.json"
echo "results: $out/aqn.json $out/hf.json"

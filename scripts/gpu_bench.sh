#!/usr/bin/env bash
# The GPU benchmarks of the native runner, on a machine with an NVIDIA GPU (not part of CI):
#   1. writes the Qwen2.5-1.5B architecture's config.json (random weights, nothing downloaded);
#   2. builds aqn-native with the CUDA backend and CubeCL autotune;
#   3. `aqn-native bench`: fused fake-quantize bandwidth (256M f32) beside a device copy, rollout
#      tokens/s and one GRPO forward+backward of the random-weight model, as JSON;
#   4. the same rollout and forward+backward in HF transformers (PyTorch) on the same GPU, and the
#      ratios (targets: fake-quantize >= 50% of the copy bandwidth, rollout tokens/s >= 1x HF).
# Usage: scripts/gpu_bench.sh [OUT_DIR]   (env: BACKEND=cuda|wgpu, BATCH, PROMPT_LEN, NEW_TOKENS,
#        ELEMENTS, REPEATS; PYTHON). Needs the CUDA toolkit and `pip install torch transformers`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/gpu-bench}"
backend="${BACKEND:-cuda}"
batch="${BATCH:-8}"
prompt_len="${PROMPT_LEN:-128}"
new_tokens="${NEW_TOKENS:-128}"
elements="${ELEMENTS:-268435456}"
repeats="${REPEATS:-3}"
python="${PYTHON:-python3}"
mkdir -p "$out"

"$python" scripts/gpu_bench/qwen25_config.py --out "$out/qwen2.5-1.5b"
cargo build --release -p aqn-native --features "$backend,autotune"
target/release/aqn-native bench --backend "$backend" --elements "$elements" \
  --model "$out/qwen2.5-1.5b" --batch "$batch" --prompt-len "$prompt_len" \
  --new-tokens "$new_tokens" --repeats "$repeats" --json "$out/aqn.json"
"$python" scripts/gpu_bench/hf_baseline.py --model "$out/qwen2.5-1.5b" --batch "$batch" \
  --prompt-len "$prompt_len" --new-tokens "$new_tokens" --repeats "$repeats" \
  --json "$out/hf.json" --compare "$out/aqn.json"
echo "results: $out/aqn.json $out/hf.json"

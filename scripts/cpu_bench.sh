#!/usr/bin/env bash
# CPU throughput of the Qwen2 model against PyTorch eager (issue 4): for hidden 256, intermediate
# 768, 4 layers, 8/2 heads, vocab 1024 and a batch of 8 x 256 tokens, forward (logits of every
# position) and forward+backward (next-token loss) tokens/s of
#   - core/benches/qwen2_train.rs (Burn NdArray, release), and
#   - scripts/cpu_bench/torch_qwen2.py (transformers Qwen2ForCausalLM, f32, eager attention),
# at each thread count of THREADS (Rust: RAYON_NUM_THREADS, with matrixmultiply single-threaded
# because aqn-core's GEMMs split their rows over Rayon's threads themselves; PyTorch:
# torch.set_num_threads and OMP_NUM_THREADS), then the Rust / PyTorch ratio table.
# Usage: scripts/cpu_bench.sh [OUT_DIR]   (env: THREADS="$(nproc) 1", WARMUP=2, REPEATS=5,
#        BATCH=8, SEQ=256, PYTHON=python3 with torch and transformers). Results: OUT_DIR/*.json.
# The numbers are only meaningful on an otherwise idle machine: the script prints the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/cpu-bench}"
threads="${THREADS:-$(nproc) 1}"
warmup="${WARMUP:-2}"
repeats="${REPEATS:-5}"
batch="${BATCH:-8}"
seq="${SEQ:-256}"
python="${PYTHON:-python3}"
mkdir -p "$out"
rm -f "$out"/rust_t*.json "$out"/torch_t*.json

cargo bench -p aqn-core --bench qwen2_train --no-run
for t in $threads; do
  echo "threads $t: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  RAYON_NUM_THREADS="$t" MATMUL_NUM_THREADS=1 AQN_BENCH_WARMUP="$warmup" \
    AQN_BENCH_REPEATS="$repeats" AQN_BENCH_BATCH="$batch" AQN_BENCH_SEQ="$seq" \
    cargo bench -q -p aqn-core --bench qwen2_train > "$out/rust_t$t.json"
  OMP_NUM_THREADS="$t" MKL_NUM_THREADS="$t" "$python" scripts/cpu_bench/torch_qwen2.py \
    --threads "$t" --warmup "$warmup" --repeats "$repeats" --batch "$batch" --seq "$seq" \
    > "$out/torch_t$t.json"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$python" scripts/cpu_bench/compare.py "$out"

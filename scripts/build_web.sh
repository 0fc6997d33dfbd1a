#!/usr/bin/env bash
# Builds the browser playground into www/pkg (gitignored): aqn-web for wasm32, wasm-bindgen
# (the CLI version must equal the crate's pinned version; scripts/setup.sh installs it), then,
# when tests/web/node_modules has npm's binaryen (Debian's wasm-opt 108 emits broken wasm) and
# AQN_WASM_OPT=1, wasm-opt -O3. Serve with: cargo run --release -p aqn-native -- serve
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "build_web: wasm-bindgen-cli $want is needed (found '${have:-none}'): run scripts/setup.sh" >&2
  exit 1
fi

cargo build --release -p aqn-web --target wasm32-unknown-unknown
rm -rf www/pkg
wasm-bindgen --target web --no-typescript --out-dir www/pkg \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/aqn_web.wasm"
opt=tests/web/node_modules/.bin/wasm-opt
if [ "${AQN_WASM_OPT:-0}" = 1 ]; then
  if [ -x "$opt" ]; then
    "$opt" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals www/pkg/aqn_web_bg.wasm -o www/pkg/aqn_web_bg.wasm
  else
    echo "build_web: AQN_WASM_OPT=1 but $opt is missing (npm install binaryen in tests/web)" >&2
    exit 1
  fi
fi
# The run viewer's sample run.
mkdir -p www/pkg/samples
cp -r tests/fixtures/run_sample www/pkg/samples/
rm -f www/pkg/samples/run_sample/*.py
raw=$(stat -c %s www/pkg/aqn_web_bg.wasm)
gz=$(gzip -9 -c www/pkg/aqn_web_bg.wasm | wc -c)
echo "build_web: www/pkg/aqn_web_bg.wasm $raw bytes ($gz gzipped)"

#!/usr/bin/env python3
"""The ratio table of scripts/cpu_bench.sh: Rust (Burn NdArray) over PyTorch eager tokens/s.

Usage: compare.py DIR [--markdown]   (reads DIR/rust_t*.json and DIR/torch_t*.json; stdlib only)
"""

import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def threads_of(path):
    return int(path.rsplit("_t", 1)[1].removesuffix(".json"))


def main():
    out = sys.argv[1]
    rows = []
    rust_paths = sorted(glob.glob(os.path.join(out, "rust_t*.json")), key=threads_of, reverse=True)
    for rust_path in rust_paths:
        threads = threads_of(rust_path)
        torch_path = os.path.join(out, f"torch_t{threads}.json")
        if not os.path.exists(torch_path):
            continue
        rust, torch = load(rust_path), load(torch_path)
        for phase in ("forward", "forward_backward", "decode_tiny", "decode_h256"):
            if phase not in rust or phase not in torch:
                continue
            r, t = rust[phase]["tokens_per_s"], torch[phase]["tokens_per_s"]
            rows.append((threads, phase, r, t, r / t))
    if not rows:
        sys.exit(f"no rust_t*.json / torch_t*.json pairs in {out}")
    first = load(rust_paths[0])
    c = first["config"]
    print(
        f"Qwen2 hidden {c['hidden']}, intermediate {c['intermediate']}, {c['layers']} layers, "
        f"{c['heads']}/{c['kv_heads']} heads, vocab {c['vocab']}; batch {first['batch']} x seq "
        f"{first['seq']}; tokens/s over the median of {first['repeats']} runs (decode: generated "
        "tokens/s with the KV cache; transformers' generate)"
    )
    print()
    print("| threads | phase | Rust (Burn NdArray) tok/s | PyTorch eager tok/s | Rust / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for threads, phase, r, t, ratio in rows:
        print(f"| {threads} | {phase} | {r:.0f} | {t:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

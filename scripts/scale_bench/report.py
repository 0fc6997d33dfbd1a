#!/usr/bin/env python3
"""The results of scripts/scale_bench.sh (stdlib only).

    report.py aqn-result LOG METRICS BASE BATCH LOAD   one aqn run as a JSON line
    report.py with-load LOAD                           adds the load average to the JSON line on stdin
    report.py table DIR [--markdown]                   the table with the ratios
"""

import glob
import json
import os
import re
import sys

BASE_NAMES = {"nvfp4": "aqn NVFP4 W4A16 (packed)", "mxfp4": "aqn MXFP4 W4A16 (packed)",
              "bf16": "aqn BF16 (packed, model.dtype=bf16)"}
HF_NAMES = {"bfloat16": "transformers generate bf16", "float32": "transformers generate f32"}
UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def aqn_result(log, metrics, base, batch, load):
    text = open(log, errors="replace").read().replace("\r", "\n")
    rss_gb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024**2
    weights = re.search(r"weights\s+(\S+) base, ([\d.]+) ([KMG]?B)", text)
    step = next(json.loads(line) for line in open(metrics) if '"timing/step_s"' in line)
    print(json.dumps({
        "base": base,
        "batch": int(batch),
        "storage": weights.group(1),
        "weight_bytes": float(weights.group(2)) * UNITS[weights.group(3)],
        "rollout_s": step["timing/rollout_s"],
        "rollout_tokens_per_s": step["timing/rollout_tokens_per_s"],
        "new_tokens": step["response_length/mean"],
        "update_s": step["timing/update_s"],
        "step_s": step["timing/step_s"],
        "peak_rss_gb": rss_gb,
        "load": float(load),
    }))


def with_load(load):
    result = json.loads(sys.stdin.read().strip().splitlines()[-1])
    result["load"] = float(load)
    print(json.dumps(result))


def read(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def table(out, markdown):
    machine = read(os.path.join(out, "machine.json"))
    aqn = {}
    for path in glob.glob(os.path.join(out, "aqn_*_b*.json")):
        r = read(path)
        aqn[(r["base"], r["batch"])] = r
    hf = {}
    for path in glob.glob(os.path.join(out, "hf_generate_*_b*.json")):
        r = read(path)
        hf[(r["dtype"], r["batch"])] = r
    update = read(os.path.join(out, "hf_update.json")) if os.path.exists(os.path.join(out, "hf_update.json")) else None
    batches = sorted({b for _, b in aqn} | {b for _, b in hf})
    sep = " | " if markdown else "  "

    def row(cells):
        line = sep.join(cells)
        return f"| {line} |" if markdown else line

    print(f"machine: {machine['threads']} threads, copy {machine['copy_gb_per_s']} GB/s, read "
          f"{machine['read_gb_per_s']} GB/s, f32 FMA {machine['fma_gflop_per_s']} GFLOP/s")
    print()
    head = ["rollout tokens/s"] + [f"batch {b}" for b in batches] + ["peak RSS GB", "max load"]
    print(row(head))
    if markdown:
        print("|" + "---|" * len(head))
    for base in BASE_NAMES:
        rs = [aqn.get((base, b)) for b in batches]
        if not any(rs):
            continue
        cells = [f"{r['rollout_tokens_per_s']:.2f}" if r else "-" for r in rs]
        rss = max(r["peak_rss_gb"] for r in rs if r)
        print(row([BASE_NAMES[base]] + cells + [f"{rss:.2f}", f"{max(r['load'] for r in rs if r):.2f}"]))
    for dtype in HF_NAMES:
        rs = [hf.get((dtype, b)) for b in batches]
        if not any(rs):
            continue
        cells = [f"{r['tokens_per_s']:.2f}" if r else "-" for r in rs]
        rss = max(r["peak_rss_gb"] for r in rs if r)
        print(row([HF_NAMES[dtype]] + cells + [f"{rss:.2f}", f"{max(r['load'] for r in rs if r):.2f}"]))
    for base in BASE_NAMES:
        ratios = []
        for b in batches:
            a, h = aqn.get((base, b)), hf.get(("bfloat16", b))
            ratios.append(f"{a['rollout_tokens_per_s'] / h['tokens_per_s']:.2f}x" if a and h else "-")
        if any(r != "-" for r in ratios):
            print(row([f"{BASE_NAMES[base]} / transformers bf16"] + ratios + ["", ""]))
    print()
    # The decode step against the memory bound: every step reads the weights once.
    print(row(["decode step (rollout s / new tokens)"] + [f"batch {b}" for b in batches]))
    if markdown:
        print("|" + "---|" * (len(batches) + 1))
    for base in BASE_NAMES:
        cells = []
        for b in batches:
            r = aqn.get((base, b))
            if not r:
                cells.append("-")
                continue
            step = r["rollout_s"] / max(r["new_tokens"], 1)
            bound = r["weight_bytes"] / (machine["read_gb_per_s"] * 1e9)
            cells.append(f"{step * 1e3:.0f} ms ({100 * bound / step:.0f}% of the {bound * 1e3:.0f} ms bound)")
        if any(c != "-" for c in cells):
            print(row([BASE_NAMES[base]] + cells))
    print()
    if update:
        print(row(["update step (1 prompt x 2 responses)", "seconds", "/ transformers+PEFT bf16"]))
        if markdown:
            print("|---|---|---|")
        print(row(["transformers + PEFT bf16 (fwd+bwd+AdamW)", f"{update['seconds']:.2f}", "1.00"]))
        for base in BASE_NAMES:
            r = aqn.get((base, 2))
            if r:
                print(row([f"{BASE_NAMES[base]} update_s", f"{r['update_s']:.2f}",
                           f"{r['update_s'] / update['seconds']:.2f}"]))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "aqn-result":
        aqn_result(*args)
    elif cmd == "with-load":
        with_load(*args)
    elif cmd == "table":
        table(args[0], "--markdown" in args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

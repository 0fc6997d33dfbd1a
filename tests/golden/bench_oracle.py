#!/usr/bin/env python3
"""Throughput of the numpy oracle's fake-quantize (f32 in, f32 out) and its error metrics on N(0,1) data.

Usage (from the repository root):  python3 tests/golden/bench_oracle.py [--elements N] [--repeats R]

1. Throughput: 16M (4096 x 4096) N(0,1) f32 elements through `fake_quantize_mxfp4` (FLOOR) and
   `fake_quantize_nvfp4` (two-level, 1-D blocks): quantize (scales + E2M1 codes) and dequantize, no
   packing. numpy runs single-threaded for these element-wise ops. Best of R runs.
2. Metrics (docs/spec.md section 1) on 1,048,576 N(0,1) elements from np.random.default_rng(0):
   mean element relative error mean(|x-q|/(|x|+1e-10)), norm ratio ||x-q||/||x||, deadzone ratio
   (x != 0 and q == 0). SPEC quotes 0.210/0.179, 0.115/0.095 and 8.8%/6.8% (MXFP4/NVFP4).
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import fake_quantize_mxfp4, fake_quantize_nvfp4  # noqa: E402

F32 = np.float32
QUANTIZERS = [("MXFP4 FLOOR", lambda x: fake_quantize_mxfp4(x, "floor")),
              ("NVFP4 two-level", lambda x: fake_quantize_nvfp4(x, "two-level"))]


def bench(n, repeats):
    side = int(round(n ** 0.5))
    x = np.random.default_rng(0).standard_normal((n // side, side), dtype=F32)
    print(f"throughput: {x.size} elements, shape {list(x.shape)}, best of {repeats}")
    for name, fq in QUANTIZERS:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            q = fq(x)
            best = min(best, time.perf_counter() - t0)
        assert q.dtype == F32 and q.shape == x.shape
        print(f"  {name:16s} {best:7.3f} s   {x.size / best / 1e6:8.2f} M elements/s")


def metrics(x, q):
    d = np.abs(x.astype(np.float64) - q)
    rel = float(np.mean(d / (np.abs(x.astype(np.float64)) + 1e-10)))
    norm = float(np.linalg.norm(d) / np.linalg.norm(x.astype(np.float64)))
    dead = float(np.mean((x != 0) & (q == 0)))
    return rel, norm, dead


def report_metrics():
    n = 1_048_576
    sources = [("default_rng(0).standard_normal(n, dtype=float32)",
                np.random.default_rng(0).standard_normal(n, dtype=F32)),
               ("default_rng(0).standard_normal(n) (f64) cast to f32",
                np.random.default_rng(0).standard_normal(n).astype(F32))]
    for label, flat in sources:
        x = flat.reshape(1024, 1024)
        print(f"metrics on {n} N(0,1) elements, {label}:")
        for name, fq in QUANTIZERS:
            rel, norm, dead = metrics(x, fq(x))
            print(f"  {name:16s} mean rel err {rel:.4f}   norm ratio {norm:.4f}   deadzone {100 * dead:.2f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elements", type=int, default=1 << 24)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or 'unknown cpu'})")
    bench(args.elements, args.repeats)
    report_metrics()


if __name__ == "__main__":
    main()

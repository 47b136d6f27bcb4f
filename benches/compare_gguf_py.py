#!/usr/bin/env python3
"""kquants vs gguf-py (llama.cpp's NumPy codecs), same arrays, same run.

For every type kquants supports: quantize and dequantize time in ns per 256 values, kquants on
one thread against gguf-py (NumPy, one thread), the ratio (target >= 20x) and whether both give
the same bytes / values. Then a thread-scaling table on a larger array: kquants at 1 and 2
threads (wall clock) and the speedup.

    python benches/compare_gguf_py.py              # all supported types
    python benches/compare_gguf_py.py Q4_K Q8_0    # some
    python benches/compare_gguf_py.py --rows 256   # bigger arrays (default 16 x 4096 = 256 KiB,
                                                   # the L2-resident size of llama.cpp anchors §4a)
    python benches/compare_gguf_py.py --scale-rows 0   # no scaling table

Timing: best of repeated runs (at least 3, until 0.3 s is spent). Single-thread columns use the
process CPU time (time.process_time) by default, so a machine shared with other jobs does not
inflate them (--clock wall for wall time); the thread-scaling table always uses wall time, so
run it on an otherwise idle machine (the header prints the load average).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Callable, Optional

import numpy as np

import kquants
from kquants import QuantType

try:
    from gguf import GGMLQuantizationType as G
    from gguf import quants as gq
except ImportError:  # pragma: no cover - the bench still reports kquants alone
    G = None
    gq = None


CLOCK = time.process_time


def best_time(fn: Callable[[], object], min_reps: int = 3, budget: float = 0.3, clock=None) -> float:
    clock = clock or CLOCK
    best = float("inf")
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or time.perf_counter() - start < budget:
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
        reps += 1
        if reps >= 50:
            break
    return best


def gguf_fns(t: QuantType, x: np.ndarray, raw: np.ndarray):
    """gguf-py's quantize / dequantize for `t`, or None where it has none."""
    if gq is None or t.name not in G.__members__:
        return None, None
    g = G[t.name]

    def q():
        return gq.quantize(x, g)

    def d():
        return gq.dequantize(raw, g)

    qf: Optional[Callable] = q
    df: Optional[Callable] = d
    try:
        gq.quantize(np.zeros(t.block_size, np.float32), g)
    except NotImplementedError:
        qf = None
    try:
        gq.dequantize(np.zeros(t.type_size, np.uint8), g)
    except NotImplementedError:
        df = None
    # gguf-py 0.19's Q8_1 block layout is stale (40 bytes, ggml's is 36): not comparable.
    if t is QuantType.Q8_1 and gq.GGML_QUANT_SIZES[g][1] != t.type_size:
        qf = df = None
    return qf, df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", help="type names (default: every supported type)")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="single-thread timing clock")
    ap.add_argument("--scale-rows", type=int, default=1024, help="rows of the thread-scaling array (0: skip)")
    ap.add_argument("--scale-types", default="Q4_0,Q8_0,F16,Q4_K,Q6_K,IQ4_XS",
                    help="comma-separated types of the thread-scaling table")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    types = [QuantType.parse(n) for n in args.types] if args.types else kquants.quant_types()

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.cols)) * 0.02).astype(np.float32)
    imatrix = (rng.standard_normal(args.cols) ** 2 + 0.1).astype(np.float32)
    n = x.size
    per256 = 1e9 * 256 / n

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# kquants {kquants.__version__} vs gguf-py; {args.rows} x {args.cols} float32 (N(0, 0.02)); "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"# ns per 256 values, best of runs ({args.clock} clock); kquants single-threaded; "
          "'same' = identical bytes (quantize) / bits (dequantize)")
    print()
    print("| type | quantize kquants | gguf-py | ratio | same | dequantize kquants | gguf-py | ratio | same |")
    print("|---|---:|---:|---:|:-:|---:|---:|---:|:-:|")
    for t in types:
        w = imatrix if t.requires_imatrix else None
        q1 = kquants.quantize(x, t, imatrix=w, threads=1)
        raw = q1.data
        tq1 = best_time(lambda: kquants.quantize(x, t, imatrix=w, threads=1))
        td1 = best_time(lambda: q1.dequantize(threads=1))
        y1 = q1.dequantize(threads=1)

        gqf, gdf = gguf_fns(t, x, raw)
        cells = []
        if gqf is not None:
            gq_t = best_time(gqf, min_reps=2)
            same = np.array_equal(np.ascontiguousarray(gqf()).view(np.uint8).reshape(raw.shape), raw)
            cells += [f"{tq1 * per256:,.0f}", f"{gq_t * per256:,.0f}", f"{gq_t / tq1:,.1f}x", "yes" if same else "NO"]
        else:
            cells += [f"{tq1 * per256:,.0f}", "–", "–", "–"]
        if gdf is not None:
            gd_t = best_time(gdf, min_reps=2)
            gy = np.asarray(gdf(), dtype=np.float32).reshape(y1.shape)
            same = np.array_equal(gy.view(np.uint32), y1.view(np.uint32))
            cells += [f"{td1 * per256:,.1f}", f"{gd_t * per256:,.0f}", f"{gd_t / td1:,.1f}x", "yes" if same else "NO"]
        else:
            cells += [f"{td1 * per256:,.1f}", "–", "–", "–"]
        print(f"| {t.name} | " + " | ".join(cells) + " |")
        sys.stdout.flush()

    if args.scale_rows > 0:
        scaling(args, imatrix)


def scaling(args: argparse.Namespace, imatrix: np.ndarray) -> None:
    """kquants at 1 and 2 threads on a `scale_rows x cols` array, wall clock."""
    xs = (np.random.default_rng(1).standard_normal((args.scale_rows, args.cols)) * 0.02).astype(np.float32)
    per256 = 1e9 * 256 / xs.size
    wall = time.perf_counter
    print()
    print(f"# thread scaling: {args.scale_rows} x {args.cols} float32 ({xs.nbytes / 2**20:.0f} MiB), "
          f"wall clock ns per 256 values, best of runs")
    print()
    print("| type | quantize 1 thr | 2 thr | speedup | dequantize 1 thr | 2 thr | speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.scale_types.split(","):
        t = QuantType.parse(name.strip())
        w = imatrix if t.requires_imatrix else None
        q = kquants.quantize(xs, t, imatrix=w)
        tq = [best_time(lambda n=n: kquants.quantize(xs, t, imatrix=w, threads=n), clock=wall) for n in (1, 2)]
        td = [best_time(lambda n=n: q.dequantize(threads=n), clock=wall) for n in (1, 2)]
        print(f"| {t.name} | {tq[0] * per256:,.1f} | {tq[1] * per256:,.1f} | {tq[0] / tq[1]:.2f}x "
              f"| {td[0] * per256:,.1f} | {td[1] * per256:,.1f} | {td[0] / td[1]:.2f}x |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

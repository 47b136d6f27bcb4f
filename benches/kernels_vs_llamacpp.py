#!/usr/bin/env python3
"""Our kernel figures next to llama.cpp's (../shared/anchors/llamacpp.md §4a, §4b).

1. vec_dot ns per 256 values per type and ISA, read from criterion's results of
   `cargo bench --bench vec_dot` (run it first, or pass --run), against llama.cpp's kernel timed
   in the same run when the bench ran with `KQUANTS_GGML_LIB=<dir of libggml-base.so and
   libggml-cpu.so>` (a llama.cpp build of your own), otherwise against §4a's vec_dot column.
2. matmul GEMV / GEMM figures from `cargo bench --bench matmul` if present.
3. The DRAM-bound GEMV: `kquants.matmul` over an N x 8192 weight at 1 and 2 threads, as GB/s of
   weight bytes and as a fraction of the read-bandwidth peer measured in the same run: a plain
   read of the very same weight buffer with the same thread count (AVX-512 loads, several
   streams per thread, software prefetch; the best of a few settings, 3 passes each:
   `kquants._kquants._read_bandwidth`, rust/simd/stream.rs). That peer is the physical limit of
   token generation on this machine. Only when the peer is unavailable (an older build) are the
   anchors' §4b figures (~26.8 GB/s one core, ~38.2 GB/s two) used; `--bw` forces fixed limits.

   The weight must be bigger than the last-level cache. The default 16384 x 8192 was sized for
   the anchors' 32 MiB L3; on a machine with a bigger L3 (lscpu) use `--rows`, e.g.
   `--rows 131072` (0.6 GB of Q4_0, 1.1 GB of Q8_0) on the 480 MiB-L3 Sapphire Rapids box:
   `/tmp/quiet.sh python benches/kernels_vs_llamacpp.py --gemv-only --rows 131072`.

   Each type is timed twice: the QTensor as stored in GGUF ("rows"), and a `kquants.PackedWeight`
   made from it ("packed": on AVX-512 the Q4_0/IQ4_XS/Q4_K/Q5_K rows interleaved for the 16-row
   kernels, as ggml repacks at load time; other types keep their rows). GB/s counts the GGUF
   bytes of the weight in both cases.

Usage: python benches/kernels_vs_llamacpp.py [--run] [--no-gemv | --gemv-only] [--types T,T]
       [--rows N] [--reps R] [--bw 1:26.8,2:38.2]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT / ".." / "shared" / "anchors" / "llamacpp.md"
CRIT = ROOT / "target" / "criterion"
BW = {1: 26.8, 2: 38.2}  # GB/s, anchors §4b (own AVX-512 loop median; sysbench 2 threads)


def llamacpp_vec_dot() -> dict[str, float]:
    """§4a table: type -> vec_dot ns/256 (the 'vec_dot' column)."""
    out: dict[str, float] = {}
    text = ANCHORS.read_text()
    sec = text[text.index("### 4a.") : text.index("**`test-quantize-perf`**")]
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"[A-Z0-9_]+", cells[0]) and cells[7] not in ("-", "vec_dot"):
            try:
                out[cells[0]] = float(cells[7])
            except ValueError:
                pass
    return out


def criterion_results(group: str) -> list[tuple[str, str, float, dict]]:
    res = []
    for est in sorted((CRIT / group).glob("*/*/new/estimates.json")):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        med = json.loads(est.read_text())["median"]["point_estimate"]  # ns per iteration
        res.append((bench["function_id"], bench["value_str"], med, bench.get("throughput") or {}))
    return res


def random_blocks(ty: str, n: int, k: int) -> np.ndarray:
    """Valid blocks of `ty` with random quants and small finite f16 scales."""
    import kquants

    table = {row[0]: (row[2], row[3]) for row in kquants._kquants._type_table()}
    bs, ts = table[ty]
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(n * k // bs, ts), dtype=np.uint8)
    f16 = {"Q6_K": [208], "Q4_K": [0, 2], "Q2_K": [80, 82], "Q3_K": [108]}.get(ty, [0])
    for o in f16:
        blocks[:, o : o + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    return blocks.reshape(n, -1)


class Q:
    def __init__(self, t, shape, data):
        self.type, self.shape, self.data = t, shape, data


def read_peer(buf: np.ndarray, threads: int) -> float | None:
    """GB/s of the fastest plain read of `buf` with `threads` threads (same run), or None when
    this build of kquants has no read-bandwidth probe."""
    import kquants

    probe = getattr(kquants._kquants, "_read_bandwidth", None)
    if probe is None:
        return None
    bps, _streams, _ahead = probe(buf, threads, 3)
    return bps / 1e9


def gemv_bandwidth(types: list[str], reps: int = 15, n: int = 16384, fixed_bw: bool = False):
    """Per type, layout and thread count: (type, layout, threads, GB/s, ms, cpu GB/s, peer GB/s or None)."""
    import kquants

    k = 8192
    out = []
    x = np.random.default_rng(1).standard_normal(k).astype(np.float32)
    for ty in types:
        q = Q(ty, (n, k), random_blocks(ty, n, k))
        nbytes = q.data.nbytes
        packed = getattr(kquants, "PackedWeight", None)
        layouts = [("rows", q)] + ([("packed", packed(q))] if packed is not None else [])
        for layout, w in layouts:
            for t in (1, 2):
                kquants.matmul(w, x, threads=t)  # warm-up (pool start, page faults)
                ts, cpu = [], []
                for _ in range(reps):
                    t0, c0 = time.perf_counter(), time.process_time()
                    kquants.matmul(w, x, threads=t)
                    ts.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                sec = float(np.median(ts))
                # CPU seconds per call divided by the thread count: the wall time this GEMV would
                # take if its threads had their cores to themselves (the box is shared).
                csec = float(np.median(cpu)) / t
                peer = None if fixed_bw else read_peer(q.data, t)
                out.append((ty, layout, t, nbytes / sec / 1e9, sec * 1e3, nbytes / csec / 1e9, peer))
        del layouts
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run the criterion benches first")
    ap.add_argument("--no-gemv", action="store_true", help="skip the 16384 x 8192 GEMV")
    ap.add_argument("--gemv-only", action="store_true", help="only the GEMV over a large weight")
    ap.add_argument("--types", default="Q4_0,Q4_K,Q8_0,IQ4_XS", help="GEMV weight types (comma-separated)")
    ap.add_argument("--rows", type=int, default=16384, help="GEMV weight rows (of 8192 values)")
    ap.add_argument("--reps", type=int, default=15, help="timed GEMV calls per type and thread count (median)")
    ap.add_argument("--bw", default=None, help="fixed read bandwidth limits as THREADS:GB/s,... instead of the "
                    "same-run read peer (which falls back to anchors §4b only when unavailable)")
    args = ap.parse_args()
    if args.bw:
        BW.update({int(t): float(g) for t, g in (kv.split(":") for kv in args.bw.split(","))})
    if args.gemv_only:
        return gemv_report(args)
    if args.run:
        for b in ("vec_dot", "matmul"):
            subprocess.run(["cargo", "bench", "--bench", b], cwd=ROOT, check=True)

    ref = llamacpp_vec_dot()
    res = criterion_results("vec_dot")
    # `vec_dot/<TYPE>/ggml`: llama.cpp's kernel timed in the same run (KQUANTS_GGML_LIB set when
    # `cargo bench --bench vec_dot` ran); preferred over the anchors' figures when present.
    same_run = {ty: ns / thr.get("Elements", 65536) * 256 for ty, isa, ns, thr in res if isa == "ggml"}
    peer = "same run" if same_run else "anchors §4a"
    print(f"## vec_dot, ns per 256 values (16 rows x 4096, single thread; llama.cpp: {peer})")
    print(f"{'type':8} {'isa':7} {'ours':>7} {'llama.cpp':>9} {'ratio':>6}  {'anchors':>7}  GB/s(weights)")
    best: dict[str, float] = {}  # ns/256 of the level the dispatch selects
    chosen: dict[str, str] = {}
    for ty, isa, ns, thr in res:
        if isa == "ggml":
            continue
        vals = thr.get("Elements", 65536)
        ns256 = ns / vals * 256
        # The dispatch runs the highest level that has an entry for the type.
        rank = {"scalar": 0, "avx2": 1, "avx512": 2, "neon": 1}
        if rank.get(isa, 0) >= rank.get(chosen.get(ty, "scalar"), 0):
            chosen[ty], best[ty] = isa, ns256
        r = same_run.get(ty) if same_run else ref.get(ty)
        from_types = {"Q4_0": 144, "Q4_1": 160, "Q5_0": 176, "Q5_1": 192, "Q8_0": 272, "Q2_K": 84, "Q3_K": 110,
                      "Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "IQ4_NL": 144, "IQ4_XS": 136}
        gbs = from_types.get(ty, 0) / ns256 if ns256 else 0
        rs = f"{r / ns256:6.2f}" if r else "     -"
        rv = f"{r:9.2f}" if r else f"{'-':>9}"
        an = f"{ref[ty]:7.1f}" if ty in ref else f"{'-':>7}"
        print(f"{ty:8} {isa:7} {ns256:7.2f} {rv} {rs}  {an}  {gbs:6.1f}")
    print("(ratio > 1: ours faster)")
    if same_run:
        behind = sorted((best[t] / same_run[t], t) for t in best if t in same_run and best[t] > same_run[t])
        print("selected level behind llama.cpp (same run): " + (", ".join(f"{t} {best[t]:.2f} / {same_run[t]:.2f}" for _, t in reversed(behind)) or "none"))

    mm = criterion_results("matmul_gemv") + [(a + " [gemm64]", b, c, d) for a, b, c, d in criterion_results("matmul_gemm64")]
    if mm:
        print("\n## matmul over a 4096 x 4096 weight (criterion, selected ISA)")
        for ty, th, ns, thr in mm:
            by = thr.get("Bytes", 0)
            print(f"{ty:18} {th:3} {ns / 1e6:8.3f} ms  {by / ns:6.2f} GB/s of weights")

    if not args.no_gemv:
        gemv_report(args)


def gemv_report(args: argparse.Namespace) -> None:
    import kquants

    print(f"\n## GEMV over a {args.rows} x 8192 weight, ISA {kquants.simd_info()['isa']}")
    print("limit: " + (f"--bw {BW}" if args.bw else "peer = plain read of the same weight buffer, same threads, same run "
                       f"(anchors §4b {BW[1]} / {BW[2]} GB/s if unavailable)"))
    print("(wall = measured; cpu = bytes / (process CPU time / threads), what the kernels could stream")
    print(" with cores to themselves: meaningful only as an upper bound when the box is shared)")
    for ty, layout, t, gbs, ms, cgbs, peer in gemv_bandwidth(args.types.split(","), args.reps, args.rows, bool(args.bw)):
        lim, src = (peer, "peer") if peer else (BW[t], "--bw" if args.bw else "anchors")
        print(f"{ty:7} {layout:6} threads={t}  {ms:7.2f} ms  wall {gbs:5.1f} GB/s = {gbs / lim:5.1%} of {src} {lim:5.1f} GB/s;"
              f"  cpu {cgbs:5.1f} GB/s = {cgbs / lim:5.1%}", flush=True)


if __name__ == "__main__":
    main()

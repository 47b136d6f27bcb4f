"""SmolLM2-135M prompt processing (64 tokens) and generation (32 tokens) speed, next to
llama.cpp's llama-bench medians on this machine kind (shared/anchors/llamacpp.md §4b).

    python benches/model_speed.py [MODEL ...] [--threads 2] [--reps 5]
    python benches/model_speed.py --variants DIR [--threads 2] [--reps 5]

Without MODEL, runs the bundled Q4_1 file. With `--variants DIR` it first writes (once, reused
afterwards) the files llama.cpp's figures were measured on: the bundled model dequantized to an
F32 base, and that base quantized to Q8_0, Q4_K_M, Q4_0 and IQ4_XS by `kquants.quantize_model`
(same mixes as llama-quantize), then runs the bundled file and all of them.
pp64 = 64 prompt tokens in one batch from an empty cache, logits of the last one only (as
llama-bench); tg32 = 32 single-token steps after a
1-token prompt (as llama-bench's -n 32). Medians. Timings need a quiet machine: other load on
the 2 cores halves them.

    python benches/model_speed.py --variants DIR --llama-bench PATH/llama-bench

With `--llama-bench`, llama.cpp's own llama-bench (built by you, outside this project) runs on
the same files in the same run (`-p 64 -n 32 -r REPS -t THREADS`, its defaults otherwise: repack
on, flash attention auto) and the table shows its medians and our ratio instead of the anchors'.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

# llama-bench -t 2 medians (tokens/s), keyed by the file's dominant weight type.
LLAMACPP_T2 = {"Q4_1": (300, 130), "Q4_0": (908, 201), "IQ4_XS": (840, 180), "Q4_K_M": (556, 136),
               "Q8_0": (531, 123), "Q6_K": (589, 137), "F32": (504, 46.0)}


def bench(path, threads: int, reps: int):
    from kquants import Model

    m = Model.load(path, threads=threads)
    ids = [(i * 7919) % 40000 + 100 for i in range(64)]
    m.forward(ids[:8])  # warm up: page in the weights
    pp = []
    for _ in range(reps):
        t = time.perf_counter()
        m._m.forward(ids, True)  # logits of the last position only, as llama-bench's pp
        pp.append(64 / (time.perf_counter() - t))
    tg = []
    for _ in range(reps):
        g = m._m.generate([ids[0]], 33, 0.0, 1, 1.0, 0, [])
        next(g)  # the 1-token prompt
        t = time.perf_counter()
        for _ in range(32):
            next(g)
        tg.append(32 / (time.perf_counter() - t))
    return statistics.median(pp), statistics.median(tg)


def llama_bench(binary: str, path: str, threads: int, reps: int) -> tuple[float, float]:
    """llama-bench's median pp64 and tg32 tokens/s on `path` (its per-repetition samples)."""
    out = subprocess.run([binary, "-m", path, "-t", str(threads), "-p", "64", "-n", "32", "-r", str(reps),
                          "-o", "json"], check=True, capture_output=True, text=True).stdout
    pp = tg = float("nan")
    for row in json.loads(out):
        med = statistics.median(row["samples_ts"])
        if row["n_prompt"] == 64 and row["n_gen"] == 0:
            pp = med
        elif row["n_gen"] == 32 and row["n_prompt"] == 0:
            tg = med
    return pp, tg


def variants(d: Path, threads: int) -> tuple[list[str], list[str]]:
    """The bundled model plus its F32 base and four quantizations in `d` (made if missing)."""
    from kquants import quantize_model
    from kquants._models import default_model_path

    d.mkdir(parents=True, exist_ok=True)
    src = default_model_path()
    base = d / "smollm2-f32.gguf"
    if not base.exists():
        quantize_model(src, base, "F32", allow_requantize=True, threads=threads)
    models, labels = [str(src)], ["Q4_1"]
    for t in ["Q8_0", "Q4_K_M", "Q4_0", "IQ4_XS"]:
        out = d / f"smollm2-{t}.gguf"
        if not out.exists():
            quantize_model(base, out, t, threads=threads)
        models.append(str(out))
        labels.append(t)
    return models + [str(base)], labels + ["F32"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--label", action="append", default=None, help="llama.cpp row for each model (default Q4_1)")
    ap.add_argument("--variants", metavar="DIR", help="write and run the F32/Q8_0/Q4_K_M/Q4_0/IQ4_XS versions in DIR")
    ap.add_argument("--llama-bench", metavar="PATH", help="llama.cpp's llama-bench binary: time it on the same files")
    a = ap.parse_args()
    from kquants._models import default_model_path

    if a.variants:
        a.models, a.label = variants(Path(a.variants), a.threads)
    if not a.models:
        a.models = [str(default_model_path())]
    labels = a.label or ["Q4_1"] * len(a.models)
    peer = "llama-bench, same run" if a.llama_bench else "llama.cpp: anchors §4b"
    print(f"# tokens/s, threads={a.threads}, medians of {a.reps}; {peer}")
    print(f"{'model':32s} {'pp64':>8s} {'llama.cpp':>10s} {'ratio':>6s} {'tg32':>8s} {'llama.cpp':>10s} {'ratio':>6s}")
    for path, label in zip(a.models, labels):
        pp, tg = bench(path, a.threads, a.reps)
        if a.llama_bench:
            ref = llama_bench(a.llama_bench, path, a.threads, a.reps)
        else:
            ref = LLAMACPP_T2.get(label, (float("nan"), float("nan")))
        print(f"{Path(path).name[:32]:32s} {pp:8.1f} {ref[0]:10.1f} {pp / ref[0]:6.2f} "
              f"{tg:8.1f} {ref[1]:10.1f} {tg / ref[1]:6.2f}", flush=True)


if __name__ == "__main__":
    main()

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
"""

from __future__ import annotations

import argparse
import statistics
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
    a = ap.parse_args()
    from kquants._models import default_model_path

    if a.variants:
        a.models, a.label = variants(Path(a.variants), a.threads)
    if not a.models:
        a.models = [str(default_model_path())]
    labels = a.label or ["Q4_1"] * len(a.models)
    print(f"{'model':40s} {'pp64 t/s':>10s} {'llama.cpp':>10s} {'tg32 t/s':>10s} {'llama.cpp':>10s}  (threads={a.threads})")
    for path, label in zip(a.models, labels):
        pp, tg = bench(path, a.threads, a.reps)
        ref = LLAMACPP_T2.get(label, (float("nan"), float("nan")))
        print(f"{Path(path).name[:40]:40s} {pp:10.1f} {ref[0]:10.0f} {tg:10.1f} {ref[1]:10.0f}")


if __name__ == "__main__":
    main()

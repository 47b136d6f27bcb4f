"""``kquants imatrix MODEL TEXTFILE -o imatrix.gguf``: collect an importance matrix."""

from __future__ import annotations

import argparse
import os


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "imatrix",
        help="compute an importance matrix (llama.cpp GGUF imatrix format)",
        description="Mean squared matmul inputs over a text, written like llama-imatrix (.dat for the legacy format).",
    )
    p.add_argument("model", help="GGUF model")
    p.add_argument("textfile", help="UTF-8 calibration text")
    p.add_argument("-o", "--output", default="imatrix.gguf", help="output file (default imatrix.gguf)")
    p.add_argument("--ctx", type=int, default=512, help="chunk size in tokens (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="process at most this many chunks")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import imatrix

    with open(args.textfile, encoding="utf-8") as f:
        text = f.read()
    n = imatrix(args.model, text, args.output, ctx=args.ctx, max_chunks=args.chunks,
                dataset=os.path.basename(args.textfile), threads=args.threads)
    print(f"wrote {args.output} ({n} chunks of {args.ctx} tokens)")
    return 0

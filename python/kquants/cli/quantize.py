"""``kquants quantize``: quantize a GGUF model like llama-quantize (same options, same bytes)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .._quantize_model import MIXES

    p = sub.add_parser(
        "quantize",
        help="quantize a GGUF model to a type or llama-quantize mix",
        description="Quantize INPUT.gguf to OUTPUT.gguf. TYPE is a tensor type or llama-quantize mix: "
        + ", ".join(["COPY", *MIXES]),
    )
    p.add_argument("input", help="source GGUF file")
    p.add_argument("output", help="destination GGUF file (written atomically)")
    p.add_argument("type", metavar="TYPE", help="mix or type, e.g. Q4_K_M, IQ4_XS, Q8_0, F16, COPY")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (llama.cpp GGUF or legacy .dat)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--include-weights", action="append", default=[], metavar="P", help="use the imatrix only for tensors containing P")
    g.add_argument("--exclude-weights", action="append", default=[], metavar="P", help="do not use the imatrix for tensors containing P")
    p.add_argument("--output-tensor-type", metavar="T", help="type for output.weight")
    p.add_argument("--token-embedding-type", metavar="T", help="type for token_embd.weight")
    p.add_argument("--tensor-type", action="append", default=[], metavar="REGEX=T", help="override the type of tensors matching REGEX")
    p.add_argument("--pure", action="store_true", help="no per-tensor mix rules")
    p.add_argument("--allow-requantize", action="store_true", help="allow requantizing quantized tensors")
    p.add_argument("--leave-output-tensor", action="store_true", help="leave output.weight as it is")
    p.add_argument("--dry-run", action="store_true", help="report types and sizes, write nothing")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="worker threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def _parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        pat, sep, t = item.rpartition("=")
        if not sep or not pat or not t:
            raise ValueError(f"--tensor-type expects REGEX=TYPE, got {item!r}")
        out.append((pat, t))
    return out


def run(args: argparse.Namespace) -> int:
    from .._quantize_model import quantize_model
    from ._progress import ProgressLine

    size = os.path.getsize(args.input)
    bar = ProgressLine(size / 1e6, quiet=args.quiet or args.dry_run)

    def progress(done: int, total: int, name: str, src: str, dst: str, bdone: int, btotal: int) -> None:
        bar.update(bdone / 1e6, f"[{done:4d}/{total}] {name:<36.36} {src:>7} -> {dst:<7}")

    try:
        r = quantize_model(
            args.input,
            args.output,
            args.type,
            imatrix=args.imatrix,
            include_weights=args.include_weights,
            exclude_weights=args.exclude_weights,
            output_tensor_type=args.output_tensor_type,
            token_embedding_type=args.token_embedding_type,
            tensor_types=_parse_overrides(args.tensor_type),
            pure=args.pure,
            leave_output_tensor=args.leave_output_tensor,
            allow_requantize=args.allow_requantize,
            dry_run=args.dry_run,
            threads=args.threads,
            progress=progress,
        )
    finally:
        bar.close()
    out = sys.stdout
    if args.dry_run:
        for t in r.tensors:
            shape = "x".join(map(str, t.shape))
            out.write(f"{t.name:<40} {shape:>16} {t.from_type:>7} -> {t.to_type:<7} {t.bytes_out / 2**20:9.3f} MiB\n")
        if r.needs_imatrix and not args.imatrix:
            out.write("note: this quantization will require an importance matrix (--imatrix)\n")
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(r.type_counts().items()))
    out.write(f"{'':<10}{'size':>12}{'bits/weight':>14}\n")
    out.write(f"{'before':<10}{r.bytes_in / 2**20:9.2f} MiB{r.bpw_in:14.3f}\n")
    out.write(f"{'after':<10}{r.bytes_out / 2**20:9.2f} MiB{r.bpw_out:14.3f}\n")
    out.write(f"tensors by type: {counts}\n")
    if not args.dry_run:
        out.write(f"wrote {args.output}\n")
    return 0

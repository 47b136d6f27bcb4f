"""``kquants convert``: a Hugging Face safetensors model directory to GGUF (llama.cpp's converter)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a Hugging Face model directory (safetensors) to GGUF",
        description="Convert MODEL_DIR (config.json, *.safetensors, tokenizer.json) of a llama, mistral or "
        "qwen2 model to OUTPUT.gguf as llama.cpp's convert_hf_to_gguf.py does.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    p.add_argument("output", metavar="OUTPUT.gguf", help="destination GGUF file (written atomically)")
    p.add_argument("--outtype", default="f16", metavar="T", help="f32, f16 (default), bf16, q8_0, or a quantize mix such as Q4_K_M")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="worker threads (default: all cores)")
    p.add_argument("--model-name", default=None, help="general.name (default: the directory name)")
    p.add_argument("--tokenizer-pre", default=None, metavar="NAME", help="force tokenizer.ggml.pre instead of detecting it")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._convert import convert
    from ._progress import ProgressLine

    bar = ProgressLine(0.0, quiet=args.quiet)

    def progress(done: int, total: int, name: str, src: str, dst: str, bdone: int, btotal: int) -> None:
        bar.total = btotal / 1e6
        bar.update(bdone / 1e6, f"[{done:4d}/{total}] {name:<36.36} {src:>7} -> {dst:<7}")

    try:
        r = convert(
            args.model_dir,
            args.output,
            args.outtype,
            threads=args.threads,
            model_name=args.model_name,
            tokenizer_pre=args.tokenizer_pre,
            progress=progress,
        )
    finally:
        bar.close()
    out = sys.stdout
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(r.type_counts().items()))
    out.write(f"{'':<10}{'size':>12}{'bits/weight':>14}\n")
    out.write(f"{'input':<10}{r.bytes_in / 2**20:9.2f} MiB{r.bpw_in:14.3f}\n")
    out.write(f"{'output':<10}{r.bytes_out / 2**20:9.2f} MiB{r.bpw_out:14.3f}\n")
    out.write(f"tensors by type: {counts}\n")
    out.write(f"wrote {os.fspath(args.output)}\n")
    return 0

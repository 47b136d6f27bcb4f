"""``kquants perplexity MODEL TEXTFILE``: perplexity, and KL divergence against a base model."""

from __future__ import annotations

import argparse


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "perplexity",
        help="perplexity (and KL divergence against a base model) on a text",
        description="Perplexity like llama-perplexity: chunks of --ctx tokens, second half of each scored.",
    )
    p.add_argument("model", help="GGUF model")
    p.add_argument("textfile", help="UTF-8 text file")
    p.add_argument("--ctx", type=int, default=512, help="chunk size in tokens (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    p.add_argument("--kl-divergence", metavar="BASE_MODEL", default=None, help="compare with this base model")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import perplexity

    with open(args.textfile, encoding="utf-8") as f:
        text = f.read()
    r = perplexity(args.model, text, ctx=args.ctx, base=args.kl_divergence, max_chunks=args.chunks, threads=args.threads)
    print(f"chunks: {r['chunks']}  scored tokens: {r['scored_tokens']}")
    print(f"PPL = {r['ppl']:.4f} +/- {r['ppl_err']:.4f}")
    if "mean_kld" in r:
        print(f"base PPL = {r['base_ppl']:.4f}  PPL ratio = {r['ppl_ratio']:.4f}")
        print(f"mean KLD = {r['mean_kld']:.6f}  max KLD = {r['max_kld']:.6f}  same top-1 = {100 * r['same_top1']:.2f} %")
    return 0

"""``kquants run [MODEL] -p PROMPT``: stream a completion and print tokens/s."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("run", help="generate text from a prompt", description="Stream a completion from a GGUF model.")
    p.add_argument("model", nargs="?", default=None, help="GGUF model (default: the bundled SmolLM2-135M)")
    p.add_argument("-p", "--prompt", required=True, help="prompt text (special tokens like <|im_start|> are parsed)")
    p.add_argument("-n", "--n-predict", type=int, default=64, help="tokens to generate (default 64)")
    p.add_argument("--temp", type=float, default=0.0, help="temperature; 0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=40, help="top-k (default 40; 0 = off)")
    p.add_argument("--top-p", type=float, default=0.95, help="top-p (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("-t", "--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message with the chat template")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import Model

    m = Model.load(args.model, threads=args.threads)
    prompt = m.apply_chat_template([{"role": "user", "content": args.prompt}]) if args.chat else args.prompt
    gen = m.generate(
        prompt, max_tokens=args.n_predict, temperature=args.temp, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    if not args.chat:
        sys.stdout.write(args.prompt)
    for piece in gen:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    n_p, t_p, n_g, t_g = gen.timings
    pp = f"{n_p / t_p:.1f}" if t_p > 0 else "-"
    tg = f"{n_g / t_g:.1f}" if t_g > 0 and n_g > 0 else "-"
    print(f"prompt: {n_p} tokens, {pp} tokens/s | generation: {n_g} tokens, {tg} tokens/s", file=sys.stderr)
    return 0

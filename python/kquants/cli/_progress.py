"""A one-line progress display for long runs: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Rewrites one terminal line with ``[i/N] label  rate  ETA``; prints nothing when the stream
    is not a TTY or ``quiet`` is set, so logs and pipes stay clean."""

    def __init__(self, total_units: float, *, unit: str = "MB", stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = float(total_units)
        self.unit = unit
        self.start = time.monotonic()
        self._width = 0

    def update(self, done_units: float, text: str) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done_units / elapsed
        remaining = (self.total - done_units) / rate if rate > 0 else 0.0
        eta = time.strftime("%M:%S", time.gmtime(max(remaining, 0.0)))
        line = f"{text}  {rate:7.1f} {self.unit}/s  ETA {eta}"
        pad = max(self._width - len(line), 0)
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

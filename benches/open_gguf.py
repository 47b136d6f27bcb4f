"""Time opening SmolLM2-135M and listing every tensor (name, type, shape, byte size, offset) with
kquants and with gguf-py's GGUFReader, in the same run, and print the ratio.

    python benches/open_gguf.py [--repeat N] [FILE]

Each side is timed `repeat` times (gguf-py fewer times: it takes seconds); the best time counts,
which is the least disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import gguf as ggufpy

import kquants
from kquants._models import default_model_path


def list_kquants(path):
    with kquants.open(path) as f:
        return [(t.name, t.type_name, t.shape, t.nbytes, t.file_offset) for t in f.tensors.values()]


def list_ggufpy(path):
    r = ggufpy.GGUFReader(path)
    return [(t.name, t.tensor_type.name, tuple(int(x) for x in reversed(t.shape)), int(t.n_bytes), int(t.data_offset)) for t in r.tensors]


def best(fn, path, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn(path)
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=None)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    path = args.file or str(default_model_path())
    list_kquants(path)  # warm the page cache and imports for both
    t_k, ours = best(list_kquants, path, args.repeat)
    t_g, theirs = best(list_ggufpy, path, max(1, args.repeat // 7))
    assert ours == theirs, "kquants and gguf-py disagree on the tensor list"
    print(f"file: {path} ({len(ours)} tensors)")
    print(f"kquants  open + list: {t_k * 1e3:9.2f} ms (best of {args.repeat})")
    print(f"gguf-py  open + list: {t_g * 1e3:9.2f} ms (best of {max(1, args.repeat // 7)})")
    print(f"ratio: {t_g / t_k:.0f}x faster (target >= 100x)")


if __name__ == "__main__":
    main()

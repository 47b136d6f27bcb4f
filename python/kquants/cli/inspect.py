"""``kquants inspect FILE [--json]``: a GGUF file's metadata and tensor table (like gguf-py's
``gguf_dump``). Shapes are printed in NumPy order (rows, cols); ``--json`` also gives GGUF's
``ne`` order."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

ARRAY_PREVIEW = 6
STRING_PREVIEW = 60


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show a GGUF file's metadata and tensors", description=__doc__)
    p.add_argument("file", help="GGUF file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--full-arrays", action="store_true", help="do not abbreviate long arrays")
    p.add_argument("--no-tensors", action="store_true", help="metadata only")
    p.set_defaults(func=run)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _preview(v: Any, full: bool) -> tuple[Any, bool]:
    """The value (arrays cut to ARRAY_PREVIEW items unless ``full``) and whether it was cut."""
    v = _plain(v)
    if isinstance(v, list) and not full and len(v) > ARRAY_PREVIEW:
        return v[:ARRAY_PREVIEW], True
    return v, False


def _fmt_bytes(n: int) -> str:
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    from ..gguf import GGUFFile

    with GGUFFile(args.file) as f:
        md = f.metadata
        if args.json:
            out: dict[str, Any] = {
                "path": str(f.path),
                "version": f.version,
                "alignment": f.alignment,
                "data_offset": f.data_offset,
                "metadata": {},
            }
            for k in md:
                v, cut = _preview(md[k], args.full_arrays)
                entry: dict[str, Any] = {"type": md.type_of(k), "value": v}
                if md.length_of(k) is not None:
                    entry["length"] = md.length_of(k)
                if cut:
                    entry["truncated"] = True
                out["metadata"][k] = entry
            if not args.no_tensors:
                out["tensors"] = [
                    {
                        "name": t.name,
                        "type": t.type_name,
                        "shape": list(t.shape),
                        "ne": list(t.ne),
                        "nbytes": t.nbytes,
                        "offset": t.offset,
                        "file_offset": t.file_offset,
                    }
                    for t in f.tensors.values()
                ]
            print(json.dumps(out, indent=2, ensure_ascii=False))
            return 0

        print(f"{args.file}: GGUF v{f.version}, alignment {f.alignment}, data at byte {f.data_offset}")
        print(f"* {len(md)} metadata key/value pairs")
        for i, k in enumerate(md, 1):
            ty = md.type_of(k)
            n = md.length_of(k)
            v, cut = _preview(md[k], args.full_arrays)
            if isinstance(v, str) and len(v) > STRING_PREVIEW and not args.full_arrays:
                text = repr(v[: STRING_PREVIEW - 3] + "...")
            else:
                text = repr(v)
                if cut:
                    text = text[:-1] + f", ... ({n} items)]"
            print(f"  {i:5}: {ty:18} | {'' if n is None else n:>8} | {k} = {text}")
        if args.no_tensors:
            return 0
        total = sum(t.nbytes for t in f.tensors.values())
        print(f"* {len(f.tensors)} tensors, {_fmt_bytes(total)} of data")
        name_w = max([len("name")] + [len(t) for t in f.tensors])
        print(f"  {'#':>5}  {'name':{name_w}}  {'type':8}  {'shape':>22}  {'bytes':>12}  {'offset':>12}")
        for i, t in enumerate(f.tensors.values(), 1):
            shape = str(tuple(t.shape))
            print(f"  {i:5}  {t.name:{name_w}}  {t.type_name:8}  {shape:>22}  {t.nbytes:12}  {t.file_offset:12}")
    return 0

"""The ``kquants`` command line. Each subcommand lives in its own module of this package and
provides ``add_parser(subparsers)`` (which sets ``func``) — add new ones to ``_COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Module names under kquants.cli, in the order ``kquants --help`` lists them.
_COMMANDS: list[str] = ["demo", "run", "quantize", "convert", "inspect", "perplexity", "imatrix"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="kquants", description="GGUF quantization toolkit (bit-exact with ggml).")
    parser.add_argument("--version", action="version", version=f"kquants {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:  # GGUFError is a ValueError
        print(f"kquants {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"kquants {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

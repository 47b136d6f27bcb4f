"""The type stubs match the native module (mypy's stubtest), and the pure-Python codec API
type-checks against them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is part of the `test` extra")

import kquants  # noqa: E402



def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_stubs_match_native_module(tmp_path):
    # PyO3 sets `__all__` on the native module; the stub leaves it out on purpose (the public
    # surface is kquants.__all__), so it is the one allowed difference.
    allow = tmp_path / "allowlist.txt"
    allow.write_text("kquants._kquants.__all__\n")
    r = _run("mypy.stubtest", "kquants._kquants", "--allowlist", str(allow), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_codec_api_type_checks(tmp_path):
    # By module name from an empty directory, so that the check works the same for an editable
    # install and for a wheel in site-packages (whose other top-level files must not be taken as
    # this project's sources).
    mods = ["kquants", "kquants._types", "kquants._quant"]
    r = _run(
        "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental", "--cache-dir", os.devnull,
        "--check-untyped-defs", *(a for m in mods for a in ("-m", m)), cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 source files" in r.stdout, r.stdout

"""Crash safety and streaming of whole-model quantization: a failed, interrupted or killed run
never leaves a partial output or a temporary file, never touches the input, and memory stays
bounded by the largest tensor, not the model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import kquants

N_LAYER = 6
ROWS, COLS = 2048, 8192  # one 64 MiB f32 weight per layer


def _write_model(path: Path, rows: int = ROWS, cols: int = COLS, n_layer: int = N_LAYER) -> None:
    """A llama-shaped GGUF with big F32 ffn_down weights, written with gguf-py (an independent writer)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layer)
    w.add_head_count(8)
    w.add_head_count_kv(8)
    w.add_embedding_length(cols)
    rng = np.random.default_rng(0)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.ffn_down.weight", (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(cols, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("big") / "big-f32.gguf"
    _write_model(p)
    return p


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(d: Path, keep: set[str]) -> list[str]:
    return sorted(n for n in os.listdir(d) if n not in keep)


CHILD = textwrap.dedent(
    """
    import resource, signal, sys, time, kquants
    limit = int(sys.argv[4])
    pause = float(sys.argv[5])
    if limit:
        resource.setrlimit(resource.RLIMIT_{kind}, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE then fails with EFBIG
    # Python leaves SIGINT ignored when it starts ignored (a background job of a shell): restore
    # the KeyboardInterrupt handler so the Ctrl-C case tests what a terminal user gets.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def progress(done, total, *rest):
        print("tensor", done, total, flush=True)
        time.sleep(pause)
    r = kquants.quantize_model(sys.argv[1], sys.argv[2], sys.argv[3], threads=1, progress=progress)
    print("ok", r.bytes_out, flush=True)
    """
)


def _child(kind: str, src: Path, dst: Path, mix: str, limit: int, pause: float = 0.0) -> subprocess.Popen:
    """Run quantize_model in a child under an rlimit; it sleeps `pause` s after each progress line."""
    code = CHILD.replace("{kind}", kind)
    return subprocess.Popen([sys.executable, "-c", code, str(src), str(dst), mix, str(limit), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_streams_a_model_larger_than_its_memory_limit(big_model, tmp_path):
    # RLIMIT_DATA caps the process's heap and private anonymous mappings (Linux >= 4.7), not the
    # read-only file mapping of the input. The model is 384 MiB; the limit is 320 MiB, which also
    # has to hold the Python interpreter and NumPy, so only a streaming run can fit: one 64 MiB
    # f32 slab plus its quantized copy at a time.
    size = big_model.stat().st_size
    limit = 320 << 20
    assert size > limit
    out = tmp_path / "q.gguf"
    p = _child("DATA", big_model, out, "Q8_0", limit)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert "ok" in stdout
    with kquants.GGUFFile(out) as f:
        assert {t.type.name for t in f.tensors.values() if len(t.shape) == 2} == {"Q8_0"}


def test_same_path_is_refused(big_model, tmp_path):
    before = _digest(big_model)
    with pytest.raises(ValueError, match="is the input file"):
        kquants.quantize_model(big_model, big_model, "Q8_0")
    link = tmp_path / "alias.gguf"
    os.link(big_model, link)  # another name for the same inode
    with pytest.raises(ValueError, match="is the input file"):
        kquants.quantize_model(big_model, link, "Q8_0")
    sym = tmp_path / "sym.gguf"
    sym.symlink_to(big_model)
    with pytest.raises(ValueError, match="is the input file"):
        kquants.quantize_model(sym, big_model, "Q8_0")
    assert _digest(big_model) == before


def test_disk_full_leaves_no_output_and_no_temp_file(big_model, tmp_path):
    out = tmp_path / "q.gguf"
    existing = b"previous contents"
    out.write_bytes(existing)
    # RLIMIT_FSIZE stands in for a full disk: writes past 100 MiB fail with EFBIG.
    p = _child("FSIZE", big_model, out, "Q8_0", 100 << 20)
    _, stderr = p.communicate(timeout=600)
    assert p.returncode != 0
    assert "File too large" in stderr or "EFBIG" in stderr or "error" in stderr.lower()
    assert out.read_bytes() == existing, "an existing destination must be left untouched"
    assert _leftovers(tmp_path, {"q.gguf"}) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_run_leaves_nothing(big_model, tmp_path, sig):
    out = tmp_path / "q.gguf"
    # The child pauses after each progress line, so the signal lands mid-run however fast the
    # quantization is (without the pause a fast run could finish before the signal is sent).
    p = _child("DATA", big_model, out, "Q4_K_S", 0, pause=2.0)
    assert p.stdout is not None
    # Wait until the run is writing (a tensor finished), then stop it.
    line = p.stdout.readline()
    assert line.startswith("tensor"), p.stderr.read() if p.stderr else line
    p.send_signal(sig)
    p.wait(timeout=120)
    assert p.returncode != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in (p.stderr.read() if p.stderr else "")
    time.sleep(0.1)
    assert not out.exists()
    assert _leftovers(tmp_path, set()) == []

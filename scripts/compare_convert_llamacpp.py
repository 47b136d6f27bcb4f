#!/usr/bin/env python3
"""Compare the metadata `kquants convert` writes with what llama.cpp's own converter code writes
for the same Hugging Face directory, key by key and in order.

llama.cpp's `convert_hf_to_gguf.py` needs torch for tensors; the metadata path (hyperparameters,
`get_vocab_base`, `SpecialVocab`, the pre-tokenizer fingerprint) does not, so this script stubs
torch out, runs `prepare_metadata` of llama.cpp's model class, and compares its key/value list with
the GGUF we wrote. Needs `transformers` (llama.cpp's vocabulary code uses AutoTokenizer), and
`sentencepiece` for directories with a `tokenizer.model`.

    python scripts/compare_convert_llamacpp.py MODEL_DIR OURS.gguf [--llama-cpp /work/ref/llama.cpp]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from unittest import mock


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("ours", type=Path)
    ap.add_argument("--llama-cpp", type=Path, default=Path("/work/ref/llama.cpp"))
    args = ap.parse_args()
    sys.path.insert(0, str(args.llama_cpp / "gguf-py"))
    sys.path.insert(0, str(args.llama_cpp))
    import transformers  # noqa: F401  (imported before the stub, so it sees no torch)
    from transformers import AutoConfig, AutoTokenizer  # noqa: F401

    sys.modules.setdefault("torch", mock.MagicMock())
    logging.disable(logging.WARNING)
    import gguf
    from conversion import get_model_architecture, get_model_class, ModelBase, ModelType

    rd = gguf.GGUFReader(args.ours)
    ours = {k: f.contents() for k, f in rd.fields.items() if not k.startswith("GGUF.")}
    # A tokenizer trained for a test has no fingerprint in llama.cpp's table: take our detected
    # name there (the fingerprint itself is llama.cpp's code, run unchanged on real models).
    from conversion.base import TextModel

    orig_pre = TextModel.get_vocab_base_pre

    def pre(self, tokenizer):
        try:
            return orig_pre(self, tokenizer)
        except NotImplementedError:
            return ours["tokenizer.ggml.pre"]

    TextModel.get_vocab_base_pre = pre
    hparams = ModelBase.load_hparams(args.model_dir, False)
    cls = get_model_class(get_model_architecture(hparams, ModelType.TEXT))
    m = cls(args.model_dir, gguf.LlamaFileType.MOSTLY_F16, Path("/nonexistent/out.gguf"), model_name=None)
    # llama.cpp's write() prepares the tensors before the metadata, and the size label and the
    # name heuristics use their parameter count; this script prepares none, so it counts ours
    # (the tensor set is compared by tests/test_convert.py).
    import numpy as np

    total = sum(int(np.prod(t.shape)) for t in rd.tensors)
    m.gguf_writer.get_total_parameter_count = lambda: (total, total, 0, 0)
    m.prepare_metadata(vocab_only=False)
    ref = {}
    for k, v in m.gguf_writer.kv_data[0].items():
        val = v.value
        ref[k] = [x for x in val] if isinstance(val, (list, tuple)) else val
        if isinstance(ref[k], list):  # SentencePiece tokens are bytes there
            ref[k] = [x.decode("utf-8") if isinstance(x, bytes) else x for x in ref[k]]

    diffs = 0
    for k in ref:
        if k not in ours:
            print(f"MISSING in ours: {k} = {str(ref[k])[:80]}")
            diffs += 1
        elif type(ref[k]) is float and abs(ref[k] - ours[k]) <= 1e-7 * abs(ref[k]):
            continue
        elif ref[k] != ours[k]:
            print(f"DIFFERENT {k}: llama.cpp {str(ref[k])[:80]} / ours {str(ours[k])[:80]}")
            diffs += 1
    for k in ours:
        if k not in ref:
            print(f"EXTRA in ours: {k}")
            diffs += 1
    order_ref, order_ours = list(ref), list(ours)
    if order_ref != order_ours:
        print("key order differs:\n  llama.cpp", order_ref, "\n  ours     ", order_ours)
        diffs += 1
    print(f"{args.model_dir}: {len(ref)} llama.cpp keys, {diffs} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())

"""Package-level facts: version, typing marker, the default model locator, the CLI entry point."""

from pathlib import Path

import kquants
from kquants._models import default_model_path


def test_version_matches_native_module():
    assert kquants.__version__ == kquants._kquants.__version__
    assert kquants.__version__.count(".") == 2


def test_py_typed_marker_and_stubs_ship():
    pkg = Path(kquants.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_kquants.pyi").is_file()


def test_gguf_error_is_value_error():
    assert issubclass(kquants.GGUFError, ValueError)


def test_default_model_is_located():
    p = default_model_path()
    assert p.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert p.read_bytes()[:4] == b"GGUF"

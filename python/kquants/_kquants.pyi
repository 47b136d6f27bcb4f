"""Type stubs for the native module ``kquants._kquants``."""

__version__: str

class GGUFError(ValueError):
    """A GGUF file is malformed; the message names the field and its byte offset."""

def _type_table() -> list[tuple[str, int, int, int, bool]]: ...

"""The compiled library and the few helpers every other module uses to cross into it.

This is the one module that imports ``pymongoose._mongoose_cffi``; the rest of the
package goes through the names it exports.
"""

from __future__ import annotations

from typing import Any, Union

try:
    from ._mongoose_cffi import ffi, lib
except ModuleNotFoundError as exc:
    # Imported from a source tree that was installed with ``pip install .`` rather than
    # built in place: use the installed copy's compiled module, or say what to run.
    if exc.name != f"{__package__}._mongoose_cffi":
        raise
    from ._installed import compiled_module

    _compiled = compiled_module(exc)
    ffi, lib = _compiled.ffi, _compiled.lib

__all__ = ["NULL", "as_bytes", "ffi", "lib", "mg_str_bytes"]

NULL = ffi.NULL

BytesLike = Union[bytes, bytearray, memoryview, str]


def as_bytes(data: object, what: str) -> bytes:
    """``data`` as bytes (str is UTF-8 encoded); a TypeError naming ``what`` otherwise."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


def mg_str_bytes(s: Any) -> bytes:
    """A copy of the bytes an ``struct mg_str`` points at."""
    length = s.len
    if length == 0:
        return b""
    return ffi.unpack(s.buf, length)  # type: ignore[no-any-return]

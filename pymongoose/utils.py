"""Mongoose's utility functions: JSON lookup, URL parts, glob matching, form variables,
multipart bodies, digests, base64, CRC-32, time, randomness and the log level.

Each is one call into Mongoose (md5, sha1 and match go through small helpers in
``csrc/util.c``). Arguments cross as bytes (str is UTF-8 encoded). Where Mongoose's
answer differs from the standard library's, the docstring says how.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional, Union, overload

from ._ffi import as_bytes, ffi, lib, mg_str_bytes
from .constants import MG_LL_NONE, MG_LL_VERBOSE

__all__ = [
    "base64_decode",
    "base64_encode",
    "crc32",
    "hmac_sha256",
    "http_parse_multipart",
    "http_var",
    "json_get",
    "json_get_bool",
    "json_get_long",
    "json_get_num",
    "json_get_str",
    "log_get",
    "log_set",
    "match",
    "md5",
    "millis",
    "random_bytes",
    "random_str",
    "sha1",
    "sha256",
    "url_encode",
    "url_host",
    "url_is_ssl",
    "url_pass",
    "url_port",
    "url_uri",
    "url_user",
]

Data = Union[str, bytes, bytearray, memoryview]

# Slices of URLs, form values and matched strings may cut or carry any byte;
# surrogateescape keeps them round-trippable, as HttpMessage.uri does.
_TEXT_ERRORS = "surrogateescape"

# Mongoose keeps lengths and offsets of JSON documents and form values in a C int.
_C_INT_MAX = 2**31 - 1


def _c_string(value: object, what: str) -> bytes:
    """A str argument Mongoose reads as a NUL-terminated C string."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    raw = value.encode("utf-8")
    if b"\0" in raw:
        raise ValueError(f"{what} must not contain NUL characters")
    return raw


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", _TEXT_ERRORS)


# -- JSON ---------------------------------------------------------------------------

_JSON_PATH = re.compile(r"\$(?:\.[^.\[\x00]+|\[[0-9]+\])*")
_JSON_PATH_STEP = re.compile(r"\.[^.\[\x00]+|\[([0-9]+)\]")


def _json_path(path: object) -> list[bytes]:
    """``path`` checked against what Mongoose's JSON reader understands, as one path
    per step: ``'$.a[0]'`` gives ``[b'$', b'$.a', b'$[0]']``."""
    if not isinstance(path, str):
        raise TypeError(f"JSON path must be str, not {type(path).__name__}")
    if not _JSON_PATH.fullmatch(path):
        raise ValueError(
            f"invalid JSON path {path!r}: expected '$' followed by .key and [index] "
            "steps, e.g. '$.items[0].id'"
        )
    steps = list(_JSON_PATH_STEP.finditer(path, 1))
    if len(steps) > lib.MG_JSON_MAX_DEPTH:
        raise ValueError(
            f"JSON path has {len(steps)} steps; Mongoose reads at most "
            f"{lib.MG_JSON_MAX_DEPTH} levels of nesting"
        )
    if any(step.group(1) and int(step.group(1)) > _C_INT_MAX for step in steps):
        raise ValueError(f"JSON path {path!r} has an array index above {_C_INT_MAX}")
    return [b"$"] + [b"$" + step.group().encode("utf-8") for step in steps]


def _json_token(data: Data, path: str) -> Optional[tuple[Any, tuple[Any, int]]]:
    """Where the value at ``path`` is: ``data``'s buffer (keep it while using the
    rest) and a ``struct mg_str`` over the value's JSON text; None if absent.

    Each step is looked up inside the previous step's value: given the whole path,
    Mongoose's ``mg_json_get`` goes on past an empty array or object on the path into
    a later sibling (``'[[], [5]]'`` at ``'$[0][0]'`` gives 5).
    """
    steps = _json_path(path)
    raw = as_bytes(data, "JSON data")
    if len(raw) > _C_INT_MAX:
        raise ValueError(f"JSON data is {len(raw)} bytes; Mongoose reads at most {_C_INT_MAX}")
    buf = ffi.from_buffer("char[]", raw)
    value = (buf, len(raw))
    length = ffi.new("int *")
    for step in steps:
        offset = lib.mg_json_get(value, step, length)
        if offset < 0:
            return None
        value = (value[0] + offset, length[0])
    return buf, value


def json_get(data: Data, path: str) -> Optional[str]:
    """The JSON text of the value at ``path`` (``'$.items[0].id'``), None if absent.

    Strings come back quoted and escaped as written (``'"a\\n"'``), numbers as
    written (``'1.50e2'``), objects and arrays as their source text:
    ``json.loads(json_get(doc, path))`` gives the value.

    The path is ``$`` then ``.key`` and ``[index]`` steps, at most 30 deep; a malformed
    path raises ValueError. Keys are compared with their JSON text as written (a key
    written with ``\\u`` escapes is not found by its decoded name), and the first of
    duplicate keys wins (``json.loads`` keeps the last). A document Mongoose's reader
    finds broken gives None; that reader stops after the first top-level value
    (``'[1] x'`` is read as ``'[1]'``) and lets trailing commas and leading zeros pass.
    """
    found = _json_token(data, path)
    if found is None:
        return None
    _, (text, length) = found
    return _decode(ffi.unpack(text, length))


def json_get_num(data: Data, path: str, default: Optional[float] = None) -> Optional[float]:
    """The number at ``path`` as a float; ``default`` if absent or not a number.

    Read by Mongoose's own decimal reader, not ``float()``: whole numbers up to 2**53
    are exact, others are within about 1e-13 (relative) of ``float(text)`` for
    exponents up to ±300; exponents are clamped to ±308 (``1e400`` reads as about
    ``1e308``, ``5e-324`` as about ``5e-308``).
    """
    found = _json_token(data, path)
    if found is None:
        return default
    _, token = found
    value = ffi.new("double *")
    return float(value[0]) if lib.mg_json_get_num(token, b"$", value) else default


def json_get_bool(data: Data, path: str, default: Optional[bool] = None) -> Optional[bool]:
    """The boolean at ``path``; ``default`` if absent or not ``true``/``false``."""
    found = _json_token(data, path)
    if found is None:
        return default
    _, token = found
    value = ffi.new("bool *")
    return bool(value[0]) if lib.mg_json_get_bool(token, b"$", value) else default


def json_get_long(data: Data, path: str, default: int = 0) -> int:
    """The number at ``path`` truncated toward zero; ``default`` if absent or not a number.

    As Mongoose's ``mg_json_get_long``: the number is read as a float (see
    ``json_get_num``) and truncated, so it is exact up to 2**53. Unlike the C cast,
    values beyond 64 bits come back whole rather than undefined, and a number too
    large even for a float (hundreds of digits) gives ``default``.
    """
    number = json_get_num(data, path)
    if number is None or not math.isfinite(number):
        return default
    return int(number)


def json_get_str(data: Data, path: str) -> Optional[str]:
    """The string at ``path``, unescaped; None if absent or not a string.

    Mongoose finds the string; Python's ``json`` module unescapes it, because
    Mongoose's own unescaper decodes ``\\u`` escapes only up to ``\\u00ff``, as single
    bytes, and cuts the string short at the first one beyond. An invalid escape
    gives None.
    """
    text = json_get(data, path)
    if text is None or not text.startswith('"'):
        return None
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


# -- URLs ---------------------------------------------------------------------------


def url_port(url: str) -> int:
    """The port in ``url``, else the scheme's default (http/ws 80, https/wss 443,
    mqtt 1883, mqtts 8883), else 0.

    Mongoose does not range-check: the digits go through C's ``atoi`` and are cut to
    16 bits (``':70000'`` gives 4464, where ``urllib`` raises ValueError).
    """
    return int(lib.mg_url_port(_c_string(url, "url")))


def _url_part(getter: Any, url: str) -> str:
    c_url = ffi.new("char[]", _c_string(url, "url"))  # the result points into it
    return _decode(mg_str_bytes(getter(c_url)))


def url_host(url: str) -> str:
    """The host in ``url``, as written: case kept, and an IPv6 address keeps its
    brackets (``'[::1]'``, where ``urllib``'s ``hostname`` gives ``'::1'``)."""
    return _url_part(lib.mg_url_host, url)


def url_user(url: str) -> str:
    """The user name in ``url`` (``user:pass@host``), as written; ``''`` if none.

    Mongoose splits at the first ``@`` (``urllib`` at the last).
    """
    return _url_part(lib.mg_url_user, url)


def url_pass(url: str) -> str:
    """The password in ``url`` (``user:pass@host``), as written; ``''`` if none."""
    return _url_part(lib.mg_url_pass, url)


def url_uri(url: str) -> str:
    """Everything from the first ``/`` after the host (path, query and fragment);
    ``'/'`` when there is none."""
    c_url = ffi.new("char[]", _c_string(url, "url"))
    return _decode(ffi.string(lib.mg_url_uri(c_url)))


def url_is_ssl(url: str) -> bool:
    """Whether the scheme implies TLS: https, wss, mqtts, ssl, tls, tcps (lower case)."""
    return bool(lib.mg_url_is_ssl(_c_string(url, "url")))


def url_encode(data: Data) -> str:
    """Percent-encode everything but ``A-Z a-z 0-9 - . _ ~``.

    The safe set is ``urllib.parse.quote(data, safe='')``'s, but the hex digits are
    lower case (``'%2f'`` where ``quote`` writes ``'%2F'``).
    """
    raw = as_bytes(data, "data")
    size = 3 * len(raw) + 4
    out = ffi.new("char[]", size)
    length = lib.mg_url_encode(raw, len(raw), out, size)
    return ffi.unpack(out, length).decode("ascii")  # type: ignore[no-any-return]


# -- Glob matching --------------------------------------------------------------------


@overload
def match(s: str, pattern: Union[str, bytes]) -> tuple[bool, list[str]]: ...
@overload
def match(s: bytes, pattern: Union[str, bytes]) -> tuple[bool, list[bytes]]: ...


def match(s: Union[str, bytes], pattern: Union[str, bytes]) -> tuple[bool, list[Any]]:
    """Whether all of ``s`` matches the glob ``pattern``, and one capture per wildcard.

    ``?`` matches one byte, ``#`` any run of bytes, ``*`` a run that does not go on
    past a ``/``: ``match('/api/v1/x', '/api/*')`` is False, ``'/api/#'`` matches.
    Captures are str when ``s`` is (UTF-8, surrogateescape), bytes otherwise; no match
    gives ``(False, [])``.

    Mongoose's matcher differs from a full glob (``fnmatch``, regular expressions):

    - it backtracks only into the last ``*`` or ``#``, so ``'#/*'`` does not match
      ``'/b/b/a'``;
    - a ``*`` checks for ``/`` only where the rest of the pattern fails, so a ``/``
      later in the pattern lets it run over earlier ones (``'*/'`` matches ``'a/b/'``);
    - each wildcard takes as little as it can, the last one the rest;
    - captures are reliable when wildcards are separated by literal text and every
      ``?`` comes before the first ``*`` or ``#``; adjacent wildcards share a capture
      (the first gets it, the others ``''``), and a ``?`` after a ``*`` or ``#``
      reuses the slots as Mongoose backtracks, so their captures are arbitrary
      pieces of ``s``.
    """
    raw = as_bytes(s, "s")
    raw_pattern = as_bytes(pattern, "pattern")
    ncaps = raw_pattern.count(b"?") + raw_pattern.count(b"*") + raw_pattern.count(b"#")
    caps = ffi.new("size_t[]", 2 * ncaps)
    found = lib.pymg_match(raw, len(raw), raw_pattern, len(raw_pattern), caps, ncaps)
    if found < 0:
        raise MemoryError(f"no memory for the captures of pattern {pattern!r}")
    if not found:
        return False, []
    pieces = [raw[caps[2 * i]:caps[2 * i] + caps[2 * i + 1]] for i in range(ncaps)]
    if isinstance(s, str):
        return True, [_decode(piece) for piece in pieces]
    return True, pieces


# -- Forms ----------------------------------------------------------------------------


def http_var(buf: Data, name: str) -> Optional[str]:
    """The URL-decoded value of ``name`` in a query string or form body; None if absent.

    Like ``HttpMessage.query_var``: ``+`` decodes to a space, names are compared
    without case and as written (not decoded), the first occurrence wins, and a value
    with a broken ``%`` escape gives None (``urllib.parse.parse_qs`` keeps it as is).
    """
    raw = as_bytes(buf, "buf")
    c_name = _c_string(name, "name")
    if len(raw) >= _C_INT_MAX:
        raise ValueError(f"buf is {len(raw)} bytes; Mongoose reads less than {_C_INT_MAX}")
    source_bytes = ffi.from_buffer("char[]", raw)
    source = ffi.new("struct mg_str *", (source_bytes, len(raw)))
    # A decoded value is never longer than its encoded source.
    out = ffi.new("char[]", len(raw) + 1)
    length = lib.mg_http_get_var(source, c_name, out, len(raw) + 1)
    if length < 0:
        return None
    return _decode(ffi.unpack(out, length))


def http_parse_multipart(
    body: Data, offset: int = 0
) -> tuple[int, Optional[dict[str, Union[str, bytes]]]]:
    """The multipart/form-data part at ``offset`` in ``body``, and where the next starts.

    Returns ``(next_offset, {"name": str, "filename": str, "body": bytes})``, with
    ``filename`` ``''`` for a plain field, or ``(0, None)`` when no part is left. Loop
    from offset 0 until ``next_offset`` is 0. As Mongoose does, the boundary is the
    body's first line (the Content-Type header is not consulted) and ``name`` is read
    from the first ``name=`` in Content-Disposition.
    """
    raw = as_bytes(body, "body")
    start = _count(offset, "offset")
    if start > len(raw):
        raise ValueError(f"offset {start} is past the end of the body ({len(raw)} bytes)")
    buf = ffi.from_buffer("char[]", raw)
    part = ffi.new("struct mg_http_part *")
    next_offset = lib.mg_http_next_multipart((buf, len(raw)), start, part)
    if next_offset == 0:
        return 0, None
    return int(next_offset), {
        "name": _decode(mg_str_bytes(part.name)),
        "filename": _decode(mg_str_bytes(part.filename)),
        "body": mg_str_bytes(part.body),
    }


# -- Digests, base64, CRC-32 ---------------------------------------------------------


def md5(data: Data) -> bytes:
    """The 16-byte MD5 digest of ``data``."""
    raw = as_bytes(data, "data")
    digest = ffi.new("unsigned char[16]")
    lib.pymg_md5(raw, len(raw), digest)
    return bytes(ffi.buffer(digest))


def sha1(data: Data) -> bytes:
    """The 20-byte SHA-1 digest of ``data``."""
    raw = as_bytes(data, "data")
    digest = ffi.new("unsigned char[20]")
    lib.pymg_sha1(raw, len(raw), digest)
    return bytes(ffi.buffer(digest))


def sha256(data: Data) -> bytes:
    """The 32-byte SHA-256 digest of ``data``."""
    raw = as_bytes(data, "data")
    digest = ffi.new("uint8_t[32]")
    lib.mg_sha256(digest, raw, len(raw))
    return bytes(ffi.buffer(digest))


def hmac_sha256(key: Data, data: Data) -> bytes:
    """The 32-byte HMAC-SHA256 of ``data`` under ``key``."""
    raw_key = as_bytes(key, "key")
    raw = as_bytes(data, "data")
    digest = ffi.new("uint8_t[32]")
    lib.mg_hmac_sha256(digest, raw_key, len(raw_key), raw, len(raw))
    return bytes(ffi.buffer(digest))


def base64_encode(data: Data) -> str:
    """Standard base64 (``+/``, ``=`` padding) of ``data``, as ``base64.b64encode``."""
    raw = as_bytes(data, "data")
    size = (len(raw) + 2) // 3 * 4 + 1
    out = ffi.new("char[]", size)
    length = lib.mg_base64_encode(raw, len(raw), out, size)
    return ffi.unpack(out, length).decode("ascii")  # type: ignore[no-any-return]


_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def base64_decode(data: Union[str, bytes]) -> bytes:
    """The bytes that standard, padded base64 ``data`` encodes.

    Strict, as ``base64.b64decode(data, validate=True)``: no whitespace, no missing
    padding, ``=`` only at the end; anything else raises ValueError. (Mongoose alone
    would skip a trailing partial group and accept ``=`` mid-string.)
    """
    raw = as_bytes(data, "data")
    if not _BASE64.fullmatch(raw):
        raise ValueError(
            "data is not base64: expected groups of 4 characters from A-Z a-z 0-9 + /, "
            "with '=' padding only at the end"
        )
    size = len(raw) // 4 * 3 + 1
    out = ffi.new("char[]", size)
    length = lib.mg_base64_decode(raw, len(raw), out, size)
    return ffi.unpack(out, length)  # type: ignore[no-any-return]


def crc32(data: Data, initial: int = 0) -> int:
    """The CRC-32 of ``data`` (as ``zlib.crc32``); pass an earlier result as
    ``initial`` to continue over more data."""
    raw = as_bytes(data, "data")
    start = _count(initial, "initial")
    if start > 0xFFFFFFFF:
        raise ValueError(f"initial must fit in 32 bits, got {start}")
    return int(lib.mg_crc32(start, raw, len(raw)))


# -- Time and randomness -------------------------------------------------------------


def millis() -> int:
    """Milliseconds on Mongoose's monotonic clock, the one its timers use
    (``CLOCK_MONOTONIC_RAW`` on Linux)."""
    return int(lib.mg_millis())


def random_bytes(length: int) -> bytes:
    """``length`` cryptographically random bytes from the system.

    Raises OSError if the system source fails (Mongoose would fall back to
    ``rand()``).
    """
    count = _count(length, "length")
    buf = ffi.new("char[]", count)
    if not lib.mg_random(buf, count):
        raise OSError("no strong random source: Mongoose fell back to rand()")
    return ffi.unpack(buf, count)  # type: ignore[no-any-return]


def random_str(length: int) -> str:
    """``length`` random characters from ``a-z A-Z 0-9``, for ids and tokens.

    Each is a random byte modulo 62, so ``a``-``h`` come up slightly more often
    (5/256 against 4/256).
    """
    count = _count(length, "length")
    buf = ffi.new("char[]", count + 1)
    lib.mg_random_str(buf, count + 1)
    return ffi.unpack(buf, count).decode("ascii")  # type: ignore[no-any-return]


# -- Logging ----------------------------------------------------------------------------


def log_set(level: int) -> None:
    """Set Mongoose's log level, ``MG_LL_NONE`` to ``MG_LL_VERBOSE``.

    Its lines go to the ``pymongoose.mongoose`` logger at the matching ``logging``
    level; pymongoose starts at ``MG_LL_ERROR``.
    """
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"log level must be an int (MG_LL_*), not {type(level).__name__}")
    if not MG_LL_NONE <= level <= MG_LL_VERBOSE:
        raise ValueError(
            f"log level must be MG_LL_NONE ({MG_LL_NONE}) to MG_LL_VERBOSE "
            f"({MG_LL_VERBOSE}), got {level}"
        )
    lib.mg_log_level = level


def log_get() -> int:
    """Mongoose's current log level (``MG_LL_*``)."""
    return int(lib.mg_log_level)

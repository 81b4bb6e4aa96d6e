"""atheris (CPython) target: pymongoose.utils with hostile arguments, str and bytes.

    pip install atheris   # CPython only
    python fuzz/atheris_utils.py -max_total_time=600 /tmp/corpus-atheris fuzz/corpus/atheris

A bad argument may raise ValueError or TypeError with a message (the documented
contract); any other exception, a wrong answer to a property checked here, or a crash
is a finding.
"""

from __future__ import annotations

import base64
import contextlib
import sys
import zlib
from typing import Any, Callable

import atheris

with atheris.instrument_imports():
    from pymongoose import utils

ALLOWED = (ValueError, TypeError)


def _json(fdp: Any) -> None:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    # Mostly paths of JSON path characters, so the lookups are reached.
    if fdp.ConsumeBool():
        alphabet = ".[]0123abc_$"
        path = "$" + "".join(alphabet[b % len(alphabet)]
                             for b in fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20)))
    else:
        path = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    text = utils.json_get(data, path)
    if text is not None:
        assert isinstance(text, str)
    utils.json_get_num(data, path)
    utils.json_get_bool(data, path)
    assert isinstance(utils.json_get_long(data, path), int)
    value = utils.json_get_str(data, path)
    assert value is None or isinstance(value, str)


def _match(fdp: Any) -> None:
    as_text = fdp.ConsumeBool()
    s = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    pattern = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
    subject: Any = s.decode("latin-1") if as_text else s
    found, caps = utils.match(subject, pattern)
    wildcards = sum(pattern.count(w) for w in (b"?", b"*", b"#"))
    assert (found is False and caps == []) or len(caps) == wildcards


def _url(fdp: Any) -> None:
    url = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    assert 0 <= utils.url_port(url) <= 65535
    for getter in (utils.url_host, utils.url_user, utils.url_pass, utils.url_uri):
        assert isinstance(getter(url), str)
    utils.url_is_ssl(url)


def _encodings(fdp: Any) -> None:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    encoded = utils.base64_encode(data)
    assert encoded == base64.b64encode(data).decode()
    assert utils.base64_decode(encoded) == data
    text = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 100))
    try:
        decoded = utils.base64_decode(text)
    except ValueError:
        pass
    else:
        assert decoded == base64.b64decode(text, validate=True)
    quoted = utils.url_encode(data)
    assert all(c.isalnum() or c in "-._~%" for c in quoted)
    assert utils.crc32(data) == zlib.crc32(data)


def _forms(fdp: Any) -> None:
    buf = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    name = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 10))
    value = utils.http_var(buf, name)
    assert value is None or isinstance(value, str)
    offset, steps = 0, 0
    while steps < 100:
        offset, part = utils.http_parse_multipart(buf, offset)
        if part is None:
            break
        assert 0 < offset <= len(buf)
        steps += 1


def _digests(fdp: Any) -> None:
    key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 100))
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    assert len(utils.md5(data)) == 16 and len(utils.sha1(data)) == 20
    assert len(utils.sha256(data)) == 32 and len(utils.hmac_sha256(key, data)) == 32


TARGETS: list[Callable[[Any], None]] = [_json, _match, _url, _encodings, _forms, _digests]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)]
    with contextlib.suppress(*ALLOWED):
        target(fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

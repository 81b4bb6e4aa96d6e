"""The utility functions, each checked against the standard library's own answer.

Where Mongoose's answer differs on purpose, the documented difference is what is tested.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import fnmatch
import hashlib
import hmac
import json
import logging
import math
import re
import string
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pymongoose
from pymongoose import (
    MG_LL_DEBUG,
    MG_LL_ERROR,
    MG_LL_INFO,
    MG_LL_NONE,
    MG_LL_VERBOSE,
    Manager,
    base64_decode,
    base64_encode,
    crc32,
    hmac_sha256,
    http_parse_multipart,
    http_var,
    json_get,
    json_get_bool,
    json_get_long,
    json_get_num,
    json_get_str,
    log_get,
    log_set,
    match,
    md5,
    millis,
    random_bytes,
    random_str,
    sha1,
    sha256,
    url_encode,
    url_host,
    url_is_ssl,
    url_pass,
    url_port,
    url_uri,
    url_user,
    utils,
)

# Deterministic and modest, so the file runs in seconds on PyPy too.
checked = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


def test_every_utility_is_exported_from_the_package() -> None:
    for name in utils.__all__:
        assert getattr(pymongoose, name) is getattr(utils, name)
        assert name in pymongoose.__all__


# -- JSON -------------------------------------------------------------------------

# Keys Mongoose can address: no '.', '[', and nothing json.dumps would escape.
json_keys = st.text(alphabet="abcxyz019_-é€", min_size=1, max_size=5)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(min_value=-1e300, max_value=1e300, allow_nan=False).filter(
        lambda x: x == 0 or abs(x) >= 1e-300)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children,
                                                                      max_size=4),
    max_leaves=10,
)


def paths_in(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every (Mongoose path, value) pair in a decoded JSON value."""
    yield path, value
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_in(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, f"{path}.{key}")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@checked
@given(value=json_values, indent=st.sampled_from([None, 0, 2]))
def test_json_lookups_agree_with_the_json_module(value: Any, indent: Optional[int]) -> None:
    document = json.dumps(value, indent=indent, ensure_ascii=False)
    for path, expected in paths_in(value):
        token = json_get(document, path)
        assert token is not None and json.loads(token) == expected, path
        assert json_get_bool(document, path) == (
            expected if isinstance(expected, bool) else None)
        assert json_get_str(document, path) == (expected if isinstance(expected, str) else None)
        number = json_get_num(document, path)
        if isinstance(expected, int) and is_number(expected):
            assert number == expected and json_get_long(document, path) == expected
        elif isinstance(expected, float):
            assert number is not None and math.isclose(number, expected, rel_tol=1e-12)
        else:
            assert number is None and json_get_num(document, path, default=2.5) == 2.5
            assert json_get_long(document, path, default=-3) == -3
        if isinstance(expected, list):
            assert json_get(document, f"{path}[{len(expected)}]") is None
        elif isinstance(expected, dict):
            assert json_get(document, f"{path}.nokey") is None


@checked
@given(text=st.text(max_size=20), ensure_ascii=st.booleans())
def test_json_get_str_unescapes_like_json_loads(text: str, ensure_ascii: bool) -> None:
    document = json.dumps({"k": [text]}, ensure_ascii=ensure_ascii)
    assert json_get_str(document, "$.k[0]") == json.loads(document)["k"][0] == text
    assert json_get_str(document.encode("utf-8"), "$.k[0]") == text


@checked
@given(magnitude=st.floats(min_value=1e-300, max_value=1e300), negative=st.booleans(),
       style=st.sampled_from(["{!r}", "{:.17e}", "{:.17E}", "{:.6g}"]))
def test_json_numbers_are_within_1e_13_of_float(magnitude: float, negative: bool,
                                                style: str) -> None:
    text = style.format(-magnitude if negative else magnitude)
    number = json_get_num(f"[{text}]", "$[0]")
    assert number is not None and math.isclose(number, float(text), rel_tol=1e-13)


def test_json_number_exponents_are_clamped_to_308() -> None:
    assert json_get_num("[1e400]", "$[0]") == pytest.approx(1e308, rel=1e-12)
    assert json_get_num("[5e-324]", "$[0]") == pytest.approx(5e-308, rel=1e-12)
    assert float("1e400") == math.inf  # where float() overflows


def test_json_get_long_truncates_and_keeps_big_values_whole() -> None:
    assert json_get_long('{"a": -2.9, "b": 2.9}', "$.a") == -2
    assert json_get_long('{"a": -2.9, "b": 2.9}', "$.b") == 2
    assert json_get_long("[1e20]", "$[0]") == 10**20
    too_big = "[" + "9" * 400 + "]"
    assert json_get_num(too_big, "$[0]") == math.inf
    assert json_get_long(too_big, "$[0]", default=-1) == -1


def test_json_get_returns_values_as_written() -> None:
    document = '{"a": 1.50e2, "s": "x\\ny", "o": {"k": [1, 2]}}'
    assert json_get(document, "$.a") == "1.50e2"
    assert json_get(document, "$.s") == '"x\\ny"'
    assert json_get(document, "$.o") == '{"k": [1, 2]}'
    assert json_get(document.encode(), "$.o.k[1]") == "2"
    assert json_get(bytearray(document.encode()), "$.o.k") == "[1, 2]"


def test_json_documented_differences_from_json_loads() -> None:
    # Keys are compared as written.
    assert json_get('{"café": 1}', "$.café") == "1"
    assert json.loads('{"caf\\u00e9": 1}') == {"café": 1}
    assert json_get('{"caf\\u00e9": 1}', "$.café") is None
    # The first duplicate wins.
    assert json.loads('{"a": 1, "a": 2}') == {"a": 2}
    assert json_get('{"a": 1, "a": 2}', "$.a") == "1"
    # A broken document gives None, but the reader is lenient.
    for broken in ("[1, 2", "[1 2]", "[1, }", "[1, tru]", ""):
        with pytest.raises(ValueError):
            json.loads(broken)
        assert json_get(broken, "$[0]") is None
    for lenient in ("[1] x", "[1,]", "[01]"):
        with pytest.raises(ValueError):
            json.loads(lenient)
        assert json_get_num(lenient, "$[0]") == 1
    assert json_get_str('["\\q"]', "$[0]") is None


@pytest.mark.parametrize(("document", "path"), [
    ("[[], [5]]", "$[0][0]"), ("[{}, {\"c\": 5}]", "$[0].c"), ("[[[]], [[5]]]", "$[0][0][0]"),
])
def test_json_lookups_stay_inside_an_empty_container(document: str, path: str) -> None:
    # Mongoose's mg_json_get alone goes on into the next sibling and finds the 5.
    assert json_get(document, path) is None
    assert json_get_num(document, path) is None
    assert json_get_long(document, path, default=-1) == -1


def test_json_paths_as_deep_as_mongoose_reads() -> None:
    depth = 30
    document = "[" * depth + "7" + "]" * depth
    assert json_get_num(document, "$" + "[0]" * depth) == 7
    assert json_get_num("[" * (depth + 1) + "7" + "]" * (depth + 1),
                        "$" + "[0]" * depth) is None  # too deep for Mongoose
    with pytest.raises(ValueError, match="at most 30"):
        json_get(document, "$" + "[0]" * (depth + 1))


@pytest.mark.parametrize("path", ["", "a", "$.", "$..a", "$[", "$[]", "$[-1]", "$[1", "$a",
                                  "$.a[x]", "$[\u0663]", "$.a\0b", "$[2147483648]", " $"])
@pytest.mark.parametrize("function", [json_get, json_get_num, json_get_bool, json_get_long,
                                      json_get_str])
def test_json_bad_paths_raise_value_error(function: Callable[..., Any], path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        function('{"a": [1]}', path)


@pytest.mark.parametrize("function", [json_get, json_get_num, json_get_bool, json_get_long,
                                      json_get_str])
def test_json_wrong_types_raise_type_error(function: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match="path"):
        function("[1]", b"$")
    with pytest.raises(TypeError, match="JSON data"):
        function(12, "$")


# -- URLs ---------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443, "mqtt": 1883, "mqtts": 8883}
TLS_SCHEMES = {"https", "wss", "mqtts", "ssl", "tls", "tcps"}
SCHEMES = sorted(set(DEFAULT_PORTS) | TLS_SCHEMES | {"tcp", "udp"})
USERINFO = string.ascii_letters + string.digits + "-._~%!$&'()*+,;="
host_names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?(\.[A-Za-z]{1,4}){0,2}",
                           fullmatch=True)
hosts = (host_names | st.ip_addresses(v=4).map(str)
         | st.ip_addresses(v=6).map(lambda address: f"[{address}]"))
url_paths = st.text(string.ascii_letters + string.digits + "/-._~%:@", max_size=10)
url_queries = st.text(string.ascii_letters + string.digits + "=&/:@?%", max_size=10)


@checked
@given(scheme=st.sampled_from(SCHEMES), user=st.none() | st.text(USERINFO, max_size=6),
       password=st.none() | st.text(USERINFO, max_size=6), host=hosts,
       port=st.none() | st.integers(0, 65535), path=st.none() | url_paths,
       query=st.none() | url_queries)
def test_url_parts_agree_with_urllib(scheme: str, user: Optional[str],
                                     password: Optional[str], host: str,
                                     port: Optional[int], path: Optional[str],
                                     query: Optional[str]) -> None:
    userinfo = ""
    if user is not None:
        userinfo = user + ("" if password is None else ":" + password) + "@"
    url = f"{scheme}://{userinfo}{host}"
    url += "" if port is None else f":{port}"
    if path is not None:  # a query needs a path: Mongoose's URI starts at the first '/'
        url += "/" + path + ("" if query is None else "?" + query)
    parts = urllib.parse.urlsplit(url)

    assert url_host(url) == host
    assert url_host(url).strip("[]").lower() == parts.hostname
    assert url_port(url) == (parts.port if parts.port is not None
                             else DEFAULT_PORTS.get(scheme, 0))
    assert url_user(url) == (parts.username or "")
    assert url_pass(url) == (parts.password or "")
    if path is None:
        assert url_uri(url) == "/" and parts.path == ""
    else:
        assert url_uri(url) == parts.path + ("" if query is None else "?" + parts.query)
    assert url_is_ssl(url) is (scheme in TLS_SCHEMES)


def test_url_documented_differences_from_urllib() -> None:
    # IPv6 hosts keep their brackets; case is kept.
    assert url_host("http://[::1]:8000/") == "[::1]"
    assert urllib.parse.urlsplit("http://[::1]:8000/").hostname == "::1"
    assert url_host("http://Example.COM/") == "Example.COM"
    # Ports are not range-checked.
    assert url_port("http://h:65536/") == 0
    assert url_port("http://h:70000") == 70000 % 65536
    with pytest.raises(ValueError):
        _ = urllib.parse.urlsplit("http://h:70000").port
    # The first '@' separates the user.
    assert url_user("http://a@b@c/") == "a" and url_host("http://a@b@c/") == "b@c"
    assert urllib.parse.urlsplit("http://a@b@c/").username == "a@b"
    # The URI runs to the end, fragment included; "/" when there is none.
    assert url_uri("http://h/p?q=1#frag") == "/p?q=1#frag"
    assert url_uri("http://h:1") == "/"
    assert url_port("unknown://h/") == 0
    assert url_is_ssl("HTTPS://h/") is False


@pytest.mark.parametrize("function", [url_port, url_host, url_user, url_pass, url_uri,
                                      url_is_ssl])
def test_url_bad_arguments(function: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError, match="url must be str"):
        function(b"http://h/")
    with pytest.raises(ValueError, match="NUL"):
        function("http://h/\0x")


def lower_hex(encoded: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), encoded)


@checked
@given(text=st.text(max_size=30), data=st.binary(max_size=30))
def test_url_encode_is_quote_with_lower_case_hex(text: str, data: bytes) -> None:
    assert url_encode(text) == lower_hex(urllib.parse.quote(text, safe=""))
    assert urllib.parse.unquote(url_encode(text)) == text
    assert url_encode(data) == lower_hex(urllib.parse.quote_from_bytes(data, safe=""))


def test_url_encode_examples() -> None:
    assert url_encode("a b/~é") == "a%20b%2f~%c3%a9"
    assert url_encode("") == ""
    assert url_encode("AZaz09-._~") == "AZaz09-._~"
    with pytest.raises(TypeError):
        url_encode(5)  # type: ignore[arg-type]


# -- Glob matching ---------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """What ``pattern`` means as a lazy regular expression (one group per wildcard)."""
    parts = {"?": "(.)", "#": "(.*?)", "*": "([^/]*?)"}
    return re.compile("".join(parts.get(char, re.escape(char)) for char in pattern), re.S)


@st.composite
def globs(draw: Callable[..., Any], wildcards: str, alphabet: str) -> str:
    """Patterns with reliable captures: wildcards apart, every '?' before a '*' or '#'."""
    marks = draw(st.lists(st.sampled_from(wildcards), max_size=4))
    marks.sort(key=lambda mark: mark != "?")
    pieces = [draw(st.text(alphabet, max_size=3))]
    for index, mark in enumerate(marks):
        last = index == len(marks) - 1
        pieces += [mark, draw(st.text(alphabet, min_size=0 if last else 1, max_size=3))]
    return "".join(pieces)


def subject_for(data: st.DataObject, pattern: str, alphabet: str) -> str:
    """Half the time any string, half the time one the pattern was filled in to."""
    if data.draw(st.booleans()):
        return str(data.draw(st.text(alphabet, max_size=10)))
    fills = {"?": st.sampled_from(alphabet), "#": st.text(alphabet, max_size=4),
             "*": st.text(alphabet.replace("/", ""), max_size=4)}
    return "".join(data.draw(fills[c]) if c in fills else c for c in pattern)


@checked
@given(data=st.data(), pattern=globs("?#", "ab/"))
def test_match_with_question_marks_and_hashes_is_fnmatch(data: st.DataObject,
                                                         pattern: str) -> None:
    s = subject_for(data, pattern, "ab/")
    expected = glob_regex(pattern).fullmatch(s)
    matched, captures = match(s, pattern)
    assert matched is fnmatch.fnmatchcase(s, pattern.replace("#", "*"))
    assert matched is (expected is not None)
    assert captures == (list(expected.groups()) if expected else [])


@checked
@given(data=st.data(), pattern=globs("?*#", "ab"))
def test_match_without_slashes_star_is_hash(data: st.DataObject, pattern: str) -> None:
    s = subject_for(data, pattern, "ab")
    expected = glob_regex(pattern.replace("*", "#")).fullmatch(s)
    matched, captures = match(s, pattern)
    assert matched is fnmatch.fnmatchcase(s, pattern.replace("#", "*"))
    assert captures == (list(expected.groups()) if expected else [])
    assert match(s.encode(), pattern.encode()) == (matched, [c.encode() for c in captures])


@checked
@given(prefix=st.text("ab/", max_size=4), tail=st.text("ab/", max_size=6))
def test_match_trailing_star_stops_at_slash(prefix: str, tail: str) -> None:
    assert match(prefix + tail, prefix + "*") == (("/" not in tail), [tail] if "/" not in tail
                                                  else [])
    assert match(prefix + tail, prefix + "#") == (True, [tail])


@pytest.mark.parametrize(("s", "pattern", "expected"), [
    ("/api/v1/x", "/api/*", (False, [])),
    ("/api/v1/x", "/api/#", (True, ["v1/x"])),
    ("/api/v1/x", "/api/*/?", (True, ["v1", "x"])),
    ("", "#", (True, [""])),
    ("abc", "", (False, [])),
    # Backtracking goes only into the last wildcard: a full glob would match.
    ("/b/b/a", "#/*", (False, [])),
    # A later '/' in the pattern lets '*' run over earlier ones.
    ("a/b/", "*/", (True, ["a/b"])),
    # Adjacent wildcards share a capture.
    ("abc", "##", (True, ["abc", ""])),
])
def test_match_documented_behaviour(s: str, pattern: str,
                                    expected: tuple[bool, list[str]]) -> None:
    assert match(s, pattern) == expected


def test_match_documented_departures_from_a_full_glob() -> None:
    assert re.fullmatch(r".*/[^/]*", "/b/b/a") and not match("/b/b/a", "#/*")[0]
    assert not re.fullmatch(r"[^/]*/", "a/b/") and match("a/b/", "*/")[0]


def test_match_question_mark_after_star_stays_in_bounds() -> None:
    # Mongoose writes a capture slot per retry here; a long subject once overran them.
    s = "x" * 20000 + "z"
    matched, captures = match(s, "*??z")
    assert matched and len(captures) == 3 and all(c in s for c in captures)
    assert match(s, "a*??z") == (False, [])


def test_match_is_bytewise() -> None:
    assert match("é/x", "#/?") == (True, ["é", "x"])
    assert match("é", "??") == (True, ["\udcc3", "\udca9"])  # surrogateescape: lossless
    assert match("é".encode(), b"??") == (True, [b"\xc3", b"\xa9"])
    assert match(b"ab", "a?") == (True, [b"b"])
    with pytest.raises(TypeError, match="pattern"):
        match("a", 1)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        match(None, "a")  # type: ignore[call-overload]


# -- Forms ---------------------------------------------------------------------------


@checked
@given(pairs=st.lists(st.tuples(st.text("abcd", min_size=1, max_size=3), st.text(max_size=8)),
                      max_size=6))
def test_http_var_agrees_with_parse_qsl(pairs: list[tuple[str, str]]) -> None:
    query = urllib.parse.urlencode(pairs)
    parsed = urllib.parse.parse_qsl(query, keep_blank_values=True)
    first: dict[str, str] = {}
    for name, value in parsed:
        first.setdefault(name, value)
    for name, value in first.items():
        assert http_var(query, name) == value
        assert http_var(query.encode(), name.upper()) == value  # names ignore case
    assert http_var(query, "zz") is None


def test_http_var_documented_behaviour() -> None:
    assert http_var("a=1&b=x+y%21", "b") == "x y!"
    assert http_var("a=&b=2", "a") == ""
    assert http_var("a=1", "c") is None
    assert http_var("", "a") is None
    assert urllib.parse.parse_qs("c=%zz") == {"c": ["%zz"]}
    assert http_var("c=%zz", "c") is None
    assert http_var("a%20b=1", "a b") is None and http_var("a%20b=1", "a%20b") == "1"
    assert http_var("v=%ff", "v") == "\udcff"
    with pytest.raises(TypeError, match="name"):
        http_var("a=1", b"a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        http_var("a=1", "a\0")
    with pytest.raises(TypeError, match="buf"):
        http_var(None, "a")  # type: ignore[arg-type]


form_parts = st.lists(
    st.tuples(st.text(string.ascii_lowercase, min_size=1, max_size=8),
              st.none() | st.text(string.ascii_lowercase + ".", min_size=1, max_size=8),
              st.binary(max_size=40)),
    max_size=4,
)


def multipart_body(boundary: bytes, parts: list[tuple[str, Optional[str], bytes]]) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        disposition += "" if filename is None else f'; filename="{filename}"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode()
        if filename is not None:
            body += b"\r\nContent-Type: application/octet-stream"
        body += b"\r\n\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


@checked
@given(parts=form_parts)
def test_multipart_parts_agree_with_the_email_parser(
        parts: list[tuple[str, Optional[str], bytes]]) -> None:
    boundary = b"pymgB0undary"
    body = multipart_body(boundary, parts)
    message = email.message_from_bytes(
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n" + body,
        policy=email.policy.HTTP)
    expected = [
        {"name": part.get_param("name", header="content-disposition"),
         "filename": part.get_filename() or "", "body": part.get_payload(decode=True)}
        for part in message.iter_parts()
    ]
    assert expected == [{"name": n, "filename": f or "", "body": d} for n, f, d in parts]

    found = []
    offset = 0
    while True:
        next_offset, part = http_parse_multipart(body, offset)
        if next_offset == 0:
            assert part is None
            break
        assert next_offset > offset
        found.append(part)
        offset = next_offset
    assert found == expected


@checked
@given(body=st.binary(max_size=80) | st.text("-ab\r\n=\";:", max_size=80))
def test_multipart_garbage_ends_without_error(body: Any) -> None:
    offset, parts = 0, 0
    while True:
        offset, part = http_parse_multipart(body, offset)
        if offset == 0:
            break
        parts += 1
        assert part is not None and isinstance(part["body"], bytes)
    assert parts <= len(body)


def test_multipart_documented_behaviour() -> None:
    body = multipart_body(b"b", [("field", None, b"v"), ("up", "a.txt", b"data")])
    first_next, first = http_parse_multipart(body)
    assert first == {"name": "field", "filename": "", "body": b"v"}
    assert http_parse_multipart(body.decode(), first_next)[1] == {
        "name": "up", "filename": "a.txt", "body": b"data"}
    assert http_parse_multipart(body, len(body)) == (0, None)
    assert http_parse_multipart(b"") == (0, None)
    with pytest.raises(ValueError, match="past the end"):
        http_parse_multipart(body, len(body) + 1)
    with pytest.raises(ValueError, match="negative"):
        http_parse_multipart(body, -1)
    with pytest.raises(TypeError, match="offset"):
        http_parse_multipart(body, 1.5)  # type: ignore[arg-type]


# -- Digests, base64, CRC-32 ---------------------------------------------------------


@pytest.mark.parametrize(("function", "name"), [(md5, "md5"), (sha1, "sha1"),
                                                (sha256, "sha256")])
@checked
@given(data=st.binary(max_size=300))
def test_digests_agree_with_hashlib(function: Callable[[Any], bytes], name: str,
                                    data: bytes) -> None:
    expected = hashlib.new(name, data).digest()
    assert function(data) == expected
    assert function(bytearray(data)) == expected
    assert function(memoryview(data)) == expected
    text = data.decode("latin-1")
    assert function(text) == hashlib.new(name, text.encode("utf-8")).digest()


@checked
@given(key=st.binary(max_size=200), data=st.binary(max_size=200))
def test_hmac_sha256_agrees_with_hmac(key: bytes, data: bytes) -> None:
    assert hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


def test_digests_reject_other_types() -> None:
    for function in (md5, sha1, sha256):
        with pytest.raises(TypeError, match="data"):
            function(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        hmac_sha256(None, b"")  # type: ignore[arg-type]


@checked
@given(data=st.binary(max_size=100))
def test_base64_agrees_with_the_base64_module(data: bytes) -> None:
    encoded = base64_encode(data)
    assert encoded == base64.b64encode(data).decode("ascii")
    assert base64_decode(encoded) == data
    assert base64_decode(encoded.encode("ascii")) == data


@checked
@given(text=st.text("QUJDab+/=\n -_", max_size=12))
def test_base64_decode_is_strict(text: str) -> None:
    try:
        decoded: Optional[bytes] = base64_decode(text)
    except ValueError:
        decoded = None
    try:
        expected: Optional[bytes] = base64.b64decode(text, validate=True)
    except binascii.Error:
        expected = None
    # validate=True still lets excess padding through ('QUJD='): canonical length only.
    if expected is not None and len(base64.b64encode(expected)) != len(text):
        expected = None
    assert decoded == expected


@pytest.mark.parametrize("text", ["QQ", "QQ=", "Q===", "QQ==QQ==", "QQ=a", "====", "QUJD\n",
                                  " QUJD", "QU JD", "QUJ-", "QUJDé"])
def test_base64_decode_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not base64"):
        base64_decode(text)


def test_base64_examples() -> None:
    assert base64_encode("") == "" and base64_decode("") == b""
    assert base64_encode("é") == "w6k="
    assert base64_decode("QR==") == base64.b64decode("QR==") == b"A"  # spare bits ignored
    with pytest.raises(TypeError):
        base64_decode(3)  # type: ignore[arg-type]


@checked
@given(first=st.binary(max_size=100), second=st.binary(max_size=100),
       initial=st.integers(0, 2**32 - 1))
def test_crc32_agrees_with_binascii(first: bytes, second: bytes, initial: int) -> None:
    assert crc32(first) == binascii.crc32(first)
    assert crc32(first, initial) == binascii.crc32(first, initial)
    assert crc32(second, crc32(first)) == binascii.crc32(first + second)


def test_crc32_checks_initial() -> None:
    assert crc32("é") == binascii.crc32("é".encode())
    with pytest.raises(ValueError, match="32 bits"):
        crc32(b"", 2**32)
    with pytest.raises(ValueError, match="negative"):
        crc32(b"", -1)
    with pytest.raises(TypeError, match="initial"):
        crc32(b"", "0")  # type: ignore[arg-type]


# -- Time and randomness -------------------------------------------------------------


def test_millis_reads_the_monotonic_raw_clock() -> None:
    clock = getattr(time, "CLOCK_MONOTONIC_RAW", time.CLOCK_MONOTONIC)
    before = time.clock_gettime_ns(clock) // 1_000_000
    now = millis()
    after = time.clock_gettime_ns(clock) // 1_000_000
    assert before <= now <= after
    assert millis() >= now


def test_random_bytes() -> None:
    assert random_bytes(0) == b""
    block = random_bytes(16384)
    assert len(block) == 16384 and len(set(block)) == 256
    assert random_bytes(32) != random_bytes(32)
    with pytest.raises(ValueError, match="negative"):
        random_bytes(-1)
    with pytest.raises(TypeError, match="length"):
        random_bytes(2.0)  # type: ignore[arg-type]


def test_random_str() -> None:
    assert random_str(0) == ""
    text = random_str(4096)
    assert len(text) == 4096 and set(text) == set(string.ascii_letters + string.digits)
    assert random_str(32) != random_str(32)
    with pytest.raises(ValueError, match="negative"):
        random_str(-5)
    with pytest.raises(TypeError, match="length"):
        random_str("8")  # type: ignore[arg-type]


# -- Logging ----------------------------------------------------------------------------


@pytest.fixture
def restore_log_level() -> Iterator[None]:
    level = log_get()
    try:
        yield
    finally:
        log_set(level)


@pytest.mark.usefixtures("restore_log_level")
def test_log_level_round_trips() -> None:
    for level in (MG_LL_NONE, MG_LL_ERROR, MG_LL_INFO, MG_LL_DEBUG, MG_LL_VERBOSE):
        log_set(level)
        assert log_get() == level
    with pytest.raises(ValueError, match="MG_LL_NONE"):
        log_set(MG_LL_VERBOSE + 1)
    with pytest.raises(ValueError):
        log_set(-1)
    with pytest.raises(TypeError):
        log_set("debug")  # type: ignore[arg-type]
    assert log_get() == MG_LL_VERBOSE


@pytest.mark.usefixtures("restore_log_level")
def test_log_level_decides_what_mongoose_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Mongoose's lines reach the ``pymongoose.mongoose`` logger, as many as the level says."""
    url = "http://127.0.0.1:0"
    caplog.set_level(logging.DEBUG, logger="pymongoose.mongoose")
    for level, logged in ((MG_LL_ERROR, False), (MG_LL_DEBUG, True)):
        caplog.clear()
        log_set(level)
        with Manager() as manager:
            manager.listen(url)
        records = [r for r in caplog.records
                   if r.name == "pymongoose.mongoose" and url in r.getMessage()]
        assert bool(records) is logged
        assert all(r.levelno == logging.DEBUG for r in records)


def test_mongoose_errors_are_logged_at_error_level(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed request makes Mongoose log an error: it arrives as an ERROR record."""
    import socket

    caplog.set_level(logging.DEBUG, logger="pymongoose.mongoose")
    with Manager(lambda conn, ev, data: None) as manager:
        port = manager.listen("http://127.0.0.1:0").local_addr[1]  # type: ignore[index]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
            for _ in range(50):
                manager.poll(10)
                if any(r.levelno == logging.ERROR and r.name == "pymongoose.mongoose"
                       for r in caplog.records):
                    break
    assert any(r.levelno == logging.ERROR and "HTTP parse" in r.getMessage()
               for r in caplog.records if r.name == "pymongoose.mongoose")

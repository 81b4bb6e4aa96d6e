"""HTTP/1.1 conformance (RFC 9110, RFC 9112) in every server mode, over raw sockets.

The request-level rules for the plain handler are cases in test_hostile_input.py; this
module holds what needs a mode of its own: one table of chunked bodies run through the
buffered and the streamed parser (and the C grammar itself), what the handler sees of
a request's headers, connection semantics in the WSGI and ASGI servers, and the WSGI
environ and ASGI scope built from unusual but valid request targets.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from asgi_helpers import running_asgi
from conftest import read_until_closed, serving
from wsgi_helpers import wsgi_serving

from pymongoose import (
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    PYMG_EV_HTTP_BODY,
    PYMG_EV_HTTP_BODY_END,
    Connection,
)
from pymongoose._ffi import ffi, lib
from pymongoose.wsgi import ClientDisconnected

TIMEOUT = 10.0

# -- one table of chunked bodies -----------------------------------------------------------

#: (case id, encoded body, payload; None: malformed). RFC 9112 7.1.
CHUNKED = [
    ("one-chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("two-chunks", b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
    ("empty", b"0\r\n\r\n", b""),
    ("leading-zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    ("upper-hex", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("ext-bare", b"5; some; parameters=stuff\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("ext-quoted", b'5;foo="bar baz"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("ext-quoted-pair", b'5;a="x\\"y\\\\";b\r\nhello\r\n0;z=1\r\n\r\n', b"hello"),
    ("ext-bws", b"5 ;\ta = b ; c\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("ext-obs-text", b'5;a="\xe9"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("trailers", b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B:\r\n\r\n", b"hello"),
    ("ext-and-trailers", b"2;x\r\nhe\r\n3;y=\"1\"\r\nllo\r\n0;z\r\nT: v\r\n\r\n", b"hello"),
    ("size-space", b"5 \r\nhello\r\n0\r\n\r\n", None),
    ("last-chunk-space", b"5\r\nhello\r\n0 \r\n\r\n", None),
    ("ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n", None),
    ("ext-bare-cr-quoted", b'5;a="\r"\r\nhello\r\n0\r\n\r\n', None),
    ("ext-no-name", b"5;\r\nhello\r\n0\r\n\r\n", None),
    ("ext-name-space", b"5;a \r\nhello\r\n0\r\n\r\n", None),
    ("ext-no-value", b"5;a=\r\nhello\r\n0\r\n\r\n", None),
    ("ext-bad-value", b"5;a=b c\r\nhello\r\n0\r\n\r\n", None),
    ("ext-ctl-in-quotes", b'5;a="\x01"\r\nhello\r\n0\r\n\r\n', None),
    ("lf-only", b"5\nhello\n0\n\n", None),
    ("no-size", b";a\r\nhello\r\n0\r\n\r\n", None),
    ("hex-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", None),
    ("size-too-big", b"1" + b"0" * 15 + b"\r\nhello\r\n0\r\n\r\n", None),
    ("data-too-long", b"4\r\nhello\r\n0\r\n\r\n", None),
    ("trailer-no-colon", b"5\r\nhello\r\n0\r\nX\r\n\r\n", None),
    ("trailer-space-name", b"5\r\nhello\r\n0\r\nX A: 1\r\n\r\n", None),
    ("trailer-bare-cr", b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n", None),
    ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n", None),
    ("trailer-nul", b"5\r\nhello\r\n0\r\nX: \x00\r\n\r\n", None),
]
CHUNKED_IDS = [name for name, _, _ in CHUNKED]


@pytest.mark.parametrize(("encoded", "payload"), [(e, p) for _, e, p in CHUNKED],
                         ids=CHUNKED_IDS)
def test_chunked_grammar(encoded: bytes, payload: Optional[bytes]) -> None:
    """The C grammar both parsers use: complete and right, or malformed; and a valid
    body flattens, in place, to the plain form of the same length."""
    declared = ffi.new("uint64_t *")
    plain = ffi.new("int *")
    n = lib.pymg_chunked_scan(encoded, len(encoded), declared, plain)
    if payload is None:
        assert n == -1
        return
    assert n == len(encoded) and declared[0] == len(payload)
    for cut in range(len(encoded)):  # every prefix is "more needed"
        assert lib.pymg_chunked_scan(encoded[:cut], cut, declared, plain) == 0
    buf = ffi.new("unsigned char[]", encoded)
    assert lib.pymg_chunked_flatten(buf, len(encoded)) == len(payload)
    flat = ffi.buffer(buf, len(encoded))[:]
    assert lib.pymg_chunked_scan(flat, len(flat), declared, plain) == len(encoded)
    assert plain[0] == 1 and declared[0] == len(payload)
    size_line, _, rest = flat.partition(b"\r\n")
    assert int(size_line, 16) == len(payload) and rest.startswith(payload)


def chunked_head(path: str = "/p") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()


def answer(raw: bytes) -> tuple[int, bytes]:
    """Status and body of the only response in ``raw`` (0 when there is none)."""
    if not raw.startswith(b"HTTP/1.1 "):
        return 0, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def exchange(port: int, first: bytes, second: bytes = b"",
             between: Optional[threading.Event] = None) -> bytes:
    """Send ``first``; once ``between`` is set, ``second``; read until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(first)
        if second:
            assert between is None or between.wait(TIMEOUT), "the server never saw the head"
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(second)  # may be refused at once
        return read_until_closed(sock, reset_is_close=True)


@pytest.fixture(scope="module")
def buffered_port() -> Iterator[int]:
    """A plain handler answering each request with its (buffered) body."""
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, data.body_bytes)

    with serving(handler) as server:
        yield server.port


@pytest.mark.parametrize(("encoded", "payload"), [(e, p) for _, e, p in CHUNKED],
                         ids=CHUNKED_IDS)
def test_chunked_buffered(buffered_port: int, encoded: bytes, payload: Optional[bytes]) -> None:
    """The buffered path (Mongoose's parser behind our checks) takes the table's valid
    bodies whole or in pieces, and answers the malformed ones with 400."""
    for split in (0, len(encoded) // 2, len(encoded) - 1):
        raw = exchange(buffered_port, chunked_head() + encoded[:split], encoded[split:])
        if payload is None:
            assert answer(raw)[0] in (0, 400), raw
            if split == 0:
                assert answer(raw)[0] == 400, raw
        else:
            assert answer(raw) == (200, payload), (split, raw)


class StreamRecorder:
    """A plain handler that streams every request body and answers with it."""

    def __init__(self) -> None:
        self.head_seen = threading.Event()
        self.bodies: dict[int, bytearray] = {}

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            self.bodies[conn.id] = bytearray()
            conn.stream_body(data)
            self.head_seen.set()
        elif ev == PYMG_EV_HTTP_BODY:
            self.bodies[conn.id] += data
        elif ev == PYMG_EV_HTTP_BODY_END:
            conn.reply(200, bytes(self.bodies.pop(conn.id)))


@pytest.mark.parametrize(("encoded", "payload"), [(e, p) for _, e, p in CHUNKED],
                         ids=CHUNKED_IDS)
def test_chunked_streamed(encoded: bytes, payload: Optional[bytes]) -> None:
    """The streamed path (Connection.stream_body) accepts exactly what the buffered one
    does: the body is sent only once the handler streams it, so the streamed parser
    (not the head check) judges it."""
    recorder = StreamRecorder()
    with serving(recorder) as server:
        # A malformed part sent with the head is refused by the head check (see
        # test_chunked_buffered): here it always comes after.
        for split in (0,) if payload is None else (0, len(encoded) // 2):
            recorder.head_seen.clear()
            raw = exchange(server.port, chunked_head() + encoded[:split], encoded[split:],
                           recorder.head_seen)
            if payload is None:
                assert answer(raw)[0] in (0, 400), raw  # the connection fails
            else:
                assert answer(raw) == (200, payload), (split, raw)


# -- what the handler sees ------------------------------------------------------------------


def test_body_less_request_has_no_invented_content_length() -> None:
    """A POST or PUT without a body shows the headers the client sent, at both events,
    and the next pipelined request is still framed right."""
    seen: list[tuple[int, str, Optional[str], list[str]]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG):
            seen.append((ev, data.uri, data.header("Content-Length"),
                         [name for name, _ in data.headers()]))
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, data.uri)

    with serving(handler, events=(MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG)) as server:
        raw = exchange(server.port, b"POST /a HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"PUT /b HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200") == 3
    assert [uri for ev, uri, _, _ in seen if ev == MG_EV_HTTP_MSG] == ["/a", "/b", "/c"]
    for _, _, length, names in seen:
        assert length is None
        assert all(name.lower() != "content-length" for name in names)


# -- connection semantics in the WSGI and ASGI servers ------------------------------------

PIPELINES = {
    # RFC 9112 9.3: HTTP/1.0 without keep-alive: the first answer ends the connection.
    "http-1.0": (b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n", ["/1"]),
    "http-1.0-keep-alive-then-not": (b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                     b"GET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
                                     ["/1", "/2"]),
    # 9.6: a server MUST NOT process requests after one with Connection: close.
    "close": (b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
              b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n", ["/1"]),
    "close-after-post": (b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                         b"Connection: close\r\n\r\nhiGET /2 HTTP/1.1\r\nHost: t\r\n\r\n",
                         ["/1"]),
    "close-second": (b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n", ["/1", "/2"]),
}
ROUNDS = 20  # the WSGI server used to serve the request after "close" about half the time


def check_pipeline(port: int, calls: list[str], payload: bytes, served: list[str]) -> None:
    for _ in range(ROUNDS):
        calls.clear()
        raw = exchange(port, payload)
        assert raw.count(b"HTTP/1.") == len(served), raw
        assert calls == served


@pytest.mark.parametrize("name", list(PIPELINES))
def test_wsgi_connection_ends(name: str) -> None:
    """The WSGI app is never called for a request after the one that ends the connection."""
    payload, served = PIPELINES[name]
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with wsgi_serving(app) as url:
        check_pipeline(int(url.rsplit(":", 1)[1]), calls, payload, served)


@pytest.mark.parametrize("name", list(PIPELINES))
def test_asgi_connection_ends(name: str) -> None:
    """The ASGI app is never called for a request after the one that ends the connection."""
    payload, served = PIPELINES[name]
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with running_asgi(app, lifespan=False) as running:
        check_pipeline(running.port, calls, payload, served)


# -- the WSGI environ ------------------------------------------------------------------------


def environ_of(request: bytes) -> dict[str, Any]:
    """The environ the WSGI app gets for one raw request."""
    box: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        box.update((k, v) for k, v in environ.items() if isinstance(v, str))
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    with wsgi_serving(app) as url:
        raw = exchange(int(url.rsplit(":", 1)[1]), request)
    assert raw.startswith(b"HTTP/1.1 200"), raw
    return box


def test_wsgi_underscore_headers_dropped() -> None:
    """A field name with "_" never becomes or overwrites CONTENT_LENGTH, CONTENT_TYPE or
    an HTTP_* key: Content_Length cannot pose as Content-Length."""
    env = environ_of(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                     b"Content_Length: -1E23\r\nContent-Type: text/plain\r\n"
                     b"content_type: evil/x\r\nX-Real-IP: 1.2.3.4\r\nX_Real_IP: 6.6.6.6\r\n"
                     b"Host_: other\r\nConnection: close\r\n\r\nhi")
    assert env["CONTENT_LENGTH"] == "2"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["HTTP_X_REAL_IP"] == "1.2.3.4"
    assert env["HTTP_HOST"] == "t"
    assert "-1E23" not in env.values() and "evil/x" not in env.values()
    assert "6.6.6.6" not in env.values() and "other" not in env.values()


def test_wsgi_underscore_content_length_alone_dropped() -> None:
    env = environ_of(b"GET / HTTP/1.1\r\nHost: t\r\nContent_Length: 5\r\n"
                     b"Connection: close\r\n\r\n")
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_wsgi_body_less_post_has_no_content_length() -> None:
    """The environ shows what the client sent: no CONTENT_LENGTH it did not send."""
    env = environ_of(b"POST /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert "CONTENT_LENGTH" not in env


@pytest.mark.parametrize(("target", "path", "query", "host"), [
    (b"http://example.com/foo?a=1", "/foo", "a=1", "example.com"),
    (b"http://example.com:8080", "/", "", "example.com:8080"),
    (b"https://user@example.com/a%20b/?x=%41", "/a b/", "x=%41", "example.com"),
    (b"http://example.com?q", "/", "q", "example.com"),
    (b"/foo?a=1#frag", "/foo", "a=1", "t"),
    (b"/foo#frag?x", "/foo", "", "t"),
    (b"http://example.com/foo?a=1#f", "/foo", "a=1", "example.com"),
])
def test_wsgi_request_target_forms(target: bytes, path: str, query: str, host: str) -> None:
    """Absolute-form gives PATH_INFO and QUERY_STRING as origin-form would, and its
    authority replaces Host (RFC 9112 3.2.2); a #fragment is never part of either."""
    env = environ_of(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["HTTP_HOST"]) == (path, query, host)


@pytest.mark.parametrize(("encoded", "payload"), [(e, p) for _, e, p in CHUNKED],
                         ids=CHUNKED_IDS)
def test_wsgi_input_chunked(encoded: bytes, payload: Optional[bytes]) -> None:
    """wsgi.input.read() returns the body the table says, or raises on the read that
    meets the malformed chunk: never a silently truncated body."""
    called, done = threading.Event(), threading.Event()
    results: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.set()
        try:
            results.append(environ["wsgi.input"].read())
        except ClientDisconnected as exc:
            results.append(exc)
        done.set()  # the connection may be gone before the app gets here
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    with wsgi_serving(app) as url:
        # A first valid chunk reaches the app before the malformed part does.
        exchange(int(url.rsplit(":", 1)[1]), chunked_head() + b"2\r\nxy\r\n", encoded, called)
        assert done.wait(TIMEOUT), "the app never finished reading"
    assert len(results) == 1
    if payload is None:
        assert isinstance(results[0], ClientDisconnected)
        assert "malformed" in str(results[0])
    else:
        assert results[0] == b"xy" + payload


# -- the ASGI scope --------------------------------------------------------------------------


def scope_of(request: bytes) -> dict[str, Any]:
    box: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        box.update(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with running_asgi(app, lifespan=False) as running:
        raw = exchange(running.port, request)
    assert raw.startswith(b"HTTP/1.1 200"), raw
    return box


@pytest.mark.parametrize(("target", "path", "query", "host"), [
    (b"http://example.com/foo?a=1", "/foo", b"a=1", b"example.com"),
    (b"http://u@example.com:81?a", "/", b"a", b"example.com:81"),
    (b"/foo?a=1#frag", "/foo", b"a=1", b"t"),
    (b"/foo#frag", "/foo", b"", b"t"),
])
def test_asgi_request_target_forms(target: bytes, path: str, query: bytes, host: bytes) -> None:
    """The ASGI scope gets the same path, query and host as the WSGI environ."""
    scope = scope_of(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (scope["path"], scope["query_string"]) == (path, query)
    assert b"#" not in scope["raw_path"]
    assert dict(scope["headers"])[b"host"] == host


def test_asgi_underscore_headers_kept_apart() -> None:
    """ASGI passes header names as sent (lower-cased), as uvicorn does: content_length
    stays its own name and never changes the framing or content-length."""
    scope = scope_of(b"GET / HTTP/1.1\r\nHost: t\r\nContent_Length: 5\r\n"
                     b"Connection: close\r\n\r\n")
    headers = dict(scope["headers"])
    assert headers[b"content_length"] == b"5"
    assert b"content-length" not in headers


@pytest.mark.parametrize(("encoded", "payload"), [(e, p) for _, e, p in CHUNKED],
                         ids=CHUNKED_IDS)
def test_asgi_receive_chunked(encoded: bytes, payload: Optional[bytes]) -> None:
    """The ASGI app receives the table's valid bodies whole; a malformed one ends with
    http.disconnect, never with a body that looks complete."""
    called, done = threading.Event(), threading.Event()
    results: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        called.set()
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                results.append(message["type"])
                done.set()
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        results.append(body)
        done.set()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with running_asgi(app, lifespan=False) as running:
        exchange(running.port, chunked_head() + b"2\r\nxy\r\n", encoded, called)
        assert done.wait(TIMEOUT), "the app never finished receiving"
    assert results == (["http.disconnect"] if payload is None else [b"xy" + payload])


# -- the head checks apply to the app servers too -------------------------------------------

HEAD_CASES = [
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET foo/bar HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET s://]ufd/: HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/3.1\r\nHost: t\r\n\r\n", 505),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0 \r\n\r\n", 400),
    (b"POST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
     b"\r\n5;foo=\"bar baz\"\r\nhello\r\n0\r\nT: 1\r\n\r\n", 200),
]


@pytest.mark.parametrize("mode", ["wsgi", "asgi"])
def test_app_servers_apply_the_head_checks(mode: str) -> None:
    """The WSGI and ASGI servers refuse what the plain handler refuses (400, or 505 for
    the version) without calling the app, and take chunk extensions and trailers."""
    calls: list[tuple[str, bytes]] = []

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append((environ["PATH_INFO"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        calls.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with contextlib.ExitStack() as stack:
        if mode == "wsgi":
            port = int(stack.enter_context(wsgi_serving(wsgi_app)).rsplit(":", 1)[1])
        else:
            port = stack.enter_context(running_asgi(asgi_app, lifespan=False)).port
        for request, status in HEAD_CASES:
            assert answer(exchange(port, request))[0] == status, request
    assert calls == [("/ok", b"hello")]

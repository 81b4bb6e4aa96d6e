"""The HTTP server, driven by real clients: requests, curl, and a raw socket.

Handlers run on the poll thread and record what they saw; the test thread reads the
record after the response has arrived, so the response is the synchronisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from _tools import require

from pymongoose import MG_EV_HTTP_MSG, Connection

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10

#: The ``serve`` fixture of conftest: ``with serve(handler) as server: ...``
Serve = Callable[..., Any]


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests Session that ignores proxy settings from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def curl(*args: str) -> bytes:
    """Run curl (never through a proxy) and return its stdout."""
    require("curl")
    result = subprocess.run(
        ["curl", "-s", "--noproxy", "*", "--max-time", str(TIMEOUT), *args],
        capture_output=True, timeout=TIMEOUT + 5, check=True,
    )
    return result.stdout


class RawClient:
    """A plain socket to the server, for requests no HTTP library would send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self._stream = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> bytes:
        """One whole response: its head, then Content-Length bytes of body (none if absent)."""
        head = b""
        length = 0
        while True:
            line = self._stream.readline()
            head += line
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + self._stream.read(length)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self.sock.close()


# -- methods and the request line ------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_method_reaches_handler(serve: Serve, http: requests.Session, method: str) -> None:
    """Each method arrives as ``message.method``, with its body."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, f"{data.method} {data.body_text}", headers={"X-Method": data.method})

    with serve(handler) as server:
        r = http.request(method, server.url + "/thing", data=b"payload", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["X-Method"] == method
    assert r.text == f"{method} payload"


def test_head_reaches_handler(serve: Serve, http: requests.Session) -> None:
    """HEAD arrives as such; the handler answers it without a body."""
    methods: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            methods.append(data.method)
            conn.reply(200, b"", headers={"X-Method": data.method})

    with serve(handler) as server:
        head = http.head(server.url + "/", timeout=TIMEOUT)
        # The same kept-alive connection must still be in step afterwards.
        after = http.get(server.url + "/", timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.headers["X-Method"] == "HEAD"
    assert head.content == b""
    assert after.headers["X-Method"] == "GET"
    assert methods == ["HEAD", "GET"]


def test_request_line_parts(serve: Serve, http: requests.Session) -> None:
    """uri, query and proto split the request line; status() is 0 for a request."""
    seen: list[tuple[Any, ...]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.append((data.method, data.uri, data.query, data.proto, data.status()))
            conn.reply(200)

    with serve(handler) as server:
        http.get(server.url + "/some/path?x=1&y=two", timeout=TIMEOUT)
        http.get(server.url + "/bare", timeout=TIMEOUT)
    assert seen == [("GET", "/some/path", "x=1&y=two", "HTTP/1.1", 0),
                    ("GET", "/bare", "", "HTTP/1.1", 0)]


# -- headers ---------------------------------------------------------------------------


def test_request_headers_case_insensitive(serve: Serve, http: requests.Session) -> None:
    """header() finds a header whatever the case of the name; absent gives the default."""
    seen: dict[str, Any] = {}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen["lower"] = data.header("x-custom-thing")
            seen["upper"] = data.header("X-CUSTOM-THING")
            seen["missing"] = data.header("X-Not-Sent")
            seen["default"] = data.header("X-Not-Sent", "fallback")
            conn.reply(200)

    with serve(handler) as server:
        http.get(server.url + "/", headers={"X-Custom-Thing": "value 42"}, timeout=TIMEOUT)
    assert seen == {"lower": "value 42", "upper": "value 42", "missing": None,
                    "default": "fallback"}


def test_headers_list_keeps_order_from_requests(serve: Serve, http: requests.Session) -> None:
    """headers() lists what requests sent, our own headers in the order given."""
    seen: list[tuple[str, str]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.extend(data.headers())
            conn.reply(200)

    sent = {"X-Alpha": "1", "X-Beta": "2", "X-Gamma": "3"}
    with serve(handler) as server:
        http.get(server.url + "/", headers=sent, timeout=TIMEOUT)
        host = f"127.0.0.1:{server.port}"
    ours = [(name, value) for name, value in seen if name.startswith("X-")]
    assert ours == list(sent.items())
    assert ("Host", host) in seen


def test_headers_list_exact_on_raw_request(serve: Serve) -> None:
    """headers() gives every header exactly as sent: names keep their case, values trimmed."""
    seen: list[tuple[str, str]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.extend(data.headers())
            conn.reply(200)

    with serve(handler) as server, RawClient(server.port) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: here\r\nzeta: last-letter\r\n"
                     b"ALPHA:   first-letter   \r\nMiXeD: a, b\r\n\r\n")
        assert raw.response().startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen == [("Host", "here"), ("zeta", "last-letter"), ("ALPHA", "first-letter"),
                    ("MiXeD", "a, b")]


def test_default_content_type(serve: Serve, http: requests.Session) -> None:
    """reply() without headers sends text/plain in UTF-8 and a Content-Length."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "hello")

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Content-Length"] == "5"
    assert r.text == "hello"


def test_custom_response_headers(serve: Serve, http: requests.Session) -> None:
    """Headers given to reply() are sent; a Content-Type given replaces the default."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "<p>hi</p>", headers={"Content-Type": "text/html",
                                                  "X-Powered-By": "pymongoose",
                                                  "Cache-Control": "no-store"})

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.headers["Content-Type"] == "text/html"  # once: requests would join duplicates
    assert r.headers["X-Powered-By"] == "pymongoose"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.text == "<p>hi</p>"


def test_repeated_response_headers_as_pairs(serve: Serve, http: requests.Session) -> None:
    """Headers given as (name, value) pairs may repeat a name."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert r.cookies.get_dict() == {"a": "1", "b": "2"}


def test_header_with_line_break_is_refused(serve: Serve, http: requests.Session) -> None:
    """A header value with CRLF raises ValueError instead of injecting a header."""
    raised: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            try:
                conn.reply(200, "x", headers={"X-Evil": "a\r\nSet-Cookie: stolen=1"})
            except ValueError as exc:
                raised.append(str(exc))
                conn.reply(500, "refused")

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.status_code == 500
    assert r.text == "refused"
    assert "Set-Cookie" not in r.headers
    assert len(raised) == 1 and "line break" in raised[0]


# -- query, form and header variables --------------------------------------------------


def test_query_var(serve: Serve, http: requests.Session) -> None:
    """query_var() URL-decodes; a missing name gives None, an empty value ''."""
    seen: dict[str, Any] = {}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            for name in ("name", "plus", "empty", "missing", "n"):
                seen[name] = data.query_var(name)
            conn.reply(200)

    with serve(handler) as server:
        http.get(server.url + "/search", timeout=TIMEOUT,
                 params={"name": "Jürgen & Co/=?", "empty": "", "n": "7"})
        first = dict(seen)
        http.get(server.url + "/search?plus=a+b%2Bc", timeout=TIMEOUT)
    assert first == {"name": "Jürgen & Co/=?", "plus": None, "empty": "", "missing": None,
                     "n": "7"}
    assert seen["plus"] == "a b+c"
    assert seen["name"] is None


def test_body_var_on_form_post(serve: Serve, http: requests.Session) -> None:
    """body_var() reads URL-encoded form fields from a POST body."""
    seen: dict[str, Any] = {}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen["type"] = data.header("Content-Type")
            for name in ("user", "note", "missing"):
                seen[name] = data.body_var(name)
            seen["query"] = data.query_var("user")
            conn.reply(200)

    with serve(handler) as server:
        http.post(server.url + "/form", timeout=TIMEOUT,
                  data={"user": "ada lovelace", "note": "1+1=2 & ü"})
    assert seen == {"type": "application/x-www-form-urlencoded", "user": "ada lovelace",
                    "note": "1+1=2 & ü", "missing": None, "query": None}


def test_header_var(serve: Serve, http: requests.Session) -> None:
    """header_var() picks ``var=value`` items out of a header, quotes removed."""
    seen: dict[str, Any] = {}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen["charset"] = data.header_var("content-type", "charset")
            seen["boundary"] = data.header_var("Content-Type", "boundary")
            seen["absent_var"] = data.header_var("Content-Type", "format")
            seen["absent_header"] = data.header_var("X-Nothing", "charset")
            conn.reply(200)

    content_type = 'multipart/form-data; boundary="a b c"; charset=ISO-8859-1'
    with serve(handler) as server:
        http.get(server.url + "/", headers={"Content-Type": content_type}, timeout=TIMEOUT)
    assert seen == {"charset": "ISO-8859-1", "boundary": "a b c", "absent_var": None,
                    "absent_header": None}


# -- bodies ----------------------------------------------------------------------------


def test_reply_json(serve: Serve, http: requests.Session) -> None:
    """reply_json() serialises the object and labels it application/json."""
    payload = {"list": [1, 2.5, None, True], "text": "naïve ✓", "nested": {"k": "v"}}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/created":
                conn.reply_json({"id": 7}, 201, headers={"Location": "/things/7"})
            else:
                conn.reply_json(payload)

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
        created = http.post(server.url + "/created", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == payload
    assert created.status_code == 201
    assert created.headers["Location"] == "/things/7"
    assert created.json() == {"id": 7}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("plain ascii", b"plain ascii"),
        (b"\x00\x01\xfe\xff raw bytes", b"\x00\x01\xfe\xff raw bytes"),
        ("grüße, 世界, 🐍", "grüße, 世界, 🐍".encode()),
        ("", b""),
    ],
    ids=["str", "bytes", "unicode", "empty"],
)
def test_reply_body(serve: Serve, http: requests.Session, body: Any, expected: bytes) -> None:
    """reply() sends str bodies as UTF-8 and bytes as they are, with the right length."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, body)

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.content == expected
    assert r.headers["Content-Length"] == str(len(expected))


def test_large_post_body_arrives_intact(serve: Serve, http: requests.Session) -> None:
    """A 10 MB POST body reaches the handler byte for byte."""
    body = os.urandom(10 * 1024 * 1024)

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            received = data.body_bytes
            conn.reply_json({"length": len(received),
                             "sha256": hashlib.sha256(received).hexdigest()})

    with serve(handler) as server:
        r = http.post(server.url + "/upload", data=body, timeout=60,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


# -- status codes ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [201, 202, 400, 403, 404, 418, 500, 503])
def test_status_codes(serve: Serve, http: requests.Session, status: int) -> None:
    """The status code and a body come through for success and error statuses alike."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(status, f"status {status}")

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.status_code == status
    assert r.text == f"status {status}"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status(serve: Serve, http: requests.Session, status: int) -> None:
    """204 and 304 carry no body and no Content-Length; the connection stays in step."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/empty":
                conn.reply(status, headers={"X-Status": str(status)})
            else:
                conn.reply(200, "next")

    with serve(handler) as server, RawClient(server.port) as raw:
        r = http.get(server.url + "/empty", timeout=TIMEOUT)
        assert r.status_code == status
        assert r.content == b""
        assert "Content-Length" not in r.headers
        assert r.headers["X-Status"] == str(status)
        assert http.get(server.url + "/next", timeout=TIMEOUT).text == "next"

        # On the wire: the head ends the response; the next one follows straight on.
        raw.send(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        first = raw.response()
        assert first.startswith(f"HTTP/1.1 {status} ".encode())
        assert first.endswith(b"\r\n\r\n")
        second = raw.response()
        assert second.startswith(b"HTTP/1.1 200 OK\r\n")
        assert second.endswith(b"\r\n\r\nnext")


# -- connections -----------------------------------------------------------------------


def test_keep_alive_reuses_connection(serve: Serve, http: requests.Session) -> None:
    """Two requests on one Session reach the handler on the same Connection and socket."""
    seen: list[tuple[int, int]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            remote = conn.remote_addr
            assert remote is not None
            seen.append((conn.id, remote[1]))
            conn.reply(200, "ok")

    with serve(handler) as server:
        http.get(server.url + "/one", timeout=TIMEOUT)
        http.get(server.url + "/two", timeout=TIMEOUT)
        with requests.Session() as other:
            other.trust_env = False
            other.get(server.url + "/three", timeout=TIMEOUT)
    assert len(seen) == 3
    (id1, port1), (id2, port2), (id3, port3) = seen
    assert id1 == id2
    assert port1 == port2  # the client's socket (its local port) was reused too
    assert id3 != id1
    assert port3 != port1


def test_pipelined_requests_on_one_socket(serve: Serve) -> None:
    """Requests sent back to back on one socket are answered in order."""
    uris: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            uris.append(data.uri)
            conn.reply(200, data.uri)

    with serve(handler) as server, RawClient(server.port) as raw:
        raw.send(b"".join(f"GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                              for i in range(3)))
        bodies = [raw.response().partition(b"\r\n\r\n")[2] for _ in range(3)]
    assert bodies == [b"/r0", b"/r1", b"/r2"]
    assert uris == ["/r0", "/r1", "/r2"]


def test_malformed_request_does_not_stop_server(serve: Serve, http: requests.Session) -> None:
    """Garbage on the wire gets a 400 or a closed socket, and the server keeps serving."""
    calls: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            calls.append(data.uri)
            conn.reply(200, "still here")

    with serve(handler) as server:
        with RawClient(server.port) as raw:
            raw.send(b"GET\x00\x01 /\x7f nonsense\r\n\x02\x03\r\n\r\n")
            try:
                answer = raw.sock.recv(65536)
            except ConnectionResetError:
                answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400")
        r = http.get(server.url + "/after", timeout=TIMEOUT)
    assert r.text == "still here"
    assert calls == ["/after"]
    assert server.errors == []


# -- curl --------------------------------------------------------------------------------


def test_curl_raw_response(serve: Serve) -> None:
    """curl -i --http1.1 shows exactly the status line, headers and body we send."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "hello", headers={"X-Test": "yes"})

    with serve(handler) as server:
        out = curl("-i", "--http1.1", server.url + "/hello")
    assert out == (b"HTTP/1.1 200 OK\r\nX-Test: yes\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: 5\r\n\r\nhello")


def test_curl_odd_headers(serve: Serve) -> None:
    """Headers with no space, no value or tabs around the value parse sensibly."""
    seen: list[tuple[str, str]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.extend(data.headers())
            conn.reply_json({"odd": data.header("x-odd"), "empty": data.header("X-Empty")})

    with serve(handler) as server:
        out = curl("--http1.1", "-H", "X-Odd:nospace", "-H", "X-Empty;",
                   "-H", "X-Tabbed:\t tabbed \t", server.url + "/")
    assert json.loads(out) == {"odd": "nospace", "empty": ""}
    assert [pair for pair in seen if pair[0].startswith("X-")] == [
        ("X-Odd", "nospace"), ("X-Empty", ""), ("X-Tabbed", "tabbed")]


def test_curl_raw_shows_chunked_framing(serve: Serve) -> None:
    """A chunked response written with send(): curl decodes it, --raw shows the chunks."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")

    with serve(handler) as server:
        decoded = curl("--http1.1", server.url + "/")
        raw = curl("--http1.1", "--raw", server.url + "/")
    assert decoded == b"hello, world"
    assert raw == b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"


def test_curl_post_body(serve: Serve) -> None:
    """curl --data-binary sends a body the handler reads back exactly."""
    body = bytes(range(256)) * 4

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, data.body_bytes, headers={"Content-Type": "application/octet-stream"})

    require("curl")
    with serve(handler) as server:
        result = subprocess.run(
            ["curl", "-s", "--noproxy", "*", "--max-time", str(TIMEOUT), "--http1.1",
             "--data-binary", "@-", server.url + "/echo"],
            input=body, capture_output=True, timeout=TIMEOUT + 5, check=True,
        )
    assert result.stdout == body

"""pymongoose.wsgi: PEP 3333 behaviour, checked with wsgiref.validate and real clients."""

from __future__ import annotations

import email.utils
import hashlib
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, ClassVar
from wsgiref.validate import validator

import pytest
import requests
from conftest import read_until_closed
from wsgi_helpers import wsgi_serving

from pymongoose import Limits

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def echo_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
            "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.url_scheme")
    text = "\n".join(f"{k}={environ[k]}" for k in keys) + f"\nbody={body.decode()}"
    text += f"\nx-test={environ.get('HTTP_X_TEST')}\nmultithread={environ['wsgi.multithread']}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]


def test_environ_under_the_validator() -> None:
    with wsgi_serving(validator(echo_app)) as url:
        r = requests.post(url + "/a%20b/c?x=1&y=2", data=b"hello", headers={"X-Test": "yes"},
                          timeout=30)
    assert r.status_code == 200
    lines = dict(line.split("=", 1) for line in r.text.splitlines())
    assert lines["REQUEST_METHOD"] == "POST"
    assert lines["SCRIPT_NAME"] == ""
    assert lines["PATH_INFO"] == "/a b/c"
    assert lines["QUERY_STRING"] == "x=1&y=2"
    assert lines["SERVER_NAME"] == "127.0.0.1"
    assert lines["SERVER_PORT"] == url.rsplit(":", 1)[1]
    assert lines["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert lines["wsgi.url_scheme"] == "http"
    assert lines["body"] == "hello"
    assert lines["x-test"] == "yes"
    assert lines["multithread"] == "True"


class ClosingBody:
    """An iterable with close(), which the server must call."""

    closed: ClassVar[list[bool]] = []

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def close(self) -> None:
        ClosingBody.closed.append(True)


def features_app(environ: Environ, start_response: StartResponse) -> Any:
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"f" * 200000), 8192)
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingBody([b"one ", b"two"])
    if path == "/lines":
        stream = environ["wsgi.input"]
        lines = [stream.readline(), *stream]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"|".join(lines)]
    if path == "/length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter([b"ab", b"cde"])
    if path == "/exc":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            import sys
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nothing here"]


def test_write_file_wrapper_close_lines_and_exc_info() -> None:
    ClosingBody.closed.clear()
    with wsgi_serving(validator(features_app)) as url, requests.Session() as s:
        assert s.get(url + "/write", timeout=30).text == "written and returned"
        r = s.get(url + "/file", timeout=30)
        assert r.content == b"f" * 200000
        r = s.get(url + "/closing", timeout=30)
        assert r.text == "one two" and r.headers["Transfer-Encoding"] == "chunked"
        r = s.post(url + "/lines", data=b"a\nbb\nccc", timeout=30)
        assert r.content == b"a\n|bb\n|ccc"
        r = s.get(url + "/length", timeout=30)
        assert r.text == "abcde" and r.headers["Content-Length"] == "5"
        r = s.get(url + "/exc", timeout=30)
        assert (r.status_code, r.text) == (503, "sorry")
        r = s.head(url + "/write", timeout=30)
        assert r.status_code == 200 and r.content == b""
        assert s.get(url + "/nope", timeout=30).status_code == 404
    assert ClosingBody.closed == [True]


def test_keep_alive_one_connection_many_requests() -> None:
    with wsgi_serving(echo_app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            request = b"GET /k HTTP/1.1\r\nHost: t\r\n\r\n"
            last = b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            sock.sendall(request * 3 + last)
            data = read_until_closed(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert b"PATH_INFO=/last" in data


def streaming_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        yield b"piece %d\n" % i


def test_streaming_response_chunked_then_http10_close_delimited() -> None:
    with wsgi_serving(streaming_app) as url:
        r = requests.get(url, timeout=30, stream=True)
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert list(r.iter_lines()) == [b"piece %d" % i for i in range(5)]
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == b"".join(b"piece %d\n" % i for i in range(5))


def hashing_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    digest = hashlib.sha256()
    total = 0
    stream = environ["wsgi.input"]
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        digest.update(block)
        total += len(block)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{digest.hexdigest()} {total}".encode()]


def test_upload_larger_than_mongoose_buffer_limit_streams_through_wsgi_input() -> None:
    size = 100 << 20  # above MG_MAX_RECV_SIZE (64 MiB): only streaming can take it
    block = hashlib.sha256(b"b").digest() * (1 << 15)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    with wsgi_serving(hashing_app, limits=Limits(max_body_size=size)) as url:
        r = requests.post(url + "/up", data=body(), timeout=120)  # chunked upload
        assert r.text == f"{expected} {size}"
        r = requests.post(url + "/up", data=block * 8, timeout=120)  # Content-Length
        assert r.text == f"{hashlib.sha256(block * 8).hexdigest()} {len(block) * 8}"


def failing_app(environ: Environ, start_response: StartResponse) -> Any:
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("boom")
    if path == "/str":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return "not bytes"
    if path == "/none":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return None
    bad_headers = {"/crlf-name": ("X-A\r\nX-Injected", "v"), "/crlf-value": ("X-A", "v\r\nX: y"),
                   "/space-name": ("Bad Name", "v"), "/bytes-name": (b"X-A", "v"),
                   "/list-header": ["X-A", "v"], "/hop": ("Transfer-Encoding", "chunked")}
    if path in bad_headers:
        start_response("200 OK", [("Content-Type", "text/plain"), bad_headers[path]])
        return [b"should not be sent"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"alive"]


def test_app_errors_give_500_and_the_server_keeps_serving(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="pymongoose.wsgi"), \
            wsgi_serving(failing_app) as url:
        for path in ("/raise", "/str", "/none", "/twice", "/crlf-name", "/crlf-value",
                     "/space-name", "/bytes-name", "/list-header", "/hop"):
            r = requests.get(url + path, timeout=30)
            assert r.status_code == 500, path
            assert requests.get(url + "/ok", timeout=30).text == "alive"
    messages = " ".join(rec.getMessage() + str(rec.exc_info) for rec in caplog.records)
    assert "boom" in messages
    assert "iterable of bytes" in messages


def slow_reader_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    while stream.read(65536):
        pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"read it all"]


def test_client_leaving_mid_body_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pymongoose.wsgi"), \
            wsgi_serving(slow_reader_app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
                         + b"x" * 1000)
        # The server notices, logs, and serves the next client.
        assert requests.post(url + "/again", data=b"y" * 10, timeout=30).text == "read it all"
    leaving = [rec for rec in caplog.records if "before the request body" in rec.getMessage()]
    assert len(leaving) == 1
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_malformed_request_leaves_the_server_serving() -> None:
    with wsgi_serving(echo_app) as url:
        port = int(url.rsplit(":", 1)[1])
        for garbage in (b"\x00\x01garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(garbage)
                data = read_until_closed(sock)
            assert data == b"" or data.startswith(b"HTTP/1.1 400"), data
        assert requests.get(url + "/fine", timeout=30).status_code == 200


def test_root_serves_static_files_before_the_app(tmp_path: Any) -> None:
    (tmp_path / "hello.txt").write_text("static hello")
    with wsgi_serving(echo_app, root=str(tmp_path)) as url:
        assert requests.get(url + "/hello.txt", timeout=30).text == "static hello"
        assert "PATH_INFO=/dynamic" in requests.get(url + "/dynamic", timeout=30).text


def test_access_log_one_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pymongoose.access"), \
            wsgi_serving(echo_app, access_log=True) as url:
        requests.get(url + "/logged?q=1", timeout=30)
        requests.post(url + "/posted", data=b"abc", timeout=30)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "pymongoose.access"]
    assert len(lines) == 2
    assert '"GET /logged?q=1 HTTP/1.1" 200' in lines[0]
    assert '"POST /posted HTTP/1.1" 200' in lines[1]


def big_stream_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = hashlib.sha256(b"big").digest() * 2048  # 64 KiB
    for _ in range(512):  # 32 MiB: far more than the 4 MiB the server queues
        yield block


def test_large_streamed_response_to_a_slow_reader() -> None:
    block = hashlib.sha256(b"big").digest() * 2048
    expected = hashlib.sha256(block * 512).hexdigest()
    with wsgi_serving(big_stream_app) as url:
        r = requests.get(url + "/big", timeout=120, stream=True)
        digest = hashlib.sha256()
        for piece in r.iter_content(4096):
            digest.update(piece)
        assert digest.hexdigest() == expected
        assert requests.get(url + "/again", timeout=30).status_code == 200


def dated_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    headers = [("Content-Type", "text/plain")]
    if environ["PATH_INFO"] == "/own-date":
        headers.append(("Date", "Thu, 01 Jan 2026 00:00:00 GMT"))
    start_response("200 OK", headers)
    return [b"dated"]


def test_responses_carry_one_date_header() -> None:
    with wsgi_serving(dated_app) as url:
        port = int(url.rsplit(":", 1)[1])
        for path, own in (("/", False), ("/own-date", True)):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                             .encode())
                head = read_until_closed(sock).partition(b"\r\n\r\n")[0].decode("latin-1")
            dates = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
                     if line.lower().startswith("date:")]
            assert len(dates) == 1, head
            if own:
                assert dates[0] == "Thu, 01 Jan 2026 00:00:00 GMT"
            else:
                sent = email.utils.parsedate_to_datetime(dates[0]).timestamp()
                assert abs(sent - time.time()) < 5


def test_requests_run_side_by_side_on_the_app_threads() -> None:
    # Each /meet request waits until all three are inside the app: they pass only when
    # the pool gives each its own thread, even when they arrive together while fewer
    # threads than that are idle.
    together = threading.Barrier(3, timeout=10)

    def meeting_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/meet":
            together.wait()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"met"]

    with wsgi_serving(meeting_app, threads=4) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(3):
            assert requests.get(url + "/warm", timeout=30).text == "met"  # one idle thread
            socks = [socket.create_connection(("127.0.0.1", port), timeout=30)
                     for _ in range(3)]
            try:
                for sock in socks:  # all three at once: likely one poll of the server's
                    sock.sendall(b"GET /meet HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                replies = [read_until_closed(sock) for sock in socks]
            finally:
                for sock in socks:
                    sock.close()
            assert all(r.startswith(b"HTTP/1.1 200") and r.endswith(b"met") for r in replies)
            together.reset()

"""Hostile input: malformed and abusive bytes sent over raw sockets to one HTTP server.

One server for the whole module (HTTP on every path, a WebSocket echo at /ws). Each
case opens its own connection, sends its bytes and reads what comes back. The server
must answer with 4xx or close the connection before a deadline (malformed input),
answer exactly what was asked (abusive but valid input), never let a smuggled request
reach the handler, and keep serving: after every case a normal request on a fresh
connection must succeed, every server-side connection must be gone, and no handler
may have raised.

Cases that Mongoose's C parser gets wrong on its own carry ``mongoose_bug``, saying what
Mongoose alone does; pymongoose's C checks (csrc/conn_limits.c) fix every one of them, and
their bytes stay here as the reproducer.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from conftest import Server, serving
from ws_frames import Frame, close_payload
from ws_frames import parse_frames as frames_and_rest

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_CLOSE,
    WEBSOCKET_OP_CONTINUE,
    WEBSOCKET_OP_PING,
    WEBSOCKET_OP_PONG,
    WEBSOCKET_OP_TEXT,
    Connection,
    Limits,
)

#: How long the server may take to answer or close one connection.
DEADLINE = 5.0
CORPUS_DIR = Path(__file__).parent / "hostile"

#: Body of the 4 MiB answer to GET /big (for clients that never read it).
BIG_BODY = b"x" * (4 << 20)
#: The handler echoes at most this much of a URI, so huge URIs get short answers.
URI_ECHO_MAX = 80

OP_TEXT, OP_BINARY = WEBSOCKET_OP_TEXT, WEBSOCKET_OP_BINARY
OP_CLOSE, OP_PING, OP_PONG = WEBSOCKET_OP_CLOSE, WEBSOCKET_OP_PING, WEBSOCKET_OP_PONG
OP_CONTINUE = WEBSOCKET_OP_CONTINUE
FIN = 0x80


# -- the server -------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as the handler saw it."""

    client_port: int
    method: str
    uri: str
    body_len: int


class Recorder:
    """The module's handler: answers HTTP, upgrades /ws, echoes WebSocket messages.

    It records what reached it per client port, and which accepted connections are
    still open, so that a test can wait until the server has let go of its sockets.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._ports: dict[int, int] = {}  # open accepted connection id -> client port
        self.requests: list[Request] = []
        self.ws_messages: list[tuple[int, int, bytes]] = []  # (client port, op, payload)

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            remote = conn.remote_addr
            with self._changed:
                self._ports[conn.id] = remote[1] if remote else 0
        elif ev == MG_EV_CLOSE:
            with self._changed:
                self._ports.pop(conn.id, None)
                self._changed.notify_all()
        elif ev == MG_EV_HTTP_MSG:
            method, uri, body_len = data.method, data.uri, len(data.body_bytes)
            self.requests.append(Request(self._ports.get(conn.id, 0), method, uri, body_len))
            if uri == "/ws":
                conn.ws_upgrade(data)
            elif uri == "/big":
                conn.reply(200, BIG_BODY)
            else:
                conn.reply(200, f"{method} {uri[:URI_ECHO_MAX]} {body_len}")
        elif ev == MG_EV_WS_MSG:
            self.ws_messages.append((self._ports.get(conn.id, 0), data.op, data.data))
            conn.ws_send(data.data, data.op)
        elif ev == MG_EV_WS_CTL:
            pass  # Mongoose answers PING and CLOSE itself

    def requests_from(self, port: int, since: int = 0) -> list[Request]:
        """The requests from client port ``port``, from the ``since``-th request on
        (ports are reused over a run)."""
        return [r for r in self.requests[since:] if r.client_port == port]

    def ws_messages_from(self, port: int, since: int = 0) -> list[tuple[int, bytes]]:
        """The WebSocket messages (op, payload) from client port ``port``, from the
        ``since``-th message on."""
        return [(op, payload) for p, op, payload in self.ws_messages[since:] if p == port]

    def wait_until_idle(self, timeout: float = DEADLINE) -> bool:
        """Wait until every accepted connection is closed; False at the deadline."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._ports, timeout)

    @property
    def open_count(self) -> int:
        """Accepted connections the server still holds."""
        with self._changed:
            return len(self._ports)


@dataclass
class HostileServer:
    """The running server and its recording handler."""

    server: Server
    recorder: Recorder

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def errors(self) -> list[BaseException]:
        return self.server.errors


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    """One server for every case of this module."""
    recorder = Recorder()
    events = (MG_EV_ACCEPT, MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_WS_MSG, MG_EV_WS_CTL)
    with serving(recorder, events=events) as server:
        yield HostileServer(server, recorder)


# -- reading what the server sends --------------------------------------------------------


@dataclass
class Reading:
    """Everything one connection received, and how the reading ended."""

    raw: bytes = b""
    closed: bool = False  # the server closed (EOF or reset)
    timed_out: bool = False


def read_until(sock: socket.socket, done: Callable[[bytes], bool],
               timeout: float = DEADLINE) -> Reading:
    """Read until ``done(received)``, the server closes, or ``timeout`` seconds pass."""
    reading = Reading()
    deadline = time.monotonic() + timeout
    while not done(reading.raw):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reading.timed_out = True
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            reading.timed_out = True
            break
        except (ConnectionResetError, BrokenPipeError):
            reading.closed = True
            break
        if not chunk:
            reading.closed = True
            break
        reading.raw += chunk
    return reading


@dataclass
class Response:
    """A complete HTTP response."""

    status: int
    body: bytes


def parse_responses(raw: bytes) -> list[Response]:
    """The complete responses at the start of ``raw`` (stops at anything else)."""
    responses = []
    while True:
        head_end = raw.find(b"\r\n\r\n")
        if head_end < 0 or not raw.startswith(b"HTTP/1."):
            return responses
        lines = raw[:head_end].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ")[1])
        except (IndexError, ValueError):
            return responses
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(raw) < end:
            return responses
        responses.append(Response(status, raw[head_end + 4:end]))
        raw = raw[end:]


def has_responses(count: int) -> Callable[[bytes], bool]:
    """A ``done`` test for read_until: ``count`` complete responses arrived."""
    return lambda raw: len(parse_responses(raw)) >= count


def never(raw: bytes) -> bool:
    """A ``done`` test for read_until that waits for the server to close."""
    return False


def connect(server: HostileServer) -> socket.socket:
    """A fresh client connection to the server, with Nagle off (cases trickle bytes)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send, ignoring a server that already closed (rejecting early is fine)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def settle(server: HostileServer, errors_before: int) -> None:
    """After a case: a fresh request works, the server let go of every connection,
    and no handler raised."""
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reading = read_until(sock, has_responses(1))
    responses = parse_responses(reading.raw)
    assert responses and responses[0].status == 200, f"health check failed: {reading}"
    assert responses[0].body == b"GET /health 0"
    assert server.recorder.wait_until_idle(), (
        f"the server still holds {server.recorder.open_count} connection(s)")
    assert server.errors[errors_before:] == [], "a handler raised"


# -- HTTP cases ---------------------------------------------------------------------------

REJECT = "reject"  # malformed: 4xx or closed, and the handler never sees a request
ANSWER = "answer"  # valid (if abusive): exactly these answers, in this order
TRUNCATED = "truncated"  # incomplete: after the client half-closes, the server closes
                         # and the handler never sees a request


@dataclass(frozen=True)
class HttpCase:
    """Bytes for one connection and what the server must do with them."""

    payload: bytes
    expect: str
    #: For ANSWER: the bodies of the answers ("METHOD URI BODY_LENGTH"), in order.
    answers: tuple[str, ...] = ()
    #: For ANSWER: the server must close once it answered (Connection: close, garbage).
    then_close: bool = False
    #: URIs that must never reach the handler (the request they hide in was smuggled).
    never_served: tuple[str, ...] = ()
    #: Send the payload in pieces of this many bytes (0: all at once).
    trickle: int = 0
    #: For REJECT: the status the answer must carry (0: any 4xx, or just a close).
    status: int = 0


def case(payload: bytes, expect: str = REJECT, *, id: str, mongoose_bug: str = "",
         **options: Any) -> Any:
    """A pytest parameter for one HttpCase. ``mongoose_bug`` documents what Mongoose alone
    does wrong with this input (pymongoose's checks must fix it)."""
    del mongoose_bug  # documentation only: the case must pass like any other
    return pytest.param(HttpCase(payload, expect, **options), id=id)


def get(target: bytes = b"/", version: bytes = b"HTTP/1.1", headers: bytes = b"") -> bytes:
    """A GET request with a Host header and ``headers`` (CRLF-terminated lines)."""
    return b"GET " + target + b" " + version + b"\r\nHost: t\r\n" + headers + b"\r\n"


def post(body: bytes, headers: bytes, target: bytes = b"/p") -> bytes:
    """A POST with ``headers`` (CRLF-terminated lines) and ``body`` as given."""
    return b"POST " + target + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    """A chunked POST whose encoded body is ``body`` as given."""
    return post(body, b"Transfer-Encoding: chunked\r\n")


def padding_headers(count: int) -> bytes:
    """``count`` harmless headers."""
    return b"".join(b"X-Pad-%d: v\r\n" % i for i in range(count))


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

# Mongoose's parser stops at the first bare CR of the request line and reports "not
# complete yet"; no later byte changes that, so the connection waits forever.
BARE_CR_HANGS = ("Mongoose: a bare CR in the request line makes mg_http_parse return 0 "
                 "(incomplete) instead of -1, so the connection is never rejected")
# Only the first MG_MAX_HTTP_HEADERS (30) headers are parsed; the rest are ignored,
# including framing headers a front proxy would honour.
HEADERS_PAST_30 = ("Mongoose parses only the first 30 headers: framing headers after "
                   "them are ignored (request smuggling)")


def request_line_cases() -> Iterator[Any]:
    """Broken request lines: versions, missing parts, control bytes, bad UTF-8."""
    bad_versions = [b"HTTP/1.10", b"HTTP/1", b"HTTP/", b"HTTP", b"HTTP/11", b"HTTP/1.1.1",
                    b"HTTP/a.b", b"HTTP/1,1", b"HTTP/1.x", b"HTTP/-1.1", b"FOO/1.1",
                    b"HTTPS/1.1", b"HTTP/ 1.1", b"HTTP\\1.1", b"1.1", b"HTTP/1.1 extra",
                    b"HTTP/1.1\x00"]
    for version in bad_versions:
        yield case(get(b"/", version), id=f"version-{version!r}")
    for line in [b"GET", b"GET /", b"GET HTTP/1.1", b" / HTTP/1.1", b"/ HTTP/1.1",
                 b" ", b"HTTP/1.1", b"GET / HTTP/1.1 HTTP/1.1"]:
        yield case(line + b"\r\nHost: t\r\n\r\n", id=f"request-line-{line!r}")
    for byte in [*range(0x00, 0x20), 0x7F]:
        if byte == 0x0D:
            yield case(get(b"/a\rb"), id="uri-control-0x0d", mongoose_bug=BARE_CR_HANGS)
        else:
            yield case(get(b"/a" + bytes([byte]) + b"b"), id=f"uri-control-0x{byte:02x}")
    for where, request in [
        ("method", b"G\x00ET / HTTP/1.1\r\n\r\n"),
        ("version", b"GET / HTTP/1.\x001\r\n\r\n"),
        ("header-name", get(headers=b"X-\x00A: v\r\n")),
        ("header-value", get(headers=b"X-A: v\x00w\r\n")),
        ("after-request", get() + b"\x00"),
    ]:
        yield case(request, id=f"nul-in-{where}",
                   **({"expect": ANSWER, "answers": ("GET / 0",), "then_close": True}
                      if where == "after-request" else {}))
    for name, seq in [("ff", b"\xff"), ("fe", b"\xfe"), ("lone-continuation", b"\x80"),
                      ("lone-lead-byte", b"\xc3"), ("cut-3-byte", b"\xe2\x82"),
                      ("cut-4-byte", b"\xf0\x9f\x98"), ("5-byte", b"\xf8\x88\x80\x80\x80")]:
        yield case(get(b"/" + seq + b"x"), id=f"uri-bad-utf8-{name}")
    yield case(b"G\xffT / HTTP/1.1\r\n\r\n", id="method-bad-utf8")
    yield case(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", id="response-sent-to-server",
               mongoose_bug="Mongoose hands a server a response as if it were a request "
                     "(method 'HTTP/1.1', uri '200')")


def header_cases() -> Iterator[Any]:
    """Broken header lines and the duplicates Mongoose refuses."""
    broken = {
        "no-colon": b"NoColon\r\n",
        "empty-name": b": v\r\n",
        "only-colon": b":\r\n",
        "space-in-name": b"X Y: v\r\n",
        "space-before-colon": b"X-A : v\r\n",
        "tab-before-colon": b"X-A\t: v\r\n",
        "obs-fold-space": b"X-A: v\r\n  continued\r\n",
        "obs-fold-tab": b"X-A: v\r\n\tcontinued\r\n",
        "bare-cr-in-value": b"X-A: v\rw\r\n",
        "cr-cr-lf": b"X-A: v\r\r\n",
        "control-in-value": b"X-A: v\x01w\r\n",
        "escape-in-value": b"X-A: v\x1b[31mw\r\n",
        "del-in-name": b"X\x7fA: v\r\n",
        "bad-utf8-name": b"X\xff: v\r\n",
        "vertical-tab": b"X-A: v\x0bw\r\n",
        "form-feed": b"X-A: v\x0cw\r\n",
    }
    for name, line in broken.items():
        yield case(get(headers=line), id=f"header-{name}")
    for name in [b"Content-Length: 0", b"Transfer-Encoding: chunked", b"Authorization: a",
                 b"Cookie: a=1", b"Connection: close"]:
        header = name.split(b":")[0].decode()
        yield case(get(headers=name + b"\r\n" + name + b"\r\n"), id=f"duplicate-{header}")
    yield case(post(b"xx", b"Content-Length: 1\r\nContent-Length: 2\r\n"),
               id="duplicate-Content-Length-differing")
    yield case(post(b"x", b"content-length: 1\r\nCONTENT-LENGTH: 1\r\n"),
               id="duplicate-Content-Length-cases")


def content_length_cases() -> Iterator[Any]:
    """Content-Length values that are not a plain decimal number that fits."""
    for value in [b"-1", b"-0", b"+1", b"0x10", b"1e3", b"1.0", b"1,1", b"1, 1", b"1;1",
                  b"abc", b"", b"1 2", b"1\x0b", b"\xd9\xa1",  # Arabic-Indic digit one
                  b"99999999999999999999999", b"18446744073709551616"]:
        yield case(post(b"x", b"Content-Length: " + value + b"\r\n"),
                   id=f"content-length-{value!r}")
    # SIZE_MAX is also Mongoose's "no length given" marker: the request is answered as
    # body-less and the body bytes are parsed as the next request.
    yield case(post(b"x", b"Content-Length: 18446744073709551615\r\n"),
               id="content-length-size-max",
               mongoose_bug="Mongoose reads Content-Length 2**64-1 as 'absent' (length 0)")


def transfer_encoding_cases() -> Iterator[Any]:
    """Transfer-Encoding values other than plain 'chunked'."""
    for value in [b"identity", b"gzip", b"deflate", b"chunked, gzip", b"gzip, chunked",
                  b"chunked;q=1", b"xchunked", b"chunked-false", b"", b"chunk",
                  b"chunked chunked", b"\xffchunked"]:
        yield case(post(b"0\r\n\r\n", b"Transfer-Encoding: " + value + b"\r\n"),
                   id=f"transfer-encoding-{value!r}")


def chunked_body_cases() -> Iterator[Any]:
    """Invalid chunked encodings (complete, so the server must reject at once)."""
    bodies = {
        "bad-hex": b"zz\r\nab\r\n0\r\n\r\n",
        "negative": b"-3\r\nabc\r\n0\r\n\r\n",
        "0x-prefix": b"0x3\r\nabc\r\n0\r\n\r\n",
        "overflow-20-digits": b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        "size-2-pow-31": b"80000000\r\nabc\r\n0\r\n\r\n",
        "data-longer-than-size": b"2\r\nabc\r\n0\r\n\r\n",
        "data-without-crlf": b"3\r\nabcX\r\n0\r\n\r\n",
        "lf-only-lines": b"3\nabc\n0\n\n",
        "space-after-size": b"3 \r\nabc\r\n0\r\n\r\n",
        "space-before-size": b" 3\r\nabc\r\n0\r\n\r\n",
        "empty-size": b"\r\nabc\r\n0\r\n\r\n",
        "bare-cr-after-size": b"3\rabc\r\n0\r\n\r\n",
        "nul-in-size": b"3\x00\r\nabc\r\n0\r\n\r\n",
        "garbage-after-last-chunk": b"0\r\nXX\r\n",
    }
    for name, body in bodies.items():
        yield case(chunked(body), id=f"chunked-{name}")


def truncated_cases() -> Iterator[Any]:
    """Requests cut short, then the client half-closes: nothing reaches the handler."""
    truncated = {
        "request-line": b"GET / HT",
        "headers": b"GET / HTTP/1.1\r\nHost: t\r\n",
        "empty-lines-only": b"\r\n\r\n",
        "chunked-inside-chunk": chunked(b"3\r\nab"),
        "chunked-no-last-chunk": chunked(b"3\r\nabc\r\n"),
        "chunked-no-final-crlf": chunked(b"3\r\nabc\r\n0\r\n"),
        "chunked-no-body": chunked(b""),
        "chunked-huge-chunk": chunked(b"7fffffff\r\nabc"),
        "ssh-banner": b"SSH-2.0-OpenSSH_9.6\r\n",
        "smtp-ehlo": b"EHLO t\r\n",
        "redis-ping": b"*1\r\n$4\r\nPING\r\n",
    }
    for name, payload in truncated.items():
        yield case(payload, TRUNCATED, id=f"truncated-{name}")
    # A request whose body is cut short is handed to the handler as if complete when
    # the client closes (http_cb's MG_EV_CLOSE branch ignores Content-Length).
    short_body = "Mongoose delivers MG_EV_HTTP_MSG with a short body when the client closes"
    yield case(post(b"abc", b"Content-Length: 10\r\n"), TRUNCATED,
               id="truncated-content-length-body", mongoose_bug=short_body)
    yield case(post(b"x", b"Content-Length: 9223372036854775808\r\n"), TRUNCATED,
               id="truncated-content-length-2-pow-63", mongoose_bug=short_body)


def smuggling_cases() -> Iterator[Any]:
    """Requests hidden inside another request's framing must never be served."""
    never = ("/smuggled",)
    both = {
        "cl-then-te": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "te-then-cl": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "te-then-cl-lowercase": b"transfer-encoding: chunked\r\ncontent-length: 5\r\n",
        "cl-then-te-identity": b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
        "te-chunked-and-identity": (b"Transfer-Encoding: chunked\r\n"
                                    b"Transfer-Encoding: identity\r\n"),
        "cl-0-and-cl-44": b"Content-Length: 0\r\nContent-Length: 44\r\n",
        "te-space-before-colon": b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
        "te-vertical-tab": b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n",
    }
    for name, headers in both.items():
        yield case(post(b"0\r\n\r\n" + SMUGGLED, headers), id=f"smuggle-{name}",
                   never_served=never)
    # HTTP/1.0 has no transfer codings: faulty framing, 400 and close (RFC 9112 6.1).
    yield case(b"GET /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
               status=400, never_served=("/s", *never), id="smuggle-te-in-http-1.0")
    yield case(post(b"0\r\n\r\n" + SMUGGLED,
                    b"Content-Length: 5\r\n" + padding_headers(40)
                    + b"Transfer-Encoding: chunked\r\n"),
               id="smuggle-te-after-40-headers", never_served=never, mongoose_bug=HEADERS_PAST_30)
    yield case(post(SMUGGLED, b"Content-Length: 0\r\n" + padding_headers(40)
                    + b"Content-Length: %d\r\n" % len(SMUGGLED)),
               id="smuggle-second-cl-after-40-headers", never_served=never,
               mongoose_bug=HEADERS_PAST_30)


def pipelining_cases() -> Iterator[Any]:
    """Several requests in one write: valid ones answered in order, garbage ends it."""
    for count in (2, 10, 100):
        requests = [get(b"/%d" % i) for i in range(count - 1)]
        requests.append(get(b"/%d" % (count - 1), headers=b"Connection: close\r\n"))
        yield case(b"".join(requests), ANSWER, then_close=True,
                   answers=tuple(f"GET /{i} 0" for i in range(count)),
                   id=f"pipeline-{count}-gets")
    mixed = (post(b"hello", b"Content-Length: 5\r\n", b"/a") + get(b"/b")
             + chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
             + b"PUT /d HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    yield case(mixed, ANSWER, answers=("POST /a 5", "GET /b 0", "POST /p 5", "PUT /d 0"),
               then_close=True, id="pipeline-mixed-methods-and-bodies")
    yield case(mixed, ANSWER, answers=("POST /a 5", "GET /b 0", "POST /p 5", "PUT /d 0"),
               then_close=True, trickle=1, id="pipeline-mixed-one-byte-at-a-time")
    yield case(mixed, ANSWER, answers=("POST /a 5", "GET /b 0", "POST /p 5", "PUT /d 0"),
               then_close=True, trickle=7, id="pipeline-mixed-seven-bytes-at-a-time")
    for name, garbage in [("binary", b"\x01\x02\x03garbage\r\n\r\n"),
                          ("word", b"BLAH\r\n\r\n"), ("nul", b"\x00"),
                          ("bad-version", b"GET /x HTTP/7\r\n\r\n")]:
        yield case(get(b"/1") + garbage + get(b"/after"), ANSWER, answers=("GET /1 0",),
                   then_close=True, never_served=("/after",),
                   id=f"pipeline-then-garbage-{name}")
    yield case(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status=505,
               id="http2-prior-knowledge-preface")
    # Mongoose advances past a body-less POST/PUT without Content-Length twice, so the
    # next pipelined request is skipped or cut in two.
    skipped = "Mongoose skips the head length twice after a POST/PUT without Content-Length"
    for method in (b"POST", b"PUT"):
        yield case(method + b" /a HTTP/1.1\r\n\r\n" + b"GET /b HTTP/1.1\r\n\r\n"
                   + b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n", ANSWER,
                   answers=(f"{method.decode()} /a 0", "GET /b 0", "GET /c 0"),
                   then_close=True, id=f"pipeline-after-{method.decode()}-without-length",
                   mongoose_bug=skipped)


def abusive_valid_cases() -> Iterator[Any]:
    """Well-formed but abusive requests: huge, many, odd. Mongoose accepts them all."""
    close = b"Connection: close\r\n"

    def answered(request: bytes, answer: str, name: str, **options: Any) -> Any:
        return case(request, ANSWER, answers=(answer,), then_close=True, id=name, **options)

    # Heads over the default Limits.max_header_size (32 KiB) are refused with 431.
    for name, request in [
        ("header-value-1mib", get(headers=b"X-Big: " + b"a" * (1 << 20) + b"\r\n" + close)),
        ("headers-5000", get(headers=close + padding_headers(5000))),
        ("headers-1000-of-1kib", get(headers=close + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(1000)))),
        ("uri-200kb", get(b"/" + b"u" * 200_000, headers=close)),
        ("query-400kb", get(b"/q?" + b"k=v&" * 100_000, headers=close)),
    ]:
        yield case(request, REJECT, status=431, id=name)
    yield answered(get(b"/" + b"u" * 30_000, headers=close),
                   "GET /" + "u" * (URI_ECHO_MAX - 1) + " 0", "uri-30kb")
    yield answered(get(b"/q?" + b"k=v&" * 7_000, headers=close), "GET /q 0", "query-28kb")
    yield answered(get(headers=close + padding_headers(25)), "GET / 0", "headers-25")
    yield answered(b"M" * 10_000 + b" / HTTP/1.1\r\nConnection: close\r\n\r\n",
                   "M" * 10_000 + " / 0", "method-10k-chars")
    yield answered(get("/żółw/🐢".encode(), headers="X-U: ☃\r\n".encode() + close),
                   "GET /żółw/🐢 0", "uri-utf8")
    yield answered(get(b"/%00%ff%2e%2e/", headers=close), "GET /%00%ff%2e%2e/ 0",
                   "uri-percent-escapes")
    yield answered(get(b"/../../etc/passwd", headers=close), "GET /../../etc/passwd 0",
                   "uri-dot-dot")
    yield answered(get(b"http://elsewhere.invalid/x", headers=close),
                   "GET http://elsewhere.invalid/x 0", "uri-absolute-form")
    yield answered(b"OPTIONS * HTTP/1.1\r\nConnection: close\r\n\r\n", "OPTIONS * 0",
                   "uri-asterisk")
    yield answered(b"get / HTTP/1.1\r\nConnection: close\r\n\r\n", "get / 0",
                   "method-lowercase")
    yield answered(b"BREW /pot HTTP/1.1\r\nConnection: close\r\n\r\n", "BREW /pot 0",
                   "method-unknown")
    yield answered(b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", "GET / 0", "http-1.0")
    yield answered(b"GET / HTTP/1.1\nConnection: close\n\n", "GET / 0", "lf-line-ends")
    yield answered(get(headers=b"Content-Length: 0000000000000000000003\r\n" + close)
                   + b"abc", "GET / 3", "content-length-leading-zeros")
    yield answered(post(b"b" * (1 << 20), b"Content-Length: %d\r\n" % (1 << 20) + close),
                   f"POST /p {1 << 20}", "body-1mib")
    yield answered(post(b"100000\r\n" + b"c" * 0x100000 + b"\r\n0\r\n\r\n",
                        b"Transfer-Encoding: chunked\r\n" + close),
                   f"POST /p {0x100000}", "chunked-one-1mib-chunk")
    yield answered(post(b"1\r\nc\r\n" * 5000 + b"0\r\n\r\n",
                        b"Transfer-Encoding: chunked\r\n" + close),
                   "POST /p 5000", "chunked-5000-one-byte-chunks")
    yield answered(post(b"hello", b"Content-Length: 5\r\nExpect: 100-continue\r\n" + close),
                   "POST /p 5", "expect-100-continue")
    yield answered(get(headers=close), "GET / 0", "one-byte-at-a-time", trickle=1)


def corpus_file_cases() -> Iterator[Any]:
    """The hand-written files in tests/hostile/: every one must be rejected."""
    for path in sorted(CORPUS_DIR.glob("reject-*")):
        yield case(path.read_bytes(), REJECT, id=f"file-{path.stem}",
                   never_served=("/smuggled",))


def binary_garbage_cases() -> Iterator[Any]:
    """Random bytes and other protocols' openings."""
    for seed in range(12):
        rng = random.Random(seed)
        size = rng.choice((16, 512, 4096, 65536))
        yield case(bytes(rng.getrandbits(8) for _ in range(size)), id=f"random-{seed}-{size}b")
    client_hello = bytes.fromhex("16030100c4010000c00303") + bytes(range(32)) + b"\x00" * 150
    yield case(client_hello, id="tls-client-hello")
    yield case(b"\x05\x01\x00", TRUNCATED, id="socks5-greeting")
    yield case(b"\x00" * 4096, id="nul-flood")
    # No line end at all: the server waits for the end of the headers, as it should.
    yield case(b"\xff" * 4096, TRUNCATED, id="ff-flood-without-line-end")


def rfc9112_cases() -> Iterator[Any]:
    """More of what pymongoose's head check (csrc/conn_limits.c) refuses, and its
    near misses that must still be served."""
    close = b"Connection: close\r\n"

    def answered(request: bytes, answer: str, name: str) -> Any:
        return case(request, ANSWER, answers=(answer,), then_close=True, id=name)

    # Request lines Mongoose would take for a request.
    for name, line in [("method-with-slash", b"GE/T / HTTP/1.1"),
                       ("method-with-colon", b"GET: / HTTP/1.1"),
                       ("method-with-brackets", b"[GET] / HTTP/1.1"),
                       ("response-1.0-line", b"HTTP/1.0 404 Not Found"),
                       ("target-with-del", b"GET /a\x7fb HTTP/1.1"),
                       ("bare-cr-after-method", b"GET\r/ HTTP/1.1"),
                       ("bare-cr-after-version", b"GET / HTTP/1.1\rX")]:
        yield case(line + b"\r\nHost: t\r\n\r\n", id=f"rfc9112-{name}")
    # Framing: every duplicate or conflicting form is refused, wherever it sits.
    for name, headers in [
        ("te-twice-chunked", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        ("cl-identical-twice", b"Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("cl-list", b"Content-Length: 5, 5\r\n"),
        ("cl-tab-inside", b"Content-Length: 5\t5\r\n"),
        ("cl-empty", b"Content-Length:\r\n"),
        ("cl-plus-te-1.1-after-29", padding_headers(29) + b"Content-Length: 5\r\n"
         + b"Transfer-Encoding: chunked\r\n"),
        ("te-obs-fold", b"Transfer-Encoding: identity\r\n chunked\r\n"),
        ("te-comma-chunked", b"Transfer-Encoding: ,chunked\r\n"),
        ("te-nul", b"Transfer-Encoding: chunked\x00\r\n"),
        ("te-quoted", b"Transfer-Encoding: \"chunked\"\r\n"),
        ("31-headers", padding_headers(31)),
        ("bare-cr-in-name", b"X\rA: v\r\n"),
        ("colon-only-name-space", b" : v\r\n"),
    ]:
        yield case(post(b"0\r\n\r\n" + SMUGGLED, headers), id=f"rfc9112-{name}",
                   never_served=("/smuggled",))
    # HTTP/1.0 with both framing headers: refused too.
    yield case(b"POST /p HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
               b"\r\n0\r\n\r\n" + SMUGGLED, id="rfc9112-cl-te-in-http-1.0",
               never_served=("/smuggled",))
    # Near misses: optional whitespace, case, 30 headers, an explicit zero length.
    yield answered(post(b"hello", b"Content-Length:   5  \r\n" + close), "POST /p 5",
                   "rfc9112-cl-with-ows")
    yield answered(post(b"3\r\nabc\r\n0\r\n\r\n",
                        b"transfer-ENCODING:\tChunked \r\n" + close), "POST /p 3",
                   "rfc9112-te-case-and-ows")
    # get() adds Host: 1 + 1 + 28 = 30 headers, as many as Mongoose keeps.
    yield answered(get(headers=close + padding_headers(28)), "GET / 0", "rfc9112-30-headers")
    yield answered(post(b"", b"Content-Length: 0\r\n" + close), "POST /p 0",
                   "rfc9112-cl-zero")
    yield answered(get(b"/tab", headers=b"X-A: a\tb\r\n" + close), "GET /tab 0",
                   "rfc9112-tab-in-value")
    yield answered(get(b"/obs", headers="X-A: caf\u00e9\r\n".encode("latin-1") + close),
                   "GET /obs 0", "rfc9112-obs-text-in-value")
    # POST and PUT without a length have an empty body, and what follows is the next request.
    for method in (b"POST", b"PUT", b"PATCH", b"DELETE"):
        yield case(method + b" /a HTTP/1.1\r\nHost: t\r\n\r\n"
                   + b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n", ANSWER,
                   answers=(f"{method.decode()} /a 0", "GET /b 0"), then_close=True,
                   id=f"rfc9112-{method.decode()}-without-length-then-get")
    # A request cut short at any point of its body never reaches the handler.
    full = post(b"0123456789", b"Content-Length: 10\r\n")
    for cut in (1, 5, 9):
        yield case(full[:len(full) - cut], TRUNCATED, id=f"rfc9112-body-cut-{cut}-short")


def rfc9110_conformance_cases() -> Iterator[Any]:
    """Issue 13: what RFC 9112 says a server must take, and what it must refuse."""
    close = b"Connection: close\r\n"
    te = b"Transfer-Encoding: chunked\r\n" + close
    # 7.1.1: a recipient MUST ignore chunk extensions it does not understand.
    for name, body in [
        ("bare", b"5; some; parameters=stuff\r\nhello\r\n0\r\n\r\n"),
        ("quoted", b'5;foo="bar baz"\r\nhello\r\n0\r\n\r\n'),
        ("quoted-pair", b'5;a="q\\"x";b=1\r\nhello\r\n0;last\r\n\r\n'),
        ("bws", b"5 ; a = b\t;c\r\nhello\r\n0\r\n\r\n"),
    ]:
        yield case(post(body, te), ANSWER, answers=("POST /p 5",), then_close=True,
                   id=f"rfc9112-chunk-ext-{name}")
    # 7.1.2: a trailer section after the last chunk.
    yield case(post(b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other:\tv \r\n\r\n", te), ANSWER,
               answers=("POST /p 5",), then_close=True, id="rfc9112-chunk-trailer-fields")
    yield case(post(b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", b"Transfer-Encoding: chunked\r\n")
               + get(b"/next", headers=close), ANSWER, answers=("POST /p 3", "GET /next 0"),
               then_close=True, trickle=3, id="rfc9112-chunk-ext-trailer-then-pipelined")
    for name, body in [("ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
                       ("ext-no-name", b"5;\r\nhello\r\n0\r\n\r\n"),
                       ("ext-open-quote", b'5;a="b\r\nhello\r\n0\r\n\r\n'),
                       ("last-chunk-trailing-space", b"5\r\nhello\r\n0 \r\n\r\n"),
                       ("trailer-no-colon", b"0\r\nX-Trailer\r\n\r\n"),
                       ("trailer-bare-cr", b"0\r\nX: a\rb\r\n\r\n"),
                       ("trailer-obs-fold", b"0\r\nX: a\r\n b\r\n\r\n")]:
        yield case(chunked(body), status=400, id=f"rfc9112-chunk-{name}")
    # 3.2: exactly one Host.
    yield case(get(headers=b"Host: u\r\n"), status=400, id="rfc9112-two-host-fields")
    yield case(b"GET / HTTP/1.1\r\nhost: a\r\nX: 1\r\nHOST: a\r\n\r\n", status=400,
               id="rfc9112-two-host-fields-same-value")
    # 3.2: origin-form, absolute-form, authority-form (CONNECT), asterisk-form (OPTIONS).
    for name, line in [("asterisk-get", b"GET * HTTP/1.1"),
                       ("authority-get", b"GET example.com:443 HTTP/1.1"),
                       ("relative-path", b"GET foo/bar HTTP/1.1"),
                       ("bad-uri", b"GET s://]ufd/: HTTP/1.1"),
                       ("scheme-only", b"GET http: HTTP/1.1"),
                       ("no-scheme-authority", b"GET ://x/ HTTP/1.1"),
                       ("connect-origin", b"CONNECT / HTTP/1.1"),
                       ("connect-no-port", b"CONNECT example.com HTTP/1.1"),
                       ("connect-absolute", b"CONNECT http://example.com:80/ HTTP/1.1"),
                       ("options-asterisk-query", b"OPTIONS *? HTTP/1.1"),
                       ("bad-port", b"GET http://example.com:8a/ HTTP/1.1")]:
        yield case(line + b"\r\nHost: t\r\n\r\n", status=400, id=f"rfc9112-target-{name}")
    for name, line, answer in [
        ("absolute", b"GET http://example.com/foo?a=1 HTTP/1.1", "GET http://example.com/foo 0"),
        ("absolute-port-ipv6", b"GET http://[::1]:8080/x HTTP/1.1",
         "GET http://[::1]:8080/x 0"),
        ("absolute-userinfo", b"GET https://u:p@h.example/ HTTP/1.1",
         "GET https://u:p@h.example/ 0"),
        ("absolute-no-path", b"GET http://example.com HTTP/1.1", "GET http://example.com 0"),
        ("options-asterisk", b"OPTIONS * HTTP/1.1", "OPTIONS * 0"),
        ("connect-authority", b"CONNECT example.com:443 HTTP/1.1", "CONNECT example.com:443 0"),
    ]:
        yield case(line + b"\r\nHost: t\r\n" + close + b"\r\n", ANSWER, answers=(answer,),
                   then_close=True, id=f"rfc9112-target-ok-{name}")
    # 2.3 / RFC 9110 6.2: a major version we do not speak, or a minor we do not know.
    for version in (b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.1", b"HTTP/0.9", b"HTTP/1.9"):
        yield case(get(b"/", version), status=505, id=f"rfc9112-version-{version.decode()}")
    # 9.3: HTTP/1.0 without keep-alive: one request, one answer, then the close.
    yield case(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", ANSWER,
               answers=("GET /a 0",), then_close=True, never_served=("/b",),
               id="rfc9112-http-1.0-pipelined-closes")
    yield case(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
               b"GET /c HTTP/1.0\r\n\r\n", ANSWER, answers=("GET /a 0", "GET /b 0"),
               then_close=True, never_served=("/c",), id="rfc9112-http-1.0-keep-alive-then-not")
    # 9.6: nothing after Connection: close is processed, whatever the method.
    yield case(post(b"hi", b"Content-Length: 2\r\nConnection: close\r\n", b"/a") + get(b"/b"),
               ANSWER, answers=("POST /a 2",), then_close=True, never_served=("/b",),
               id="rfc9112-close-then-pipelined")


HTTP_CASES = [
    *request_line_cases(),
    *header_cases(),
    *content_length_cases(),
    *transfer_encoding_cases(),
    *chunked_body_cases(),
    *truncated_cases(),
    *smuggling_cases(),
    *pipelining_cases(),
    *abusive_valid_cases(),
    *corpus_file_cases(),
    *binary_garbage_cases(),
    *rfc9112_cases(),
    *rfc9110_conformance_cases(),
]


def send_case(sock: socket.socket, payload: bytes, trickle: int) -> None:
    """Send the payload at once or in ``trickle``-byte pieces."""
    if not trickle:
        send_quietly(sock, payload)
        return
    for start in range(0, len(payload), trickle):
        send_quietly(sock, payload[start:start + trickle])


@pytest.mark.parametrize("http_case", HTTP_CASES)
def test_http_input(hostile: HostileServer, http_case: HttpCase) -> None:
    """Malformed input is rejected, valid input answered, and the server stays healthy."""
    errors_before, requests_before = len(hostile.errors), len(hostile.recorder.requests)
    with connect(hostile) as sock:
        port = sock.getsockname()[1]
        send_case(sock, http_case.payload, http_case.trickle)
        if http_case.expect == TRUNCATED:
            sock.shutdown(socket.SHUT_WR)
            reading = read_until(sock, never)
        elif http_case.expect == REJECT:
            reading = read_until(sock, has_responses(1))
        else:
            wanted = has_responses(len(http_case.answers))
            reading = read_until(sock, never if http_case.then_close else wanted)
    responses = parse_responses(reading.raw)
    assert not reading.timed_out, (
        f"no answer and no close within {DEADLINE} s; received {reading.raw[:200]!r}")
    if http_case.expect == ANSWER:
        assert [r.body.decode("utf-8", "replace") for r in responses] == list(
            http_case.answers)
        assert all(r.status == 200 for r in responses)
        if http_case.then_close:
            assert reading.closed, "the server did not close after its answers"
    else:
        assert reading.closed or (responses and 400 <= responses[0].status < 506), (
            f"expected 4xx or close, received {reading.raw[:200]!r}")
        assert all(400 <= r.status < 500 or r.status == http_case.status == 505
                   for r in responses), f"malformed input was answered: {reading.raw[:200]!r}"
        if http_case.status:
            assert [r.status for r in responses] == [http_case.status], reading.raw[:200]
    settle(hostile, errors_before)
    served = hostile.recorder.requests_from(port, requests_before)
    if http_case.expect != ANSWER:
        assert served == [], "a malformed request reached the handler"
    else:
        assert len(served) == len(http_case.answers)
    for uri in http_case.never_served:
        assert all(r.uri != uri for r in served), f"{uri} was served"


def test_http_corpus_is_large() -> None:
    """The corpus keeps its promised size (HTTP and WebSocket cases together)."""
    assert len(HTTP_CASES) + len(WS_CASES) >= 200
    assert len(list(CORPUS_DIR.glob("reject-*"))) >= 5


# -- WebSocket cases ----------------------------------------------------------------------

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
MASK = b"\x37\xfa\x21\x3d"

ECHO = "echo"  # valid: exactly these frames come back
FAIL = "fail"  # a protocol violation: the server must close the connection
CLOSE = "close"  # a CLOSE frame, however odd: the server must close, no data after it
CUT = "cut"  # a frame cut short, then the client half-closes: the server must close


def frame(first_byte: int, payload: bytes = b"", *, masked: bool = True,
          length: Optional[int] = None) -> bytes:
    """A client frame: ``first_byte`` is FIN/RSV/opcode; ``length`` may lie."""
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first_byte, mask_bit | size])
    elif size < 1 << 16:
        head = bytes([first_byte, mask_bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first_byte, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def parse_frames(raw: bytes) -> list[Frame]:
    """The complete frames at the start of ``raw``."""
    return frames_and_rest(raw)[0]


@dataclass(frozen=True)
class WsCase:
    """Frames sent after a valid upgrade, and what the server must do with them."""

    frames: bytes
    expect: str
    #: For ECHO: the (opcode, payload) frames that must come back, in order.
    echoes: tuple[tuple[int, bytes], ...] = ()


def ws_case(frames: bytes, expect: str, *, id: str, mongoose_bug: str = "",
            echoes: Iterable[tuple[int, bytes]] = ()) -> Any:
    """A pytest parameter for one WsCase."""
    del mongoose_bug  # documentation only, as for case()
    return pytest.param(WsCase(frames, expect, tuple(echoes)), id=f"ws-{id}")


UNMASKED_OK = "Mongoose accepts unmasked client frames (RFC 6455 5.1: the server must close)"
FRAGMENTED_CONTROL = ("Mongoose accepts fragmented control frames and delivers the "
                      "reassembly as MG_EV_WS_MSG with a control opcode")
ORPHAN_CONTINUATION = ("Mongoose accepts a continuation frame with no message to continue: "
                       "the first payload byte becomes the message's flags/opcode")
NO_CLOSE_ON_BIG_LENGTH = ("Mongoose treats a 64-bit length over its 1 GiB limit as "
                          "'not buffered yet' and waits forever instead of closing")


def ws_violation_cases() -> Iterator[Any]:
    """Frames RFC 6455 says must fail the connection."""
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        yield ws_case(frame(FIN | op, b"hello"), FAIL, id=f"reserved-opcode-{op:#x}")
        yield ws_case(frame(op, b"hello"), FAIL, id=f"reserved-opcode-{op:#x}-no-fin")
    yield ws_case(HANDSHAKE, FAIL, id="http-request-after-upgrade")
    yield ws_case(frame(FIN | OP_TEXT, b"hello", masked=False), FAIL, id="unmasked-text",
                  mongoose_bug=UNMASKED_OK)
    yield ws_case(frame(FIN | OP_BINARY, b"\x00\x01", masked=False), FAIL,
                  id="unmasked-binary", mongoose_bug=UNMASKED_OK)
    yield ws_case(frame(FIN | OP_PING, b"p", masked=False), FAIL, id="unmasked-ping",
                  mongoose_bug=UNMASKED_OK)
    for name, length in [("2-pow-63", 1 << 63), ("2-pow-40", 1 << 40)]:
        yield ws_case(frame(FIN | OP_BINARY, b"xx", length=length), FAIL,
                      id=f"length-{name}", mongoose_bug=NO_CLOSE_ON_BIG_LENGTH)
    yield ws_case(frame(OP_PING, b"pi") + frame(FIN | OP_CONTINUE, b"ng"), FAIL,
                  id="fragmented-ping", mongoose_bug=FRAGMENTED_CONTROL)
    yield ws_case(frame(OP_PONG, b"po") + frame(FIN | OP_CONTINUE, b"ng"), FAIL,
                  id="fragmented-pong", mongoose_bug=FRAGMENTED_CONTROL)
    for name, payload in [("opcode-byte", b"\x03hello"), ("text", b"hello"),
                          ("empty", b"")]:
        yield ws_case(frame(FIN | OP_CONTINUE, payload), FAIL,
                      id=f"orphan-continuation-{name}", mongoose_bug=ORPHAN_CONTINUATION)
    yield ws_case(frame(OP_CONTINUE, b"abc") + frame(FIN | OP_CONTINUE, b"def"), FAIL,
                  id="orphan-continuation-fragments", mongoose_bug=ORPHAN_CONTINUATION)
    yield ws_case(frame(OP_TEXT, b"hel") + frame(FIN | OP_TEXT, b"xyz"), FAIL,
                  id="new-message-inside-fragmented-one",
                  mongoose_bug="Mongoose silently drops the unfinished fragmented message")
    for name, bits in [("rsv1", 0x40), ("rsv2", 0x20), ("rsv3", 0x10)]:
        yield ws_case(frame(FIN | bits | OP_TEXT, b"hello"), FAIL, id=f"{name}-set",
                      mongoose_bug="Mongoose ignores RSV bits no extension negotiated")
    yield ws_case(frame(FIN | OP_PING, b"p" * 126), FAIL, id="ping-over-125-bytes",
                  mongoose_bug="Mongoose accepts control frames longer than 125 bytes")
    yield ws_case(frame(FIN | OP_TEXT, b"\xff\xfe"), FAIL, id="text-invalid-utf8",
                  mongoose_bug="Mongoose does not validate UTF-8 in text messages (RFC: 1007)")


def ws_close_cases() -> Iterator[Any]:
    """CLOSE frames with odd codes and payloads: the server closes, sends no more data."""
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 4999, 5000, 65535):
        yield ws_case(frame(FIN | OP_CLOSE, close_payload(code)), CLOSE, id=f"close-code-{code}")
    yield ws_case(frame(FIN | OP_CLOSE, b"\x03"), CLOSE, id="close-one-byte-payload")
    yield ws_case(frame(FIN | OP_CLOSE, close_payload(1000, b"\xff\xfe")), CLOSE,
                  id="close-reason-invalid-utf8")
    yield ws_case(frame(FIN | OP_CLOSE, close_payload(1000, b"r" * 123)), CLOSE,
                  id="close-reason-123-bytes")
    yield ws_case(frame(FIN | OP_CLOSE, close_payload(1000, b"r" * 200)), CLOSE,
                  id="close-payload-over-125-bytes")
    yield ws_case(frame(OP_CLOSE, close_payload(1000)), CLOSE, id="close-without-fin")
    yield ws_case(frame(FIN | OP_CLOSE, close_payload(1000), masked=False), CLOSE,
                  id="close-unmasked")
    yield ws_case(frame(FIN | OP_CLOSE, close_payload(1000)) + frame(FIN | OP_TEXT, b"late"),
                  CLOSE, id="text-after-close",
                  mongoose_bug="Mongoose keeps parsing after a CLOSE and echoes later data frames")
    yield ws_case(frame(FIN | OP_CLOSE) * 50, CLOSE, id="close-50-times")


def ws_cut_cases() -> Iterator[Any]:
    """Frames cut short; the client then half-closes."""
    whole = frame(FIN | OP_BINARY, b"0123456789" * 30)  # 16-bit length
    for name, cut in [("first-byte", 1), ("length-byte", 2), ("extended-length", 3),
                      ("mask", 6), ("payload", 20), ("last-byte", len(whole) - 1)]:
        yield ws_case(whole[:cut], CUT, id=f"cut-after-{name}")
    yield ws_case(frame(FIN | OP_BINARY, b"x" * 70_000)[:9], CUT, id="cut-64-bit-length")
    yield ws_case(frame(OP_TEXT, b"part"), CUT, id="cut-unfinished-fragmented-message")


def ws_valid_cases() -> Iterator[Any]:
    """Valid but demanding traffic: every message must come back exactly once, in order."""
    def echo(name: str, frames: bytes, echoes: Iterable[tuple[int, bytes]]) -> Any:
        return ws_case(frames, ECHO, id=name, echoes=echoes)

    yield echo("empty-text", frame(FIN | OP_TEXT), [(OP_TEXT, b"")])
    for size in (125, 126, 65535, 65536, 1 << 20):
        payload = bytes(i % 251 for i in range(size))
        yield echo(f"binary-{size}", frame(FIN | OP_BINARY, payload), [(OP_BINARY, payload)])
    yield echo("fragmented-3-parts",
               frame(OP_TEXT, b"hel") + frame(OP_CONTINUE, b"l") + frame(FIN | OP_CONTINUE, b"o"),
               [(OP_TEXT, b"hello")])
    yield echo("fragmented-with-ping-inside",
               frame(OP_TEXT, b"hel") + frame(FIN | OP_PING, b"P")
               + frame(FIN | OP_CONTINUE, b"lo"),
               [(OP_PONG, b"P"), (OP_TEXT, b"hello")])
    yield echo("fragmented-200-parts",
               frame(OP_BINARY, b"a") + frame(OP_CONTINUE, b"b") * 198
               + frame(FIN | OP_CONTINUE, b"c"),
               [(OP_BINARY, b"a" + b"b" * 198 + b"c")])
    # More frames than the C event queue holds (4096), and more bytes than its arena.
    many = [b"m%d" % i for i in range(5000)]
    yield echo("5000-small-frames", b"".join(frame(FIN | OP_TEXT, m) for m in many),
               [(OP_TEXT, m) for m in many])
    blocks = [bytes([i]) * 16000 for i in range(40)]
    yield echo("40-frames-of-16000-bytes", b"".join(frame(FIN | OP_BINARY, b) for b in blocks),
               [(OP_BINARY, b) for b in blocks])
    yield echo("300-pings", b"".join(frame(FIN | OP_PING, b"%d" % i) for i in range(300)),
               [(OP_PONG, b"%d" % i) for i in range(300)])
    yield echo("unsolicited-pong-ignored",
               frame(FIN | OP_PONG, b"x") + frame(FIN | OP_TEXT, b"after"),
               [(OP_TEXT, b"after")])
    yield echo("64-bit-length-small-value",
               b"\x81\xff" + struct.pack("!Q", 5) + MASK
               + bytes(b ^ MASK[i % 4] for i, b in enumerate(b"hello")),
               [(OP_TEXT, b"hello")])


WS_CASES = [*ws_violation_cases(), *ws_close_cases(), *ws_cut_cases(), *ws_valid_cases()]


def upgrade(sock: socket.socket) -> bytes:
    """Send the handshake and return whatever followed the 101 response."""
    sock.sendall(HANDSHAKE)
    reading = read_until(sock, lambda raw: b"\r\n\r\n" in raw)
    head, _, rest = reading.raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), f"no upgrade: {reading}"
    return rest


def ping_answered(payload: bytes) -> Callable[[bytes], bool]:
    """A ``done`` test for read_until: a PONG carrying ``payload`` arrived."""
    return lambda raw: any(f.op == OP_PONG and f.payload == payload
                           for f in parse_frames(raw))


def still_open_after(sock: socket.socket, already: bytes) -> tuple[bool, Reading]:
    """Whether the server still reads this connection: it answers two probe PINGs.

    A server closing a connection in error may have written the first PONG already;
    the second PING is sent after the first PONG arrived, so it is answered only if
    the server kept reading.
    """
    send_quietly(sock, frame(FIN | OP_PING, b"probe-1"))
    first = read_until(sock, lambda raw: ping_answered(b"probe-1")(already + raw))
    if first.closed or first.timed_out:
        return False, first
    send_quietly(sock, frame(FIN | OP_PING, b"probe-2"))
    second = read_until(sock, lambda raw: ping_answered(b"probe-2")(already + first.raw + raw))
    combined = Reading(first.raw + second.raw, second.closed, second.timed_out)
    return not (second.closed or second.timed_out), combined


@pytest.mark.parametrize("ws", WS_CASES)
def test_websocket_input(hostile: HostileServer, ws: WsCase) -> None:
    """After a valid upgrade, bad frames close the connection and valid ones echo."""
    errors_before, messages_before = len(hostile.errors), len(hostile.recorder.ws_messages)
    with connect(hostile) as sock:
        port = sock.getsockname()[1]
        received = upgrade(sock)
        send_quietly(sock, ws.frames)
        if ws.expect == ECHO:
            reading = read_until(sock, lambda raw: len(parse_frames(received + raw))
                                 >= len(ws.echoes))
            assert not reading.timed_out and not reading.closed, f"echo incomplete: {reading}"
            frames = parse_frames(received + reading.raw)
            assert [(f.op, f.payload) for f in frames] == list(ws.echoes)
            assert all(f.fin for f in frames)
        elif ws.expect == FAIL:
            still_open, reading = still_open_after(sock, received)
            assert not reading.timed_out, f"the server neither answered nor closed in {DEADLINE} s"
            assert not still_open, "the server kept the connection open after the violation"
        else:
            if ws.expect == CUT:
                sock.shutdown(socket.SHUT_WR)
            reading = read_until(sock, never)
            assert reading.closed, f"not closed within {DEADLINE} s"
            frames = parse_frames(received + reading.raw)
            ops = [f.op for f in frames]
            if OP_CLOSE in ops:
                after_close = ops[ops.index(OP_CLOSE) + 1:]
                assert OP_TEXT not in after_close and OP_BINARY not in after_close, (
                    f"data frames after the CLOSE frame: {ops}")
    settle(hostile, errors_before)
    delivered_ops = {op for op, _ in hostile.recorder.ws_messages_from(port, messages_before)}
    assert delivered_ops <= {OP_TEXT, OP_BINARY}, (
        f"the handler received messages with opcodes {delivered_ops}")


# -- connections that stall, flood or vanish ----------------------------------------------


@dataclass
class Stalled:
    """A client connection left half-way through something."""

    sock: socket.socket
    completion: bytes  # what finishes its request
    answer: str  # the answer body that completion earns


def open_stalled(server: HostileServer) -> list[Stalled]:
    """Connections stopped at every stage of a request, left open."""
    stages = [
        (b"G", b"ET /s1 HTTP/1.1\r\n\r\n", "GET /s1 0"),
        (b"GET /s2 HTTP/1.1\r\n", b"\r\n", "GET /s2 0"),
        (b"GET /s3 HTTP/1.1\r\nHost: t\r\nX-Slow: 1", b"\r\n\r\n", "GET /s3 0"),
        (b"POST /s4 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", b"defghij", "POST /s4 10"),
        (b"POST /s5 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
         b"0\r\n\r\n", "POST /s5 3"),
    ]
    stalled = []
    for _ in range(4):
        for start, rest, answer in stages:
            sock = connect(server)
            sock.sendall(start)
            stalled.append(Stalled(sock, rest, answer))
    return stalled


def normal_request(server: HostileServer, path: str) -> Response:
    """One GET on a fresh connection; the server must answer it."""
    with connect(server) as sock:
        sock.sendall(get(path.encode(), headers=b"Connection: close\r\n"))
        reading = read_until(sock, has_responses(1))
    responses = parse_responses(reading.raw)
    assert responses, f"GET {path} got no answer: {reading}"
    return responses[0]


def test_slowloris_does_not_block_other_clients(hostile: HostileServer) -> None:
    """Partial requests left open do not stop the server answering everyone else."""
    errors_before = len(hostile.errors)
    stalled = open_stalled(hostile)
    ws_sock = connect(hostile)
    try:
        upgrade(ws_sock)
        ws_sock.sendall(frame(FIN | OP_TEXT, b"half a frame")[:7])
        for i in range(20):
            response = normal_request(hostile, f"/meanwhile-{i}")
            assert (response.status, response.body) == (200, f"GET /meanwhile-{i} 0".encode())
        # The stalled clients were kept, not dropped: finishing a request gets its answer.
        for slow in stalled[::5]:
            slow.sock.sendall(slow.completion)
            reading = read_until(slow.sock, has_responses(1))
            assert [r.body for r in parse_responses(reading.raw)] == [slow.answer.encode()]
        ws_sock.sendall(frame(FIN | OP_TEXT, b"half a frame")[7:])
        reading = read_until(ws_sock, lambda raw: len(parse_frames(raw)) >= 1)
        assert [(f.op, f.payload) for f in parse_frames(reading.raw)] == [
            (OP_TEXT, b"half a frame")]
    finally:
        ws_sock.close()
        for slow in stalled:
            slow.sock.close()
    settle(hostile, errors_before)


def test_byte_at_a_time_client_interleaved_with_others(hostile: HostileServer) -> None:
    """A request trickled one byte per round trip of other clients still gets answered."""
    errors_before = len(hostile.errors)
    request = get(b"/trickled", headers=b"Connection: close\r\n")
    with connect(hostile) as slow:
        for i, byte in enumerate(request):
            slow.sendall(bytes([byte]))
            if i % 8 == 0:
                assert normal_request(hostile, f"/between-{i}").status == 200
        reading = read_until(slow, never)
    assert [r.body for r in parse_responses(reading.raw)] == [b"GET /trickled 0"]
    settle(hostile, errors_before)


def test_many_idle_connections(hostile: HostileServer) -> None:
    """Hundreds of silent connections cost the server nothing it cannot afford."""
    errors_before = len(hostile.errors)
    idle = [connect(hostile) for _ in range(300)]
    try:
        for i in range(5):
            assert normal_request(hostile, f"/busy-{i}").status == 200
    finally:
        for sock in idle:
            sock.close()
    settle(hostile, errors_before)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("stage", ["mid-request", "before-reading-big-answer",
                                   "mid-websocket-frame", "mid-chunked-body"])
def test_client_resets_connection(hostile: HostileServer, stage: str) -> None:
    """A client that resets its connection at any point leaves the server healthy."""
    errors_before = len(hostile.errors)
    sock = connect(hostile)
    if stage == "mid-request":
        sock.sendall(b"GET /reset HTTP/1.1\r\nHost")
    elif stage == "before-reading-big-answer":
        sock.sendall(get(b"/big") * 3)
        read_until(sock, lambda raw: len(raw) > 0)  # the server has started answering
    elif stage == "mid-websocket-frame":
        upgrade(sock)
        sock.sendall(frame(FIN | OP_BINARY, b"z" * 1000)[:500])
    else:
        sock.sendall(chunked(b"5\r\nab"))
    reset(sock)
    settle(hostile, errors_before)


def test_client_never_reads_its_answers(hostile: HostileServer) -> None:
    """Thousands of pipelined requests from a client that never reads, then vanishes."""
    errors_before, requests_before = len(hostile.errors), len(hostile.recorder.requests)
    with connect(hostile) as sock:
        port = sock.getsockname()[1]
        sock.sendall(get(b"/unread") * 3000)
        sock.sendall(get(b"/big") * 4)
        assert normal_request(hostile, "/still-serving").status == 200
    settle(hostile, errors_before)
    assert hostile.recorder.requests_from(port, requests_before), "no pipelined request arrived"


def test_concurrent_hostile_clients(hostile: HostileServer) -> None:
    """Many clients sending garbage at once, while normal requests keep being answered."""
    errors_before = len(hostile.errors)
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []
    garbage = [get(b"/a\x00"), post(b"x", b"Content-Length: -1\r\n"),
               chunked(b"zz\r\n"), b"\x16\x03\x01" + b"\x00" * 100,
               get(headers=b"Content-Length: 1\r\nContent-Length: 2\r\n") + b"xx"]

    def attack(payload: bytes) -> None:
        try:
            for _ in range(10):
                with connect(hostile) as sock:
                    send_quietly(sock, payload)
                    reading = read_until(sock, never)
                    assert reading.closed, f"{payload[:20]!r} left the connection open"
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    for payload in garbage * 2:
        thread = threading.Thread(target=attack, args=(payload,))
        threads.append(thread)
        thread.start()
    try:
        for i in range(20):
            assert normal_request(hostile, f"/during-{i}").status == 200
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    settle(hostile, errors_before)


# -- slow clients are cut off (Limits' timeouts) --------------------------------------------

#: Short timeouts keep these cases fast; the module's server keeps the defaults.
IMPATIENT = Limits(idle_timeout=0.4, request_timeout=0.4)
#: The trickle's pace: one byte per interval, far slower than the timeouts allow.
TRICKLE_INTERVAL = 0.05


@pytest.fixture(scope="module")
def impatient() -> Iterator[HostileServer]:
    """A server like the module's, with IMPATIENT limits."""
    recorder = Recorder()
    events = (MG_EV_ACCEPT, MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_WS_MSG, MG_EV_WS_CTL)
    with serving(recorder, events=events, limits=IMPATIENT) as server:
        yield HostileServer(server, recorder)


SLOW_CASES = {
    # name: (sent at once, then trickled one byte per interval, expected status or 0)
    "head-byte-by-byte": (b"", get(b"/slow", headers=padding_headers(100)), 408),
    "header-value-byte-by-byte": (b"GET /slow HTTP/1.1\r\nX-Slow: ", b"s" * 2000, 408),
    "body-byte-by-byte": (post(b"", b"Content-Length: 2000\r\n"), b"b" * 2000, 408),
    "chunks-byte-by-byte": (chunked(b""), b"1\r\nc\r\n" * 400, 408),
    "partial-head-then-silence": (b"GET /slow HTTP/1.1\r\nHost", b"", 408),
    "connect-then-silence": (b"", b"", 0),
    "keep-alive-then-silence": (get(b"/once"), b"", 0),
}


def trickle(sock: socket.socket, data: bytes) -> bool:
    """Send ``data`` one byte per TRICKLE_INTERVAL until the server speaks or closes;
    True if the server did so before the data ran out."""
    for i in range(len(data)):
        send_quietly(sock, data[i:i + 1])
        if select.select([sock], [], [], TRICKLE_INTERVAL)[0]:
            return True
    return not data


@pytest.mark.parametrize("name", list(SLOW_CASES))
def test_slow_client_is_cut_off(impatient: HostileServer, name: str) -> None:
    """Slowloris and idle clients: 408 where a request started, else a silent close,
    within bounded time; the handler never sees the slow request; others are served."""
    start, slow, status = SLOW_CASES[name]
    errors_before, requests_before = len(impatient.errors), len(impatient.recorder.requests)
    with connect(impatient) as sock:
        port = sock.getsockname()[1]
        send_quietly(sock, start)
        assert trickle(sock, slow), "the whole slow request went through"
        reading = read_until(sock, never)
    assert reading.closed, f"still open after {DEADLINE} s: {reading.raw[:200]!r}"
    statuses = [r.status for r in parse_responses(reading.raw)]
    served = [r.uri for r in impatient.recorder.requests_from(port, requests_before)]
    if name == "keep-alive-then-silence":
        assert (statuses, served) == ([200], ["/once"])
    else:
        assert statuses == ([status] if status else [])
        assert served == []
    settle(impatient, errors_before)

"""Error paths: bad URLs and arguments, closed objects, expired messages, failing handlers."""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
import websocket

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_READ,
    MG_EV_WAKEUP,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    Connection,
    ConnectionClosedError,
    HttpMessage,
    ListenError,
    Manager,
    ManagerClosedError,
    MessageExpiredError,
    PymongooseError,
    WsMessage,
)
from pymongoose._ffi import lib

TIMEOUT = 10.0

Record = tuple[Any, ...]
Handler = Callable[[Connection, int, Any], Any]


def poll_until(mgr: Manager, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        mgr.poll(20)


def ignore(conn: Connection, ev: int, data: Any) -> None:
    """A handler for connections whose events do not matter to the test."""


def ok_handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "ok")


@pytest.fixture
def mgr() -> Iterator[Manager]:
    """A Manager polled by the test itself, on the test's thread."""
    with Manager(ignore) as manager:
        yield manager


def port_of(conn: Connection) -> int:
    addr = conn.local_addr
    assert addr is not None
    return addr[1]


class RawHttpClient:
    """An HTTP client on a plain socket, for tests that poll the server themselves."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setblocking(False)
        self.received = b""

    def send(self, path: str) -> None:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    def poll_for(self, mgr: Manager, wanted: bytes) -> None:
        """Poll ``mgr`` until ``wanted`` has arrived on the socket."""
        def arrived() -> bool:
            with contextlib.suppress(BlockingIOError):
                self.received += self.sock.recv(65536)
            return wanted in self.received

        poll_until(mgr, arrived)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_client() -> Iterator[Callable[[int], RawHttpClient]]:
    clients: list[RawHttpClient] = []

    def open_client(port: int) -> RawHttpClient:
        clients.append(RawHttpClient(port))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


# -- listening and connecting -----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_busy_port_raises_listen_error_with_errno_and_url(mgr: Manager, scheme: str) -> None:
    port = port_of(mgr.listen(f"{scheme}://127.0.0.1:0"))
    url = f"{scheme}://127.0.0.1:{port}"
    with Manager() as other, pytest.raises(ListenError) as info:
        other.listen(url)
    assert isinstance(info.value, OSError)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, PymongooseError)
    assert info.value.errno == errno.EADDRINUSE
    assert url in str(info.value)


def test_udp_port_held_by_another_socket_raises_listen_error(mgr: Manager) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        url = f"udp://127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(ListenError, match=url) as info:
            mgr.listen(url)
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize(("url", "error", "fragment"), [
    ("nonsense", ListenError, "nonsense"),
    ("http://999.1.1.1:0", ListenError, "999.1.1.1"),
    ("http://", ValueError, "no address"),
    ("tcp://", ValueError, "no address"),
    ("ftp://127.0.0.1:0", ValueError, "unknown scheme 'ftp'"),
    ("http://127.0.0.1:99999", ValueError, "port"),
    ("http://127.0.0.1:http", ValueError, "port"),
    ("", ValueError, "empty"),
    ("http://127.0.0.1:0/a b", ValueError, "spaces"),
    ("udp://127.0.0.1:0", ValueError, "HTTP does not run over UDP"),  # http=True, below
])
def test_bad_listen_urls_are_refused_with_a_message(
        mgr: Manager, url: str, error: type[Exception], fragment: str) -> None:
    kwargs = {"http": True} if url.startswith("udp") else {}
    before = mgr.connections
    with pytest.raises(error) as info:
        mgr.listen(url, **kwargs)
    assert fragment in str(info.value)
    assert mgr.connections == before
    # The Manager is still usable.
    assert port_of(mgr.listen("http://127.0.0.1:0")) > 0


def test_listen_error_without_errno_is_einval(mgr: Manager) -> None:
    with pytest.raises(ListenError) as info:
        mgr.listen("nonsense")
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("url", [8080, None, b"http://127.0.0.1:0"])
def test_non_str_urls_raise_type_error(mgr: Manager, url: Any) -> None:
    with pytest.raises(TypeError, match="must be str"):
        mgr.listen(url)
    with pytest.raises(TypeError, match="must be str"):
        mgr.connect(url)
    with pytest.raises(TypeError, match="must be str"):
        mgr.ws_connect(url)


@pytest.mark.parametrize(("url", "fragment"), [
    ("ftp://127.0.0.1:21", "unknown scheme"),
    ("tcp://", "no address"),
    ("tcp://127.0.0.1:70000", "port"),
    ("tcp://127.0.0.1:1 ", "spaces"),
])
def test_bad_connect_urls_raise_value_error(mgr: Manager, url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        mgr.connect(url)
    assert mgr.connections == ()


def test_ws_connect_needs_a_websocket_url(mgr: Manager) -> None:
    with pytest.raises(ValueError, match="ws://"):
        mgr.ws_connect("tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="line break"):
        mgr.ws_connect("ws://127.0.0.1:1/", headers={"X-Evil": "a\r\nInjected: yes"})
    assert mgr.connections == ()


def test_refused_connection_reports_mg_ev_error_then_closes(mgr: Manager) -> None:
    got: list[Record] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_CONNECT, MG_EV_ERROR, MG_EV_CLOSE):
            got.append((ev, data))

    # A bound socket that does not listen: connecting to it is refused at once.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        conn = mgr.connect(f"tcp://127.0.0.1:{unused.getsockname()[1]}", client)
        poll_until(mgr, lambda: (MG_EV_CLOSE, None) in got)
    assert [ev for ev, _ in got] == [MG_EV_ERROR, MG_EV_CLOSE]
    message = got[0][1]
    assert isinstance(message, str) and message
    assert conn.is_closed


# -- bad arguments ------------------------------------------------------------------------


BAD_CALLS: list[tuple[str, Callable[[Connection, HttpMessage], Any], type[Exception], str]] = [
    ("reply_status_str", lambda c, m: c.reply("200"), TypeError, "status_code must be int"),
    ("reply_status_range", lambda c, m: c.reply(99), ValueError, "between 100 and 999"),
    ("reply_body_int", lambda c, m: c.reply(200, 123), TypeError, "body must be bytes or str"),
    ("reply_header_crlf", lambda c, m: c.reply(200, "x", {"X-A": "b\r\nInjected: 1"}),
     ValueError, "line break"),
    ("reply_header_lf_name", lambda c, m: c.reply(200, "x", {"X-A\nInjected": "1"}),
     ValueError, "line break"),
    ("reply_header_cr", lambda c, m: c.reply(200, "x", [("X-A", "b\rc")]),
     ValueError, "line break"),
    ("reply_content_length", lambda c, m: c.reply(200, "x", {"Content-Length": "9"}),
     ValueError, "Content-Length"),
    ("reply_headers_str", lambda c, m: c.reply(200, "x", "X-A: b"), TypeError, "headers"),
    ("reply_json_status", lambda c, m: c.reply_json({}, "200"), ValueError, "status_code"),
    ("reply_json_unserialisable", lambda c, m: c.reply_json(object()), TypeError, "JSON"),
    ("ws_send_int", lambda c, m: c.ws_send(123), TypeError, "data must be bytes or str"),
    ("ws_send_op", lambda c, m: c.ws_send("x", 99), ValueError, "WEBSOCKET_OP_"),
    ("send_int", lambda c, m: c.send(123), TypeError, "data must be bytes or str"),
    ("ws_upgrade_not_message", lambda c, m: c.ws_upgrade("GET /"), TypeError, "HttpMessage"),
    ("ws_upgrade_header_crlf", lambda c, m: c.ws_upgrade(m, {"X": "a\nb"}),
     ValueError, "line break"),
    ("serve_dir_not_message", lambda c, m: c.serve_dir(None, "."), TypeError, "HttpMessage"),
    ("header_name_int", lambda c, m: m.header(5), TypeError, "header name must be str"),
    ("query_var_int", lambda c, m: m.query_var(5), TypeError, "must be str"),
    ("set_handler_not_callable", lambda c, m: c.set_handler(5), TypeError, "callable"),
    ("set_handler_events_int", lambda c, m: c.set_handler(ignore, events=MG_EV_READ),
     TypeError, "iterable"),
]


@pytest.mark.parametrize(("name", "call", "error", "fragment"), BAD_CALLS,
                         ids=[case[0] for case in BAD_CALLS])
def test_bad_arguments_inside_a_handler_raise_with_a_message(
        serve: Callable[..., Any], name: str, call: Callable[[Connection, HttpMessage], Any],
        error: type[Exception], fragment: str) -> None:
    caught: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            try:
                call(conn, data)
            except Exception as exc:
                caught.append(exc)
            conn.reply(200, "still fine")

    with serve(handler) as server:
        response = requests.get(server.url + "/", timeout=TIMEOUT)
        assert server.errors == []
    # Nothing half-written reached the client: the reply after the error is intact.
    assert response.status_code == 200
    assert response.text == "still fine"
    assert len(caught) == 1
    assert isinstance(caught[0], error)
    assert fragment in str(caught[0])


@pytest.mark.parametrize(("timeout", "error"), [
    ("x", TypeError), (1.5, TypeError), (None, TypeError), (True, TypeError), (-1, ValueError),
])
def test_poll_checks_its_timeout(mgr: Manager, timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout_ms"):
        mgr.poll(timeout)
    mgr.poll(0)


def test_manager_and_listen_check_handlers_and_events(mgr: Manager) -> None:
    with pytest.raises(TypeError, match="handler must be callable"):
        Manager(handler=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="error_handler must be callable"):
        Manager(error_handler="log")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler must be callable"):
        mgr.listen("tcp://127.0.0.1:0", "not a handler")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        mgr.listen("tcp://127.0.0.1:0", ignore, events=MG_EV_READ)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MG_EV_"):
        mgr.listen("tcp://127.0.0.1:0", ignore, events=("read",))  # type: ignore[list-item]
    assert mgr.connections == ()


def test_poll_from_inside_a_handler_is_refused(mgr: Manager, raw_client: Any) -> None:
    caught: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            try:
                mgr.poll(0)
            except RuntimeError as exc:
                caught.append(exc)
            conn.reply(200, "done")

    client = raw_client(port_of(mgr.listen("http://127.0.0.1:0", handler)))
    client.send("/")
    client.poll_for(mgr, b"done")
    assert len(caught) == 1
    assert "inside an event handler" in str(caught[0])


# -- closed objects ---------------------------------------------------------------------


def test_a_closed_manager_refuses_everything_and_closes_twice() -> None:
    closed: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CLOSE:
            closed.append(conn.id)

    mgr = Manager(handler, enable_wakeup=True)
    listener = mgr.listen("tcp://127.0.0.1:0")
    mgr.close()
    assert mgr.closed
    assert closed == [listener.id]
    assert listener.is_closed
    assert mgr.connections == ()
    assert "closed" in repr(mgr)
    calls: list[Callable[[], Any]] = [
        lambda: mgr.poll(),
        lambda: mgr.poll(10),
        lambda: mgr.listen("http://127.0.0.1:0"),
        lambda: mgr.connect("tcp://127.0.0.1:1"),
        lambda: mgr.ws_connect("ws://127.0.0.1:1/"),
        lambda: mgr.wakeup(1, b"x"),
        lambda: mgr.wakeup_id,
    ]
    for call in calls:
        with pytest.raises(ManagerClosedError, match="closed"):
            call()
    mgr.close()
    mgr.close()
    assert closed == [listener.id]
    with pytest.raises(ManagerClosedError, match="closed"):
        mgr.run()  # like poll(): a closed Manager cannot run




def test_manager_closed_error_is_a_runtime_error() -> None:
    assert issubclass(ManagerClosedError, RuntimeError)
    assert issubclass(ConnectionClosedError, RuntimeError)
    assert issubclass(MessageExpiredError, RuntimeError)


def test_connection_methods_after_close_raise(mgr: Manager) -> None:
    kept: list[Connection] = []
    closed: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            kept.append(conn)
        elif ev == MG_EV_CLOSE:
            closed.append(conn.id)

    listener = mgr.listen("tcp://127.0.0.1:0", handler)
    with socket.create_connection(("127.0.0.1", port_of(listener)), timeout=TIMEOUT):
        poll_until(mgr, lambda: bool(kept))
        conn = kept[0]
        assert not conn.is_closed
    poll_until(mgr, lambda: conn.id in closed)

    assert conn.is_closed and conn.is_closing
    calls: list[Callable[[], Any]] = [
        lambda: conn.send(b"x"),
        lambda: conn.reply(200, "x"),
        lambda: conn.reply_json({}),
        lambda: conn.ws_send("x"),
        lambda: conn.drain(),
        lambda: conn.set_handler(ignore),
    ]
    for call in calls:
        with pytest.raises(ConnectionClosedError, match=f"connection {conn.id} is closed"):
            call()
    conn.close()  # closing what is closed is harmless
    assert conn.local_addr is None and conn.remote_addr is None
    # Reading the buffers of a closed connection finds them empty (as cymongoose does):
    # consistent with recv_len and send_len, and with no memory behind them to read.
    assert conn.recv_len == conn.send_len == 0
    assert conn.recv_data() == conn.recv_data(consume=True) == conn.send_data() == b""
    assert conn not in mgr.connections


# -- expired message views --------------------------------------------------------------


HTTP_ACCESSORS: list[tuple[str, Callable[[HttpMessage], Any]]] = [
    ("method", lambda m: m.method),
    ("uri", lambda m: m.uri),
    ("query", lambda m: m.query),
    ("proto", lambda m: m.proto),
    ("body_bytes", lambda m: m.body_bytes),
    ("body_text", lambda m: m.body_text),
    ("head_bytes", lambda m: m.head_bytes),
    ("header", lambda m: m.header("Host")),
    ("headers", lambda m: m.headers()),
    ("query_var", lambda m: m.query_var("a")),
    ("body_var", lambda m: m.body_var("a")),
    ("header_var", lambda m: m.header_var("Content-Type", "charset")),
    ("status", lambda m: m.status()),
]

WS_ACCESSORS: list[tuple[str, Callable[[WsMessage], Any]]] = [
    ("data", lambda m: m.data),
    ("text", lambda m: m.text),
    ("flags", lambda m: m.flags),
    ("op", lambda m: m.op),
]


def test_http_message_kept_past_its_handler_expires(serve: Callable[..., Any]) -> None:
    kept: list[HttpMessage] = []
    inside: list[Record] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            kept.append(data)
            inside.append((data.is_valid, data.uri, data.query_var("a"), data.body_bytes))
            conn.reply(200, "ok")

    with serve(handler) as server:
        response = requests.post(server.url + "/kept?a=1", data=b"body", timeout=TIMEOUT)
    assert response.status_code == 200
    assert inside == [(True, "/kept", "1", b"body")]
    message = kept[0]
    assert not message.is_valid
    assert not message
    assert "expired" in repr(message)
    for _, access in HTTP_ACCESSORS:
        with pytest.raises(MessageExpiredError, match="only valid inside"):
            access(message)


def test_ws_messages_kept_past_their_handler_expire(serve: Callable[..., Any]) -> None:
    kept: dict[str, Any] = {}

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_OPEN:
            kept["open"] = data
        elif ev == MG_EV_WS_MSG:
            kept["msg"] = data
            conn.ws_send(data.data, data.op)

    with serve(handler) as server:
        ws = websocket.create_connection(server.ws_url + "/ws", timeout=TIMEOUT)
        try:
            ws.send("keep me")
            assert ws.recv() == "keep me"
        finally:
            ws.close()
    ws_message = kept["msg"]
    assert isinstance(ws_message, WsMessage)
    assert not ws_message.is_valid
    assert "expired" in repr(ws_message)
    for _, access in WS_ACCESSORS:
        with pytest.raises(MessageExpiredError):
            access(ws_message)
    open_message = kept["open"]
    assert isinstance(open_message, HttpMessage)
    assert not open_message.is_valid
    for _, access_http in HTTP_ACCESSORS:
        with pytest.raises(MessageExpiredError):
            access_http(open_message)


def test_expired_message_cannot_be_served_or_upgraded(serve: Callable[..., Any]) -> None:
    kept: list[HttpMessage] = []
    caught: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if kept:  # the first request's message, long gone
                for use in (lambda: conn.ws_upgrade(kept[0]),
                            lambda: conn.serve_dir(kept[0], ".")):
                    try:
                        use()
                    except MessageExpiredError as exc:
                        caught.append(exc)
            kept.append(data)
            conn.reply(200, "ok")

    with serve(handler) as server:
        requests.get(server.url + "/first", timeout=TIMEOUT)
        requests.get(server.url + "/second", timeout=TIMEOUT)
    assert len(caught) == 2


# -- failing handlers ---------------------------------------------------------------------


class Boom(Exception):
    """What the failing handlers raise."""


def failing_on(path: str, boom: BaseException) -> Handler:
    """An HTTP handler that raises ``boom`` (without replying) for ``path``."""
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == path:
                raise boom
            conn.reply(200, f"served {data.uri}")
    return handler


def test_handler_exception_reaches_error_handler_and_loop_goes_on(raw_client: Any) -> None:
    boom = Boom("handler failed")
    errors: list[BaseException] = []
    with Manager(failing_on("/boom", boom), error_handler=errors.append) as mgr:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        raw_client(port).send("/boom")
        poll_until(mgr, lambda: bool(errors))
        assert errors == [boom]
        assert errors[0] is boom
        assert errors[0].__traceback__ is not None

        client = raw_client(port)
        client.send("/next")
        client.poll_for(mgr, b"served /next")
        assert errors == [boom]


def test_handler_exception_without_error_handler_is_logged_with_traceback(
        raw_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    boom = Boom("logged, not lost")
    caplog.set_level(logging.ERROR, logger="pymongoose")
    with Manager(failing_on("/boom", boom)) as mgr:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        raw_client(port).send("/boom")
        poll_until(mgr, lambda: any(r.exc_info for r in caplog.records))
        client = raw_client(port)
        client.send("/after")
        client.poll_for(mgr, b"served /after")
    records = [r for r in caplog.records if r.name == "pymongoose"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1] is boom
    assert "MG_EV_HTTP_MSG" in record.getMessage()
    assert "Traceback" in caplog.text
    assert "Boom: logged, not lost" in caplog.text


def test_failing_error_handler_does_not_stop_the_loop(
        raw_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    boom = Boom("first failure")
    handled: list[BaseException] = []

    def broken_error_handler(exc: BaseException) -> None:
        handled.append(exc)
        raise RuntimeError("the error handler broke too")

    caplog.set_level(logging.ERROR, logger="pymongoose")
    with Manager(failing_on("/boom", boom), error_handler=broken_error_handler) as mgr:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        raw_client(port).send("/boom")
        poll_until(mgr, lambda: len(caplog.records) >= 2)
        client = raw_client(port)
        client.send("/after")
        client.poll_for(mgr, b"served /after")
    assert handled == [boom]
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any(isinstance(exc, RuntimeError) and "broke too" in str(exc) for exc in logged)
    assert boom in logged


def test_exception_in_a_raw_handler_leaves_other_connections_working(
        serve: Callable[..., Any]) -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_READ:
            data = conn.recv_data(consume=True)
            if data == b"fail":
                raise Boom("raw handler failed")
            conn.send(data)

    with serve(handler, "tcp://127.0.0.1:0") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as bad:
            bad.sendall(b"fail")
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as good:
                good.sendall(b"echo")
                assert good.recv(4) == b"echo"
            bad.sendall(b"also")  # the failing connection itself still works too
            assert bad.recv(4) == b"also"
        assert len(server.errors) == 1
        assert isinstance(server.errors[0], Boom)


# -- closing from inside, run(), context manager -------------------------------------------


def test_closing_the_manager_from_a_handler(raw_client: Any) -> None:
    closed: list[int] = []
    holder: list[Manager] = []
    closed_inside: list[bool] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            holder[0].close()
            closed_inside.append(holder[0].closed)
        elif ev == MG_EV_CLOSE:
            closed.append(conn.id)

    mgr = Manager(handler)
    holder.append(mgr)
    listener = mgr.listen("http://127.0.0.1:0")
    client = raw_client(port_of(listener))
    client.send("/close-please")
    poll_until(mgr, lambda: mgr.closed)
    assert closed_inside == [False]  # close() took effect when poll() returned
    assert listener.id in closed
    assert len(closed) == 2  # the listener and the accepted connection
    with pytest.raises(ManagerClosedError):
        mgr.poll(0)
    client.sock.setblocking(True)
    # An unread request makes the kernel reset the stream rather than end it.
    with contextlib.suppress(ConnectionResetError):
        assert client.sock.recv(1) == b""


@pytest.mark.timeout(60)
def test_run_returns_when_a_handler_closes_the_manager(raw_client: Any) -> None:
    holder: list[Manager] = []
    seen: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.append(data.uri)
            holder[0].close()

    mgr = Manager(handler)
    holder.append(mgr)
    # The kernel accepts and buffers this request before run() starts polling.
    raw_client(port_of(mgr.listen("http://127.0.0.1:0"))).send("/stop")
    sigint_before = signal.getsignal(signal.SIGINT)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    mgr.run(poll_ms=20)
    assert seen == ["/stop"]
    assert mgr.closed
    assert signal.getsignal(signal.SIGINT) is sigint_before
    assert signal.getsignal(signal.SIGTERM) is sigterm_before


@pytest.mark.timeout(60)
def test_run_in_a_worker_thread_returns_too(raw_client: Any) -> None:
    holder: list[Manager] = []
    failures: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            holder[0].close()

    mgr = Manager(handler)
    holder.append(mgr)
    raw_client(port_of(mgr.listen("http://127.0.0.1:0"))).send("/stop")

    def run() -> None:
        try:
            mgr.run(poll_ms=20)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive()
    assert failures == []
    assert mgr.closed


def test_manager_as_a_context_manager() -> None:
    closed: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CLOSE:
            closed.append(conn.id)

    with Manager(handler) as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0")
        assert not mgr.closed
        assert mgr.connections == (listener,)
    assert mgr.closed
    assert closed == [listener.id]
    assert listener.is_closed

    with pytest.raises(Boom), Manager(handler) as failing:
        failing.listen("tcp://127.0.0.1:0")
        raise Boom("leaving the block early")
    assert failing.closed


# -- wakeup -------------------------------------------------------------------------------


def test_wakeup_from_another_thread_delivers_bytes() -> None:
    got: list[Record] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            got.append((conn.id, data))

    with Manager(handler, enable_wakeup=True) as mgr:
        assert mgr.wakeup_id > 0
        listener = mgr.listen("tcp://127.0.0.1:0")
        sent: queue.Queue[bool] = queue.Queue()

        def from_thread() -> None:
            sent.put(mgr.wakeup(listener.id, b"bytes \x00\xff"))
            sent.put(mgr.wakeup(listener.id, "text ✓"))
            sent.put(mgr.wakeup(listener.id))

        worker = threading.Thread(target=from_thread)
        worker.start()
        poll_until(mgr, lambda: len(got) == 3)
        worker.join(TIMEOUT)
        assert [sent.get_nowait() for _ in range(3)] == [True, True, True]
    assert got == [
        (listener.id, b"bytes \x00\xff"),
        (listener.id, "text ✓".encode()),
        (listener.id, b""),
    ]


def wakeup_payloads(sizes: list[int]) -> list[bytes]:
    """Deliver one wakeup of each size to a listener; what its handler received."""
    got: list[bytes] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            got.append(data)

    with Manager(handler, enable_wakeup=True) as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0")
        for sent, size in enumerate(sizes, 1):
            assert mgr.wakeup(listener.id, bytes(i % 251 for i in range(size)))
            poll_until(mgr, lambda n=sent: len(got) == n)
    return got


def test_wakeup_payload_arrives_whole() -> None:
    sizes = [1, 1000, 8 * 1024]
    assert wakeup_payloads(sizes) == [bytes(i % 251 for i in range(n)) for n in sizes]


def test_wakeup_carries_the_largest_payload_it_accepts() -> None:
    largest = lib.PYMG_WAKEUP_MAX
    assert wakeup_payloads([largest]) == [bytes(i % 251 for i in range(largest))]


def test_wakeup_refuses_a_payload_over_its_limit() -> None:
    with Manager(ignore, enable_wakeup=True) as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0")
        with pytest.raises(ValueError, match=f"limited to {lib.PYMG_WAKEUP_MAX} bytes"):
            mgr.wakeup(listener.id, b"x" * (lib.PYMG_WAKEUP_MAX + 1))


@pytest.mark.parametrize(("conn_id", "data", "error"), [
    (0, b"", ValueError), (-3, b"", ValueError), ("1", b"", ValueError),
    (1, 123, TypeError), (1, bytearray(b"x"), TypeError),
])
def test_wakeup_checks_its_arguments(conn_id: Any, data: Any, error: type[Exception]) -> None:
    with Manager(ignore, enable_wakeup=True) as mgr, pytest.raises(error):
        mgr.wakeup(conn_id, data)


def test_wakeup_without_enable_wakeup_says_how_to_enable_it(mgr: Manager) -> None:
    assert mgr.wakeup_id == 0
    listener = mgr.listen("tcp://127.0.0.1:0")
    # cymongoose returns False here; pymongoose also warns, saying what to enable.
    with pytest.warns(RuntimeWarning, match="enable_wakeup=True"):
        assert mgr.wakeup(listener.id, b"x") is False


"""Name resolution: Manager(dns_server=..., dns_timeout_ms=...), connect() by host name,
Connection.resolve / resolve_cancel, MG_EV_RESOLVE, and bad DNS answers.

The DNS server is dnsmasq on 127.0.0.1 (no upstream, no hosts file) or, for bad
answers, a scripted UDP responder (tests/net_helpers.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_helpers import dnsmasq, ntp_reply, poll_until, udp_responder
from subprocess_helpers import run_to_end

from pymongoose import (
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_SNTP_TIME,
    Connection,
    ConnectionClosedError,
    Manager,
    event_name,
)
from pymongoose import dns as dns_module

NAME = "some.test.name"
OTHER = "other.test.name"


@pytest.fixture(scope="module")
def dns_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """dnsmasq answering NAME and OTHER with 127.0.0.1, nothing else."""
    with dnsmasq(tmp_path_factory.mktemp("dnsmasq"), {NAME: "127.0.0.1",
                                                      OTHER: "127.0.0.1"}) as port:
        yield port


class Recorder:
    """Every event but MG_EV_POLL, with the remote address at that moment."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if event_name(ev) != "MG_EV_POLL":
            self.events.append((event_name(ev), data, conn.remote_addr))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.events]

    def of(self, name: str) -> list[tuple[Any, Any]]:
        return [(data, addr) for n, data, addr in self.events if n == name]

    @property
    def closed(self) -> bool:
        return "MG_EV_CLOSE" in self.names()


def test_connect_by_name_reaches_our_own_server(dns_port: int) -> None:
    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, f"hello {data.header('Host')}")

    answers: list[str] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        client_events.append(event_name(ev))
        if ev == MG_EV_CONNECT:
            peers.append(conn.remote_addr)
            conn.send(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            answers.append(data.body_text)
            conn.close()

    client_events: list[str] = []
    peers: list[Any] = []
    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        listener = mgr.listen("http://127.0.0.1:0", server)
        port = listener.local_addr[1]  # type: ignore[index]
        mgr.connect(f"http://{NAME}:{port}/", client)
        poll_until(mgr, lambda: bool(answers), what="the HTTP answer")
    assert peers == [("127.0.0.1", port, False)]
    assert answers == [f"hello {NAME}"]
    assert client_events.index("MG_EV_RESOLVE") < client_events.index("MG_EV_CONNECT")


def test_resolve_retargets_a_connection(dns_port: int) -> None:
    recorder = Recorder()
    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        conn = mgr.connect("udp://127.0.0.1:9", recorder)
        assert recorder.names() == ["MG_EV_OPEN", "MG_EV_RESOLVE", "MG_EV_CONNECT"]
        recorder.events.clear()
        conn.resolve(f"udp://{NAME}:7")
        assert recorder.events == []  # asynchronous: the answer comes in a poll
        poll_until(mgr, lambda: "MG_EV_CONNECT" in recorder.names())
        assert recorder.of("MG_EV_RESOLVE") == [(None, ("127.0.0.1", 7, False))]
        assert conn.remote_addr == ("127.0.0.1", 7, False)
        assert not conn.is_closing


def test_resolve_moves_a_tcp_client_to_another_server(dns_port: int) -> None:
    seen: list[tuple[int, str]] = []

    def server_for(tag: int) -> Callable[[Connection, int, Any], None]:
        def handler(conn: Connection, ev: int, data: Any) -> None:
            if ev == MG_EV_HTTP_MSG:
                seen.append((tag, data.uri))
                conn.reply(200, "ok")
        return handler

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            conn.send(f"GET /{len(seen)} HTTP/1.1\r\nHost: x\r\n\r\n")

    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        first = mgr.listen("http://127.0.0.1:0", server_for(1)).local_addr[1]  # type: ignore[index]
        second = mgr.listen("http://127.0.0.1:0", server_for(2)).local_addr[1]  # type: ignore[index]
        conn = mgr.connect(f"http://{NAME}:{first}", client)
        poll_until(mgr, lambda: len(seen) == 1)
        conn.resolve(f"http://{OTHER}:{second}")
        poll_until(mgr, lambda: len(seen) == 2)
    assert seen == [(1, "/0"), (2, "/1")]


def test_an_unknown_name_gives_a_clear_error(dns_port: int) -> None:
    recorder = Recorder()
    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        mgr.connect("tcp://unknown.test.name:80", recorder)
        poll_until(mgr, lambda: recorder.closed)
    assert recorder.of("MG_EV_ERROR") == [("unknown.test.name DNS lookup failed",
                                           ("0.0.0.0", 80, False))]
    assert "MG_EV_RESOLVE" not in recorder.names()
    assert "MG_EV_CONNECT" not in recorder.names()


def test_resolve_of_an_unknown_name_errors_and_closes(dns_port: int) -> None:
    recorder = Recorder()
    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        conn = mgr.connect("udp://127.0.0.1:9", recorder)
        conn.resolve("udp://nowhere.test.name:9")
        poll_until(mgr, lambda: recorder.closed)
    assert [d for d, _ in recorder.of("MG_EV_ERROR")] == ["nowhere.test.name DNS lookup failed"]


def test_resolve_cancel_stops_the_lookup(dns_port: int) -> None:
    cancelled, control = Recorder(), Recorder()
    with Manager(dns_server=f"udp://127.0.0.1:{dns_port}", dns_timeout_ms=200) as mgr:
        conn = mgr.connect(f"udp://{NAME}:9", cancelled)
        conn.resolve_cancel()
        # Asked after the cancelled one, of the same server: once this one has its
        # answer, the cancelled query's answer has come (and been dropped) too.
        mgr.connect(f"udp://{NAME}:9", control)
        poll_until(mgr, lambda: "MG_EV_RESOLVE" in control.names())
        fired: list[bool] = []
        mgr.timer_add(400, lambda: fired.append(True))  # past the lookup timeout
        poll_until(mgr, lambda: bool(fired), what="the timer")
        assert cancelled.names() == ["MG_EV_OPEN"]  # no RESOLVE, ERROR or timeout
        assert not conn.is_closing
        conn.resolve(f"udp://{NAME}:11")  # it can still be resolved again
        poll_until(mgr, lambda: "MG_EV_RESOLVE" in cancelled.names())
        assert conn.remote_addr == ("127.0.0.1", 11, False)


def test_lookup_times_out_when_the_server_is_silent() -> None:
    recorder = Recorder()
    with udp_responder(lambda query: None) as silent, \
            Manager(dns_server=silent.url, dns_timeout_ms=150) as mgr:
        mgr.connect(f"tcp://{NAME}:80", recorder)
        poll_until(mgr, lambda: recorder.closed)
        assert silent.requests  # it was asked
    assert [d for d, _ in recorder.of("MG_EV_ERROR")] == ["DNS timeout"]


# -- bad answers from a scripted server -------------------------------------------------

def a_record_answer(query: bytes, ip: bytes = b"\x7f\x00\x00\x01") -> bytes:
    """A well-formed answer to ``query`` with one A record."""
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    question = query[12:]
    return header + question + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + ip


BAD_ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda q: b"",
    "one byte": lambda q: b"\x01",
    "header only": lambda q: q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0),
    "truncated record": lambda q: a_record_answer(q)[:-3],
    "garbage": lambda q: os.urandom(100),
    "garbage with our id": lambda q: q[:2] + os.urandom(60),
    "65535 answers": lambda q: q[:2] + struct.pack("!HHHHH", 0x8180, 1, 0xFFFF, 0, 0) + q[12:],
    "oversized": lambda q: a_record_answer(q) + bytes(600),
    "record length beyond the end": lambda q: a_record_answer(q)[:-6] + b"\xff\xff\x7f\0\0\1",
}


@pytest.mark.parametrize("answer", list(BAD_ANSWERS), ids=list(BAD_ANSWERS))
def test_bad_answers_end_in_an_error(answer: str) -> None:
    recorder = Recorder()
    with udp_responder(BAD_ANSWERS[answer]) as fake, \
            Manager(dns_server=fake.url, dns_timeout_ms=150) as mgr:
        mgr.connect(f"udp://{NAME}:9", recorder)
        poll_until(mgr, lambda: recorder.closed)
    errors = [d for d, _ in recorder.of("MG_EV_ERROR")]
    assert len(errors) == 1 and ("DNS" in errors[0]), recorder.events
    assert "MG_EV_CONNECT" not in recorder.names()


def test_a_name_pointing_at_itself_is_not_followed() -> None:
    # The answer's name is a compression pointer to itself; Mongoose never follows a
    # pointer to a pointer, and takes the A record that comes after it.
    def answer(q: bytes) -> bytes:
        head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:]
        return head + b"\xc0" + bytes([len(head)]) + struct.pack("!HHIH", 1, 1, 60, 4) \
            + b"\x7f\0\0\1"

    recorder = Recorder()
    with udp_responder(answer) as fake, Manager(dns_server=fake.url) as mgr:
        mgr.connect(f"udp://{NAME}:9", recorder)
        poll_until(mgr, lambda: "MG_EV_RESOLVE" in recorder.names())
    assert recorder.of("MG_EV_RESOLVE") == [(None, ("127.0.0.1", 9, False))]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300), keep_id=st.booleans())
def test_any_answer_resolves_or_errors_never_crashes(body: bytes, keep_id: bool) -> None:
    recorder = Recorder()

    def answer(query: bytes) -> bytes:
        return query[:2] + body if keep_id else body

    with udp_responder(answer) as fake, \
            Manager(dns_server=fake.url, dns_timeout_ms=100) as mgr:
        mgr.connect(f"udp://{NAME}:9", recorder)
        poll_until(mgr, lambda: recorder.closed or "MG_EV_RESOLVE" in recorder.names())
    assert len(recorder.of("MG_EV_RESOLVE")) + len(recorder.of("MG_EV_ERROR")) == 1


# -- configuration ----------------------------------------------------------------------

def test_dns_server_and_timeout_are_configurable() -> None:
    with Manager(dns_server="udp://127.0.0.1:5353", dns_timeout_ms=1234) as mgr:
        assert mgr.dns_server == "udp://127.0.0.1:5353"
        assert mgr.dns_timeout_ms == 1234
        mgr.dns_timeout_ms = 50
        assert mgr.dns_timeout_ms == 50
        mgr.dns_server = "udp://[::1]:53"
        assert mgr.dns_server == "udp://[::1]:53"


def test_changing_the_server_sends_later_lookups_there(dns_port: int) -> None:
    recorder = Recorder()
    with udp_responder(lambda query: None) as silent, \
            Manager(dns_server=silent.url, dns_timeout_ms=150) as mgr:
        mgr.connect(f"udp://{NAME}:9", Recorder())
        with pytest.raises(RuntimeError, match="in progress"):
            mgr.dns_server = f"udp://127.0.0.1:{dns_port}"
        poll_until(mgr, lambda: not mgr.connections)  # the first lookup timed out
        mgr.dns_server = f"udp://127.0.0.1:{dns_port}"
        mgr.connect(f"udp://{NAME}:9", recorder)
        poll_until(mgr, lambda: "MG_EV_RESOLVE" in recorder.names())
        assert len(silent.requests) == 1


@pytest.mark.parametrize("url", ["8.8.8.8", "udp://8.8.8.8", "tcp://127.0.0.1:53",
                                 "udp://dns.example:53", "udp://127.0.0.1:0",
                                 "udp://127.0.0.1:99999", "udp://[::1:53"])
def test_bad_dns_server_urls_raise(url: str) -> None:
    with pytest.raises(ValueError, match="udp://"):
        Manager(dns_server=url)
    with Manager() as mgr, pytest.raises(ValueError, match="udp://"):
        mgr.dns_server = url


@pytest.mark.parametrize(("timeout", "error"), [(0, ValueError), (-5, ValueError),
                                                (True, TypeError), (1.5, TypeError)])
def test_bad_dns_timeouts_raise(timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="dns_timeout_ms"):
        Manager(dns_timeout_ms=timeout)
    with Manager() as mgr, pytest.raises(error, match="dns_timeout_ms"):
        mgr.dns_timeout_ms = timeout


def test_resolve_refuses_listeners_and_accepted_connections() -> None:
    with Manager() as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0")
        with pytest.raises(ValueError, match="client connections"):
            listener.resolve("tcp://127.0.0.1:1")
        conn = mgr.connect("udp://127.0.0.1:9")
        with pytest.raises(ValueError, match="URL"):
            conn.resolve("udp://bad url")
        conn.close()
        with pytest.raises(ConnectionClosedError, match="closing"):
            conn.resolve("udp://127.0.0.1:9")
        mgr.poll(0)
        with pytest.raises(ConnectionClosedError):
            conn.resolve_cancel()


def test_the_default_server_comes_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver fe80::1%eth0\n"
                    "nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert dns_module.system_server(str(conf)) == "udp://192.0.2.53:53"
    conf.write_text("nameserver 2001:db8::1\n")
    assert dns_module.system_server(str(conf)) == "udp://[2001:db8::1]:53"
    conf.write_text("options ndots:2\n")
    assert dns_module.system_server(str(conf)) is None
    assert dns_module.system_server(str(tmp_path / "missing")) is None
    with Manager() as mgr:
        expected = dns_module.system_server() or dns_module.DEFAULT_SERVER
        assert mgr.dns_server == expected


def test_sntp_server_by_name(dns_port: int) -> None:
    times: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_SNTP_TIME:
            times.append(data)

    with udp_responder(lambda req: ntp_reply(req, 1_700_000_000_000)) as server, \
            Manager(dns_server=f"udp://127.0.0.1:{dns_port}") as mgr:
        conn = mgr.sntp_connect(f"udp://{NAME}:{server.port}", handler)
        assert conn.sntp_request() is False  # still resolving: the request waits
        poll_until(mgr, lambda: conn.is_closed)
    assert len(times) == 1 and times[0] >= 1_700_000_000_000


def test_example_looks_names_up(dns_port: int) -> None:
    done = run_to_end("examples/dns_lookup.py", NAME, "unknown.test.name", "127.0.0.1",
                      "--dns-server", f"udp://127.0.0.1:{dns_port}")
    assert done.returncode == 1, done.stderr  # one of them failed
    lines = set(done.stdout.splitlines())
    assert lines == {f"{NAME} 127.0.0.1", "127.0.0.1 127.0.0.1",
                     "unknown.test.name error: unknown.test.name DNS lookup failed"}
    ok = run_to_end("examples/dns_lookup.py", NAME, OTHER,
                    "--dns-server", f"udp://127.0.0.1:{dns_port}")
    assert ok.returncode == 0 and sorted(ok.stdout.splitlines()) == [
        f"{OTHER} 127.0.0.1", f"{NAME} 127.0.0.1"]



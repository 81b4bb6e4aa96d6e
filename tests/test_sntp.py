"""SNTP client: Manager.sntp_connect, Connection.sntp_request, MG_EV_SNTP_TIME.

The server is a scripted UDP responder on 127.0.0.1 (tests/net_helpers.py) that
answers NTP v4 requests with a known time, or with whatever a test wants.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_helpers import ntp_reply, poll_until, udp_responder
from subprocess_helpers import run_to_end

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_SNTP_TIME,
    Connection,
    ConnectionClosedError,
    Manager,
    event_name,
)

#: 2023-11-14T22:13:20.123Z
KNOWN_MS = 1_700_000_000_123


class Recorder:
    """Collects the SNTP-relevant events of one connection."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_SNTP_TIME, MG_EV_ERROR, MG_EV_CLOSE):
            self.events.append((event_name(ev), data))

    @property
    def closed(self) -> bool:
        return any(name == "MG_EV_CLOSE" for name, _ in self.events)

    def of(self, name: str) -> list[Any]:
        return [data for n, data in self.events if n == name]


def exchange(url: str, timeout_ms: int = 3000) -> tuple[Recorder, float]:
    """Ask ``url`` for the time; the events seen and how long it took, in ms."""
    recorder = Recorder()
    with Manager() as mgr:
        started = time.monotonic()
        mgr.sntp_connect(url, recorder, timeout_ms=timeout_ms)
        poll_until(mgr, lambda: recorder.closed, what="MG_EV_CLOSE")
        elapsed_ms = (time.monotonic() - started) * 1000
    return recorder, elapsed_ms


def test_time_from_the_server_arrives_as_epoch_milliseconds() -> None:
    with udp_responder(lambda req: ntp_reply(req, KNOWN_MS)) as server:
        recorder, elapsed_ms = exchange(server.url)
        (request,) = server.requests
    (got,) = recorder.of("MG_EV_SNTP_TIME")
    assert isinstance(got, int)
    # The server's time plus half the round trip, which is no longer than the exchange.
    assert KNOWN_MS <= got <= KNOWN_MS + elapsed_ms + 1
    assert recorder.of("MG_EV_ERROR") == []
    assert [n for n, _ in recorder.events] == ["MG_EV_SNTP_TIME", "MG_EV_CLOSE"]
    # An NTP v4 client request of 48 bytes.
    assert len(request) == 48 and request[0] & 7 == 3 and (request[0] >> 3) & 7 == 4


def test_time_after_2036_is_read_in_the_next_ntp_era() -> None:
    later = 2_200_000_000_000  # 2039: NTP seconds have wrapped past 2**32
    with udp_responder(lambda req: ntp_reply(req, later)) as server:
        recorder, elapsed_ms = exchange(server.url)
    (got,) = recorder.of("MG_EV_SNTP_TIME")
    assert later <= got <= later + elapsed_ms + 1


def test_sntp_request_resends_after_a_lost_datagram() -> None:
    answered: list[bytes] = []

    def answer_second(req: bytes) -> Optional[bytes]:
        answered.append(req)
        return ntp_reply(req, KNOWN_MS) if len(answered) >= 2 else None

    recorder = Recorder()
    with udp_responder(answer_second) as server, Manager() as mgr:
        conn = mgr.sntp_connect(server.url, recorder)
        poll_until(mgr, server.received.is_set, what="first request at the server")
        assert recorder.events == []  # lost: nothing happens yet
        assert conn.sntp_request() is True
        poll_until(mgr, lambda: recorder.closed)
    assert len(answered) == 2
    (got,) = recorder.of("MG_EV_SNTP_TIME")
    assert got >= KNOWN_MS


def test_requesting_again_at_once_still_gives_one_time() -> None:
    # cymongoose's documented pattern: sntp_connect() and then sntp_request().
    recorder = Recorder()
    with udp_responder(lambda req: ntp_reply(req, KNOWN_MS)) as server, Manager() as mgr:
        conn = mgr.sntp_connect(server.url, recorder)
        assert conn.sntp_request() is True
        poll_until(mgr, lambda: recorder.closed)
        assert conn.is_closed
        with pytest.raises(ConnectionClosedError):
            conn.sntp_request()
    assert len(recorder.of("MG_EV_SNTP_TIME")) == 1
    assert recorder.of("MG_EV_ERROR") == []


def test_no_answer_gives_an_error_after_the_timeout() -> None:
    with udp_responder(lambda req: None) as server:
        recorder, _ = exchange(server.url, timeout_ms=150)
    assert recorder.of("MG_EV_ERROR") == ["SNTP: no reply within 150 ms"]
    assert recorder.of("MG_EV_SNTP_TIME") == []


def _reply(**kwargs: Any) -> Any:
    return lambda req: ntp_reply(req, KNOWN_MS, **kwargs)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda req: b"\x24\x02", "SNTP: reply too short"),
        (lambda req: ntp_reply(req, KNOWN_MS)[:47], "SNTP: reply too short"),
        (_reply(first_byte=(4 << 3) | 3), "SNTP: not a server reply"),
        (_reply(first_byte=(4 << 3) | 5), "SNTP: not a server reply"),
        (_reply(first_byte=(0 << 3) | 4), "SNTP: unsupported NTP version"),
        (_reply(first_byte=(7 << 3) | 4), "SNTP: unsupported NTP version"),
        (_reply(stratum=0), "SNTP: kiss-o'-death from server"),
        (_reply(stratum=200), "SNTP: bad stratum in reply"),
        (_reply(first_byte=(3 << 6) | (4 << 3) | 4), "SNTP: server clock is not synchronised"),
        (lambda req: ntp_reply(req, KNOWN_MS)[:40] + bytes(8), "SNTP: reply has no time"),
        (lambda req: os.urandom(47), "SNTP: reply too short"),
    ],
    ids=["2-bytes", "47-bytes", "client-mode", "broadcast-mode", "version-0", "version-7",
         "kiss-of-death", "stratum-200", "unsynchronised", "zero-transmit-time", "garbage"],
)
def test_malformed_replies_give_an_error_and_close(answer: Any, message: str) -> None:
    with udp_responder(answer) as server:
        recorder, _ = exchange(server.url)
    assert recorder.of("MG_EV_ERROR") == [message]
    assert recorder.of("MG_EV_SNTP_TIME") == []
    assert recorder.events[-1] == ("MG_EV_CLOSE", None)


def test_a_reply_to_another_request_is_ignored() -> None:
    # Its origin time is not what we sent: a stray or forged datagram. Then silence.
    with udp_responder(_reply(origin=b"\x00\x00\x00\x01" + bytes(4))) as server:
        recorder, _ = exchange(server.url, timeout_ms=200)
    assert recorder.of("MG_EV_SNTP_TIME") == []
    assert recorder.of("MG_EV_ERROR") == ["SNTP: no reply within 200 ms"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(reply=st.binary(max_size=96), keep_origin=st.booleans())
def test_any_reply_ends_in_time_or_error_never_a_crash(reply: bytes,
                                                       keep_origin: bool) -> None:
    def answer(req: bytes) -> bytes:
        if keep_origin and len(reply) >= 48:  # make it look like an answer to us
            return reply[:24] + req[40:48] + reply[32:]
        return reply

    with udp_responder(answer) as server:
        recorder, _ = exchange(server.url, timeout_ms=100)
    outcomes = recorder.of("MG_EV_SNTP_TIME") + recorder.of("MG_EV_ERROR")
    # An empty datagram is end-of-stream to Mongoose: the connection just closes.
    assert len(outcomes) == (0 if reply == b"" else 1)
    if recorder.of("MG_EV_SNTP_TIME"):
        assert recorder.of("MG_EV_SNTP_TIME")[0] >= 0


def test_bad_arguments_raise() -> None:
    with Manager() as mgr:
        for url in ("tcp://127.0.0.1:123", "http://127.0.0.1", "127.0.0.1:123"):
            with pytest.raises(ValueError, match="udp://"):
                mgr.sntp_connect(url)
        with pytest.raises(TypeError):
            mgr.sntp_connect(b"udp://127.0.0.1:123")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout_ms"):
            mgr.sntp_connect("udp://127.0.0.1:123", timeout_ms=0)
        other = mgr.connect("udp://127.0.0.1:9")
        with pytest.raises(ValueError, match="sntp_connect"):
            other.sntp_request()


def test_the_port_defaults_to_123() -> None:
    with Manager() as mgr:
        conn = mgr.sntp_connect("udp://127.0.0.1")
        assert conn.remote_addr == ("127.0.0.1", 123, False)
        conn.close()


def test_example_prints_the_servers_time() -> None:
    with udp_responder(lambda req: ntp_reply(req, KNOWN_MS)) as server:
        done = run_to_end("examples/sntp_client.py", server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2023-11-14T22:13:20.")
    assert f"({KNOWN_MS // 1000}" in done.stdout


def test_example_reports_a_server_that_does_not_answer() -> None:
    with udp_responder(lambda req: None) as server:
        done = run_to_end("examples/sntp_client.py", server.url, "--timeout-ms", "200")
    assert done.returncode == 1
    assert "no reply within 200 ms" in done.stderr

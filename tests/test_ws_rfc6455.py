"""RFC 6455 rules the server enforces on what a client sends, driven with raw sockets:
the payload of a Close frame (section 5.5.1, 7.4) and UTF-8 in fragmented text
messages, checked as the fragments arrive (section 8.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from conftest import Server
from ws_frames import (
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    client_frame,
    close_payload,
    read_frames,
    read_frames_until_closed,
    upgrade,
)

from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, Connection


def echo_handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)
    elif ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, data.op)


@pytest.fixture
def server(serve: Callable[..., Any]) -> Iterator[Server]:
    with serve(echo_handler) as running:
        yield running
        assert running.errors == []


def close_answer(server: Server, frames: bytes) -> tuple[int, ...]:
    """Send ``frames`` after the upgrade; the opcodes and close codes of what the
    server sends back until it closes the connection."""
    sock, _, rest = upgrade(server.port)
    with sock:
        sock.sendall(frames)
        answer = read_frames_until_closed(sock, rest)
    return tuple(f.close_code if f.op == OP_CLOSE else -f.op for f in answer)


# -- Close frames (5.5.1, 7.4.1) -------------------------------------------------------

INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000,
                 2999, 5000, 65535]
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_with_a_code_no_endpoint_may_send_gets_1002(server: Server, code: int) -> None:
    frames = client_frame(FIN | OP_CLOSE, close_payload(code, b"bye"))
    assert close_answer(server, frames) == (1002,)


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_with_a_valid_code_is_answered_with_that_code(server: Server, code: int) -> None:
    frames = client_frame(FIN | OP_CLOSE, close_payload(code, "żegnaj".encode()))
    assert close_answer(server, frames) == (code,)


def test_close_without_payload_is_answered(server: Server) -> None:
    sock, _, rest = upgrade(server.port)
    with sock:
        sock.sendall(client_frame(FIN | OP_CLOSE))
        answer = read_frames_until_closed(sock, rest)
    assert [f.op for f in answer] == [OP_CLOSE]
    assert answer[0].payload in (b"", close_payload(1000))


def test_close_with_a_one_byte_payload_gets_1002(server: Server) -> None:
    assert close_answer(server, client_frame(FIN | OP_CLOSE, b"\x03")) == (1002,)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80",
                                    b"cut \xe2\x82", b"\xf4\x90\x80\x80"],
                         ids=["ff", "overlong", "surrogate", "truncated", "above-10ffff"])
def test_close_with_a_reason_that_is_not_utf8_gets_1007(server: Server, reason: bytes) -> None:
    assert close_answer(server, client_frame(FIN | OP_CLOSE, close_payload(1000, reason))) \
        == (1007,)


def test_messages_before_a_bad_close_are_still_answered(server: Server) -> None:
    frames = client_frame(FIN | OP_TEXT, b"first") + client_frame(FIN | OP_CLOSE,
                                                                 close_payload(1005))
    assert close_answer(server, frames) == (-OP_TEXT, 1002)


# -- UTF-8 in fragmented text messages (8.1): fail fast ------------------------------

@pytest.mark.parametrize("fragments", [
    [b"\xff"],
    [b"valid ", b"then \xc0\xaf overlong"],
    [b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xed\xa0\x80"],  # a surrogate
    [b"a\xf4\x90"],  # cannot start a code point below U+110000
    [b"\xe2\x82", b"x"],  # a code point cut, and not continued
    [b"\xf0", b"\x9f", b"\x98\x28"],
], ids=["first", "second", "surrogate", "above-10ffff-prefix", "cut-then-ascii",
        "four-byte-bad-last"])
def test_invalid_utf8_fails_at_the_fragment_that_makes_it_invalid(
        server: Server, fragments: list[bytes]) -> None:
    """The message stays unfinished (no FIN ever comes): the server must not wait."""
    sock, _, rest = upgrade(server.port)
    with sock:
        first, *more = fragments
        sock.sendall(client_frame(OP_TEXT, first)
                     + b"".join(client_frame(OP_CONTINUE, part) for part in more))
        answer = read_frames_until_closed(sock, rest)
    assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1007)]


def test_invalid_utf8_in_a_later_read_fails_then(server: Server) -> None:
    sock, _, rest = upgrade(server.port)
    with sock:
        sock.sendall(client_frame(OP_TEXT, b"caf\xc3"))
        sock.sendall(client_frame(FIN | OP_PING, b"p"))
        frames, rest = read_frames(sock, 1, rest)  # the prefix was fine: still serving
        assert [(f.op, f.payload) for f in frames] == [(OP_PONG, b"p")]
        sock.sendall(client_frame(OP_CONTINUE, b"\xa9 ok") + client_frame(OP_CONTINUE, b"\x80"))
        answer = read_frames_until_closed(sock, rest)
    assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1007)]


@pytest.mark.parametrize("fragments", [
    [b"\xce", b"\xba"],
    [b"\xf0\x9f", b"\x90", b"\xa2 turtle"],
    [b"", b"\xe4\xba", b"\x80", b""],
    [b"plain ascii ", b"and more"],
], ids=["two-byte-split", "four-byte-split", "with-empty-fragments", "ascii"])
def test_fragments_that_split_a_code_point_are_fine(server: Server,
                                                    fragments: list[bytes]) -> None:
    sock, _, rest = upgrade(server.port)
    with sock:
        first, *middle, last = fragments
        sock.sendall(client_frame(OP_TEXT, first)
                     + b"".join(client_frame(OP_CONTINUE, part) for part in middle))
        sock.sendall(client_frame(FIN | OP_PING, b"still there?"))
        frames, rest = read_frames(sock, 1, rest)
        assert [f.op for f in frames] == [OP_PONG]
        sock.sendall(client_frame(FIN | OP_CONTINUE, last))
        frames, rest = read_frames(sock, 1, rest)
        assert [(f.op, f.payload) for f in frames] == [(OP_TEXT, b"".join(fragments))]
        sock.sendall(client_frame(FIN | OP_CLOSE, close_payload(1000)))
        answer = read_frames_until_closed(sock, rest)
    assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1000)]


def test_binary_fragments_are_not_checked_as_utf8(server: Server) -> None:
    sock, _, rest = upgrade(server.port)
    with sock:
        sock.sendall(client_frame(OP_BINARY, b"\xff\xfe") + client_frame(FIN | OP_CONTINUE,
                                                                          b"\xc0"))
        frames, rest = read_frames(sock, 1, rest)
        assert [(f.op, f.payload) for f in frames] == [(OP_BINARY, b"\xff\xfe\xc0")]

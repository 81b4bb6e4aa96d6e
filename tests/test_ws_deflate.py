"""permessage-deflate (RFC 7692): negotiation, compressed messages both ways, the
frame rules that come with it, and the inflated-size limit.

Raw sockets check the wire against the RFC's text; the ``websockets`` library (which
speaks the extension) checks interoperability: its client against our server and
ASGI server, our client against its server, every parameter combination.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

import pytest
from asgi_helpers import running_asgi
from conftest import Server
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.sync.client import connect as ws_client
from websockets.sync.server import serve as ws_serve
from ws_frames import (
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    client_frame,
    close_payload,
    parse_frames,
    read_frames,
    read_frames_until_closed,
    response_header,
    upgrade,
)

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_CLOSE,
    WEBSOCKET_OP_TEXT,
    Connection,
    Limits,
    Manager,
)
from pymongoose.ws_deflate import (
    PerMessageDeflate,
    client_agree,
    client_offer,
    parse_extensions,
    server_agree,
)

TAIL = b"\x00\x00\xff\xff"
TIMEOUT = 10.0
Compression = Union[bool, PerMessageDeflate]
# websockets' keepalive thread trips over a threading race of PyPy 3.9 (its join()
# asserts); the tests exchange messages all the time anyway.
NO_PINGS: dict[str, Any] = {"ping_interval": None}


def deflate(data: bytes, compressor: Optional[Any] = None, bits: int = 15) -> bytes:
    """A message payload per RFC 7692 7.2.1: raw DEFLATE, sync flush, tail removed."""
    comp = compressor if compressor is not None else zlib.compressobj(wbits=-bits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload: bytes, decompressor: Optional[Any] = None) -> bytes:
    """RFC 7692 7.2.2: append the tail, inflate."""
    inflater = decompressor if decompressor is not None else zlib.decompressobj(-15)
    return inflater.decompress(payload + TAIL)  # type: ignore[no-any-return]


class Echo:
    """Upgrades with ``compression`` and echoes every message; records what it saw."""

    def __init__(self, compression: Compression = True) -> None:
        self.compression = compression
        self.messages: list[tuple[int, int, bytes]] = []  # (flags, op, data)
        self.classes: list[str] = []

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data, compression=self.compression)
            self.classes.append(type(conn).__name__)
        elif ev == MG_EV_WS_MSG:
            self.messages.append((data.flags, data.op, data.data))
            conn.ws_send(data.data, data.op)


@pytest.fixture
def echo_server(serve: Callable[..., Any]) -> Iterator[tuple[Server, Echo]]:
    echo = Echo()
    with serve(echo) as server:
        yield server, echo
        assert server.errors == []


# -- negotiation: the server's side (RFC 7692 5, 7.1) -----------------------------------

DEFAULTS = PerMessageDeflate()


@pytest.mark.parametrize(("offer", "answer"), [
    ("permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10"),
    ('permessage-deflate; client_max_window_bits="12"',
     "permessage-deflate; client_max_window_bits=12"),
    ("permessage-deflate; server_max_window_bits=11",
     "permessage-deflate; server_max_window_bits=11"),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover"),
    ("Permessage-Deflate ;Server_No_Context_Takeover ; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    # declined offers: the next one is taken (5: a server MUST decline these)
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate",
     "permessage-deflate"),
    ("permessage-deflate; unknown, permessage-deflate; server_max_window_bits=9",
     "permessage-deflate; server_max_window_bits=9"),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
     "permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; server_max_window_bits, permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; server_max_window_bits=16, permessage-deflate",
     "permessage-deflate"),
    ("permessage-deflate; server_max_window_bits=010, permessage-deflate",
     "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=7, permessage-deflate",
     "permessage-deflate"),
    ("permessage-deflate; server_no_context_takeover=1, permessage-deflate",
     "permessage-deflate"),
    ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"),
    # nothing we can take
    ("permessage-deflate; server_max_window_bits=8", None),
    ("x-webkit-deflate-frame", None),
    ("permessage-deflate; a=b", None),
    ("permessage-deflate; =", None),  # malformed: no extensions at all
    ('permessage-deflate; client_max_window_bits="1 0"', None),
    ("", None),
])
def test_server_answers_the_first_offer_it_can_honour(offer: str, answer: Optional[str]) -> None:
    agreed = server_agree([offer], DEFAULTS)
    assert (agreed.response if agreed is not None else None) == answer


def test_server_options_shape_the_answer() -> None:
    opts = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True,
                             server_max_window_bits=10, client_max_window_bits=11)
    agreed = server_agree(["permessage-deflate; client_max_window_bits"], opts)
    assert agreed is not None
    assert agreed.response == ("permessage-deflate; server_no_context_takeover; "
                               "client_no_context_takeover; server_max_window_bits=10; "
                               "client_max_window_bits=11")
    # A client that did not offer client_max_window_bits is never told one (7.1.2.2).
    agreed = server_agree(["permessage-deflate; server_max_window_bits=12"], opts)
    assert agreed is not None
    assert agreed.response == ("permessage-deflate; server_no_context_takeover; "
                               "client_no_context_takeover; server_max_window_bits=10")
    # The smaller of the two limits wins.
    agreed = server_agree(["permessage-deflate; server_max_window_bits=9; "
                           "client_max_window_bits=9"], opts)
    assert agreed is not None
    assert agreed.response.endswith("server_max_window_bits=9; client_max_window_bits=9")


def test_offers_split_over_header_lines_are_read_in_order() -> None:
    agreed = server_agree(["permessage-deflate; server_max_window_bits=8",
                           "permessage-deflate; server_max_window_bits=14"], DEFAULTS)
    assert agreed is not None and agreed.response.endswith("=14")


def test_extension_header_grammar() -> None:
    assert parse_extensions(['a; b="c" , d ;e=f', " , g"]) == [
        ("a", [("b", "c")]), ("d", [("e", "f")]), ("g", [])]
    for bad in ["a;", "a b", "a; b=", "a; b=\"c", "a; b=\"c d\"", ";a", "a,;b", "a=b"]:
        with pytest.raises(ValueError):
            parse_extensions([bad])


@pytest.mark.parametrize("bits", [0, 8, 16, True, "12"])
def test_options_refuse_window_sizes_zlib_cannot_use(bits: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        PerMessageDeflate(server_max_window_bits=bits)
    with pytest.raises((ValueError, TypeError)):
        PerMessageDeflate(client_max_window_bits=bits)


def test_compression_must_be_a_bool_or_options() -> None:
    manager = Manager()
    try:
        with pytest.raises(TypeError, match="PerMessageDeflate"):
            manager.ws_connect("ws://127.0.0.1:1/", compression="yes")  # type: ignore[arg-type]
    finally:
        manager.close()


# -- negotiation: the client's side ------------------------------------------------------

@pytest.mark.parametrize(("opts", "response", "expect"), [
    (DEFAULTS, "permessage-deflate", (15, False, 15, False)),
    (DEFAULTS, "permessage-deflate; client_max_window_bits=10", (10, False, 15, False)),
    (DEFAULTS, "permessage-deflate; server_max_window_bits=9", (15, False, 9, False)),
    (DEFAULTS, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     (15, True, 15, True)),
    (PerMessageDeflate(client_max_window_bits=12),
     "permessage-deflate; client_max_window_bits=11", (11, False, 15, False)),
    (PerMessageDeflate(server_max_window_bits=12, server_no_context_takeover=True),
     "permessage-deflate; server_max_window_bits=10; server_no_context_takeover",
     (15, False, 10, True)),
    (DEFAULTS, "", None),
])
def test_client_reads_the_servers_answer(opts: PerMessageDeflate, response: str,
                                         expect: Optional[tuple[int, bool, int, bool]]) -> None:
    agreed = client_agree([response] if response else [], opts)
    got = None if agreed is None else (agreed.send_bits, agreed.send_reset,
                                       agreed.recv_bits, agreed.recv_reset)
    assert got == expect


@pytest.mark.parametrize(("opts", "response"), [
    (DEFAULTS, "permessage-deflate; client_max_window_bits=8"),  # zlib cannot
    (DEFAULTS, "permessage-deflate; client_max_window_bits"),  # a response needs a value
    (DEFAULTS, "permessage-deflate; server_max_window_bits=7"),
    (DEFAULTS, "permessage-deflate; mystery"),
    (DEFAULTS, "permessage-deflate, permessage-deflate"),
    (DEFAULTS, "x-other"),
    (DEFAULTS, "permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
    (PerMessageDeflate(client_max_window_bits=10),
     "permessage-deflate; client_max_window_bits=12"),
    (PerMessageDeflate(server_max_window_bits=10), "permessage-deflate"),
    (PerMessageDeflate(server_max_window_bits=10),
     "permessage-deflate; server_max_window_bits=11"),
    (PerMessageDeflate(server_no_context_takeover=True), "permessage-deflate"),
    (DEFAULTS, "permessage-deflate; ="),
])
def test_client_refuses_answers_rfc7692_forbids(opts: PerMessageDeflate, response: str) -> None:
    with pytest.raises(ValueError):
        client_agree([response], opts)


# -- the wire, with raw sockets (RFC 7692 6, 7.2) --------------------------------------

def test_compressed_message_round_trip(echo_server: tuple[Server, Echo]) -> None:
    server, echo = echo_server
    sock, head, rest = upgrade(server.port, "permessage-deflate")
    numbers = " ".join(str(i * 7919 % 10007) for i in range(300))
    texts = [numbers, "żółw " * 40, numbers]  # the third repeats the first
    sizes = []
    with sock:
        assert response_header(head, "Sec-WebSocket-Extensions") == ["permessage-deflate"]
        ours, theirs = zlib.compressobj(wbits=-15), zlib.decompressobj(-15)
        for text in texts:
            sock.sendall(client_frame(FIN | RSV1 | OP_TEXT, deflate(text.encode(), ours)))
            frames, rest = read_frames(sock, 1, rest)
            assert frames[0].first_byte == FIN | RSV1 | OP_TEXT  # compressed too
            assert inflate(frames[0].payload, theirs) == text.encode()
            sizes.append(len(frames[0].payload))
    # The server kept its context: the repeat refers back to the first message.
    assert sizes[2] < len(deflate(numbers.encode())) // 10
    assert [(flags, op, data.decode()) for flags, op, data in echo.messages] == \
        [(FIN | OP_TEXT, OP_TEXT, text) for text in texts]


def test_uncompressed_messages_still_pass(echo_server: tuple[Server, Echo]) -> None:
    server, _ = echo_server
    sock, _, rest = upgrade(server.port, "permessage-deflate")
    with sock:
        sock.sendall(client_frame(FIN | OP_BINARY, b"\x00plain"))
        frames, rest = read_frames(sock, 1, rest)
        assert frames[0].first_byte == FIN | RSV1 | OP_BINARY
        assert inflate(frames[0].payload) == b"\x00plain"


@pytest.mark.parametrize("split", [1, 3, 100])
def test_fragmented_compressed_message(echo_server: tuple[Server, Echo], split: int) -> None:
    """RSV1 on the first frame only; the fragments together are one deflate stream."""
    server, _ = echo_server
    sock, _, rest = upgrade(server.port, "permessage-deflate; client_no_context_takeover")
    with sock:
        text = ("fragmented and compressed " * 200).encode()
        payload = deflate(text)
        parts = [payload[i:i + split] for i in range(0, len(payload), split)]
        frames = client_frame(RSV1 | OP_TEXT, parts[0])
        for i, part in enumerate(parts[1:], 2):
            frames += client_frame((FIN if i == len(parts) else 0) | OP_CONTINUE, part)
        if len(parts) == 1:
            frames += client_frame(FIN | OP_CONTINUE, b"")
        frames += client_frame(FIN | OP_PING, b"after")
        sock.sendall(frames)
        got, rest = read_frames(sock, 2, rest)
        got.sort(key=lambda f: f.op)  # Mongoose answers the PING in C, at once
        assert [f.op for f in got] == [OP_TEXT, OP_PONG]
        assert got[0].rsv1 and inflate(got[0].payload) == text


@pytest.mark.parametrize(("frames", "code"), [
    (client_frame(OP_TEXT, deflate(b"ab")) + client_frame(FIN | RSV1 | OP_CONTINUE, b""),
     1002),  # RSV1 on a continuation frame
    (client_frame(FIN | RSV1 | OP_PING, b"p"), 1002),  # on a control frame
    (client_frame(FIN | RSV2 | OP_TEXT, b"x"), 1002),  # RSV2 means nothing here
    (client_frame(FIN | RSV1 | RSV2 | OP_TEXT, deflate(b"x")), 1002),
    (client_frame(FIN | RSV1 | OP_TEXT, b"\xff\xff\xff garbage"), 1007),  # not deflate
    (client_frame(FIN | RSV1 | OP_TEXT, deflate(b"\xff\xfe not utf-8")), 1007),
    (client_frame(RSV1 | OP_TEXT, deflate(b"ok"))
     + client_frame(FIN | OP_CONTINUE, b"\x00\x00\xff"), 1007),  # a bad stream, fragmented
])
def test_frame_rules_of_a_negotiated_connection(echo_server: tuple[Server, Echo],
                                                frames: bytes, code: int) -> None:
    server, echo = echo_server
    sock, _, rest = upgrade(server.port, "permessage-deflate")
    with sock:
        sock.sendall(client_frame(FIN | RSV1 | OP_TEXT, deflate(b"fine")) + frames)
        answer = read_frames_until_closed(sock, rest)
    assert [(f.op, f.close_code if f.op == OP_CLOSE else None) for f in answer] == \
        [(OP_TEXT, None), (OP_CLOSE, code)]
    assert [data for _, _, data in echo.messages] == [b"fine"]


@pytest.mark.parametrize("offer", [None, "x-other", "permessage-deflate; server_max_window_bits=8"])
def test_rsv1_without_the_extension_fails_the_connection(echo_server: tuple[Server, Echo],
                                                         offer: Optional[str]) -> None:
    server, echo = echo_server
    sock, head, rest = upgrade(server.port, offer)
    with sock:
        assert response_header(head, "Sec-WebSocket-Extensions") == []
        sock.sendall(client_frame(FIN | RSV1 | OP_TEXT, deflate(b"compressed")))
        answer = read_frames_until_closed(sock, rest)
    assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1002)]
    assert echo.classes == ["Connection"]


def test_compression_false_answers_without_the_extension(serve: Callable[..., Any]) -> None:
    echo = Echo(compression=False)
    with serve(echo) as server:
        sock, head, rest = upgrade(server.port, "permessage-deflate; client_max_window_bits")
        with sock:
            assert response_header(head, "Sec-WebSocket-Extensions") == []
            sock.sendall(client_frame(FIN | OP_TEXT, b"plain"))
            frames, rest = read_frames(sock, 1, rest)
            assert [(f.first_byte, f.payload) for f in frames] == [(FIN | OP_TEXT, b"plain")]
            sock.sendall(client_frame(FIN | RSV1 | OP_TEXT, deflate(b"x")))
            answer = read_frames_until_closed(sock, rest)
        assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1002)]
        assert echo.classes == ["Connection"]
        assert server.errors == []


def test_an_application_answer_is_left_alone(serve: Callable[..., Any]) -> None:
    """A handler that answers the extension header itself keeps the connection plain."""
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data, {"Sec-WebSocket-Extensions": "x-custom"})
    with serve(handler) as server:
        sock, head, _ = upgrade(server.port, "permessage-deflate, x-custom")
        sock.close()
    assert response_header(head, "Sec-WebSocket-Extensions") == ["x-custom"]


def test_server_without_context_takeover_compresses_each_message_alone(
        serve: Callable[..., Any]) -> None:
    echo = Echo(PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=10))
    with serve(echo) as server:
        sock, head, rest = upgrade(server.port, "permessage-deflate")
        with sock:
            assert response_header(head, "Sec-WebSocket-Extensions") == [
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"]
            text = b"the same text again and again " * 20
            for _ in range(3):
                sock.sendall(client_frame(FIN | OP_TEXT, text))
                frames, rest = read_frames(sock, 1, rest)
                # a fresh inflater with a 2**10 window reads each message on its own
                assert inflate(frames[0].payload, zlib.decompressobj(-10)) == text
        assert server.errors == []


# -- the inflated-size limit -----------------------------------------------------------

LIMIT = 1 << 20


@contextlib.contextmanager
def traced_peak() -> Iterator[list[int]]:
    """The peak of Python's allocations during the block (empty on PyPy, which has
    no tracemalloc)."""
    peak: list[int] = []
    try:
        import tracemalloc
    except ImportError:
        yield peak
        return
    tracemalloc.start()
    try:
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def test_a_small_bomb_closes_with_1009_and_never_inflates_past_the_limit(
        serve: Callable[..., Any]) -> None:
    echo = Echo()
    bomb = deflate(bytes(64 << 20))  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < LIMIT // 8
    with serve(echo, limits=Limits(max_ws_message_size=LIMIT)) as server:
        sock, _, rest = upgrade(server.port, "permessage-deflate")
        with sock:
            sock.sendall(client_frame(FIN | RSV1 | OP_BINARY, deflate(bytes(LIMIT))))
            frames, rest = read_frames(sock, 1, rest)  # exactly the limit is fine
            assert inflate(frames[0].payload) == bytes(LIMIT)
            with traced_peak() as peak:
                sock.sendall(client_frame(FIN | RSV1 | OP_BINARY, bomb))
                answer = read_frames_until_closed(sock, rest)
        assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1009)]
        if peak:  # CPython: tracemalloc saw every allocation of the poll thread too
            assert peak[0] < 4 * LIMIT, f"{peak[0]} bytes allocated while inflating the bomb"
        assert len(echo.messages) == 1
        assert server.errors == []


def test_the_limit_counts_a_fragmented_message_whole(serve: Callable[..., Any]) -> None:
    echo = Echo()
    payload = deflate(bytes(4 * LIMIT))
    with serve(echo, limits=Limits(max_ws_message_size=LIMIT)) as server:
        sock, _, rest = upgrade(server.port, "permessage-deflate")
        with sock:
            half = len(payload) // 2
            sock.sendall(client_frame(RSV1 | OP_BINARY, payload[:half])
                         + client_frame(FIN | OP_CONTINUE, payload[half:]))
            answer = read_frames_until_closed(sock, rest)
        assert [(f.op, f.close_code) for f in answer] == [(OP_CLOSE, 1009)]
        assert echo.messages == []


# -- the websockets library's client against our servers --------------------------------

CLIENT_OFFERS = [
    dict(server_no_context_takeover=snct, client_no_context_takeover=cnct,
         server_max_window_bits=sbits, client_max_window_bits=cbits)
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), (None, 9, 12, 15), (None, True, 9, 15))
]
SERVER_OPTIONS = {
    "defaults": PerMessageDeflate(),
    "all-set": PerMessageDeflate(server_no_context_takeover=True,
                                 client_no_context_takeover=True,
                                 server_max_window_bits=10, client_max_window_bits=11),
}


def offer_id(offer: dict[str, Any]) -> str:
    return "-".join(f"{key.replace('_context_takeover', '').replace('_max_window_bits', '')}"
                    f"={value}" for key, value in offer.items() if value not in (None, False)
                    ) or "plain"


MESSAGES: list[Union[str, bytes]] = ["hi", "żółw 🐢 " * 500, bytes(range(256)) * 300, "",
                                     "hi", b"\x00" * 100_000]


def exchange(ws: Any) -> None:
    """Echo MESSAGES, then one fragmented text and one fragmented binary message."""
    for message in MESSAGES:
        ws.send(message)
        assert ws.recv(timeout=TIMEOUT) == message
    ws.send(iter(["frag", "mented ", "text " * 1000]))
    assert ws.recv(timeout=TIMEOUT) == "fragmented " + "text " * 1000
    ws.send(iter([b"\x01" * 70_000, b"", b"\x02" * 10]))
    assert ws.recv(timeout=TIMEOUT) == b"\x01" * 70_000 + b"\x02" * 10


@pytest.mark.parametrize("server_opts", list(SERVER_OPTIONS.values()), ids=list(SERVER_OPTIONS))
@pytest.mark.parametrize("offer", CLIENT_OFFERS, ids=[offer_id(o) for o in CLIENT_OFFERS])
def test_websockets_client_against_our_server(serve: Callable[..., Any], offer: dict[str, Any],
                                              server_opts: PerMessageDeflate) -> None:
    echo = Echo(server_opts)
    with serve(echo) as server:
        with ws_client(server.ws_url + "/ws", **NO_PINGS, compression=None, max_size=None,
                       extensions=[ClientPerMessageDeflateFactory(**offer)]) as ws:
            answer = ws.response.headers.get("Sec-WebSocket-Extensions")
            exchange(ws)
        assert server.errors == []
    assert answer is not None and answer.startswith("permessage-deflate")
    assert echo.classes == ["DeflateConnection"]
    assert all(flags & RSV1 == 0 for flags, _, _ in echo.messages)  # the handler sees plain
    assert len(echo.messages) == len(MESSAGES) + 2


def test_websockets_client_bomb_against_our_server(serve: Callable[..., Any]) -> None:
    echo = Echo()
    with serve(echo, limits=Limits(max_ws_message_size=LIMIT)) as server:
        with ws_client(server.ws_url + "/ws", **NO_PINGS, max_size=None) as ws:
            ws.send(bytes(32 << 20))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
        assert server.errors == []
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert echo.messages == []


# -- our client against the websockets library's server ---------------------------------

SERVER_FACTORIES = [
    dict(server_no_context_takeover=snct, client_no_context_takeover=cnct,
         server_max_window_bits=sbits, client_max_window_bits=cbits)
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), (None, 10), (None, 9))
]
CLIENT_OPTIONS = {
    "defaults": PerMessageDeflate(),
    "no-takeover": PerMessageDeflate(server_no_context_takeover=True,
                                     client_no_context_takeover=True),
    "windows": PerMessageDeflate(server_max_window_bits=11, client_max_window_bits=12),
    "all-set": PerMessageDeflate(server_no_context_takeover=True,
                                 client_no_context_takeover=True,
                                 server_max_window_bits=9, client_max_window_bits=9, level=1,
                                 mem_level=2),
}


class TheirServer:
    """A websockets echo server in a thread; it records each request's offer."""

    def __init__(self, **factory: Any) -> None:
        self.offers: list[Optional[str]] = []
        self.close_codes: list[Optional[int]] = []
        self._ended = threading.Condition()
        extensions = [ServerPerMessageDeflateFactory(**factory)]
        self._server = ws_serve(self._handle, "127.0.0.1", 0, compression=None, **NO_PINGS,
                                extensions=extensions, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, ws: Any) -> None:
        self.offers.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        try:
            for message in ws:
                if message == "send me fragments":
                    ws.send(iter(["frag", "ment", "ed " * 3000]))
                elif message == "send me a bomb":
                    ws.send(bytes(32 << 20))
                else:
                    ws.send(message)
        except ConnectionClosed:
            pass
        with self._ended:
            self.close_codes.append(ws.close_code)
            self._ended.notify_all()

    def wait_close_codes(self, count: int) -> list[Optional[int]]:
        """The close codes of the first ``count`` sessions, once they have ended."""
        with self._ended:
            self._ended.wait_for(lambda: len(self.close_codes) >= count, TIMEOUT)
            return list(self.close_codes)

    def __enter__(self) -> TheirServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(TIMEOUT)


class OurClient:
    """A Manager's ws_connect() client, polled by the test: what it received."""

    def __init__(self, port: int, compression: Compression,
                 limits: Optional[Limits] = None) -> None:
        self.manager = Manager(limits=limits)
        self.received: list[tuple[int, bytes]] = []
        self.events: list[Any] = []
        self.opened = False
        self.closed = False
        self.conn = self.manager.ws_connect(f"ws://127.0.0.1:{port}/", self._handle,
                                            compression=compression)

    def _handle(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_OPEN:
            self.opened = True
            self.events.append(("open", data.header("Sec-WebSocket-Extensions")))
        elif ev == MG_EV_WS_MSG:
            self.received.append((data.flags, data.data))
        elif ev == MG_EV_WS_CTL and data.op == WEBSOCKET_OP_CLOSE:
            self.events.append(("close-frame", data.data))
        elif ev == MG_EV_ERROR:
            self.events.append(("error", data))
        elif ev == MG_EV_CLOSE:
            self.closed = True

    def poll_until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not done():
            assert time.monotonic() < deadline, f"timed out; events so far: {self.events}"
            self.manager.poll(10)

    def round_trip(self, message: Union[str, bytes]) -> bytes:
        count = len(self.received)
        op = WEBSOCKET_OP_TEXT if isinstance(message, str) else WEBSOCKET_OP_BINARY
        self.conn.ws_send(message, op)
        self.poll_until(lambda: len(self.received) > count or self.closed)
        assert len(self.received) == count + 1, self.events
        return self.received[-1][1]

    def close(self) -> None:
        if not self.conn.is_closed:
            self.conn.ws_send(close_payload(1000), WEBSOCKET_OP_CLOSE)
            self.poll_until(lambda: self.closed)
        self.manager.close()


@pytest.mark.parametrize("client_opts", list(CLIENT_OPTIONS.values()), ids=list(CLIENT_OPTIONS))
@pytest.mark.parametrize("factory", SERVER_FACTORIES, ids=[offer_id(f) for f in SERVER_FACTORIES])
def test_our_client_against_websockets_server(factory: dict[str, Any],
                                              client_opts: PerMessageDeflate) -> None:
    with TheirServer(**factory) as server:
        client = OurClient(server.port, client_opts)
        try:
            client.poll_until(lambda: client.opened or client.closed)
            answer = client.events[0][1]
            assert answer is not None and answer.startswith("permessage-deflate")
            assert type(client.conn).__name__ == "DeflateConnection"
            for message in MESSAGES:
                expect = message.encode() if isinstance(message, str) else message
                assert client.round_trip(message) == expect
            assert client.round_trip("send me fragments") == b"fragment" + b"ed " * 3000
            assert all(flags & RSV1 == 0 for flags, _ in client.received)
        finally:
            client.close()
    assert server.offers == [client_offer(client_opts)]
    assert server.wait_close_codes(1) == [1000]


def test_our_client_closes_a_bomb_with_1009() -> None:
    with TheirServer() as server:
        client = OurClient(server.port, True, Limits(max_ws_message_size=LIMIT))
        try:
            client.poll_until(lambda: client.opened or client.closed)
            client.conn.ws_send("send me a bomb")
            client.poll_until(lambda: client.closed)
        finally:
            client.manager.close()
    assert client.received == []
    assert server.wait_close_codes(1) == [1009]


def test_our_client_without_compression_offers_nothing() -> None:
    with TheirServer() as server:
        client = OurClient(server.port, False)
        try:
            client.poll_until(lambda: client.opened or client.closed)
            assert client.round_trip("plain") == b"plain"
            assert type(client.conn) is Connection
        finally:
            client.close()
    assert server.offers == [None]


class ScriptedServer:
    """Answers one WebSocket handshake with ``extensions`` as its header, then sends
    ``frames``; records what the client sent."""

    def __init__(self, extensions: str, frames: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self._answer = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n"
                        f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n").encode() + frames
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            while b"\r\n\r\n" not in self.received:
                self.received += conn.recv(65536)
            conn.sendall(self._answer)
            head_end = self.received.index(b"\r\n\r\n") + 4
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
                    frames = parse_frames(self.received[head_end:])[0]
                    if any(f.op == OP_CLOSE for f in frames):
                        break  # the client closed: so do we
            except OSError:
                pass

    def close(self) -> None:
        self._thread.join(TIMEOUT)
        self.sock.close()


@pytest.mark.parametrize("answer", ["permessage-deflate; client_max_window_bits=8",
                                    "permessage-deflate; bogus", "x-unknown",
                                    "permessage-deflate, permessage-deflate"])
def test_our_client_fails_on_an_answer_rfc7692_forbids(answer: str) -> None:
    server = ScriptedServer(answer)
    client = OurClient(server.port, True)
    try:
        client.poll_until(lambda: client.closed)
    finally:
        client.manager.close()
        server.close()
    assert not client.opened
    assert [kind for kind, _ in client.events] == ["error"]
    assert "permessage-deflate" in client.events[0][1]


def test_our_client_inflates_a_compressed_fragmented_message() -> None:
    payload = deflate(b"abc" * 1000)
    frames = (bytes([RSV1 | OP_TEXT, 10]) + payload[:10]
              + bytes([FIN | OP_CONTINUE, 126]) + len(payload[10:]).to_bytes(2, "big")
              + payload[10:])
    server = ScriptedServer("permessage-deflate", frames)
    client = OurClient(server.port, True)
    try:
        client.poll_until(lambda: len(client.received) == 1)
        client.conn.ws_send("reply " * 10)
    finally:
        client.close()
        server.close()
    # flags: the first frame's header byte, RSV1 taken off (as Mongoose, no FIN there)
    assert client.received == [(OP_TEXT, b"abc" * 1000)]
    # Our client's frames: masked (parse_frames unmasks), RSV1 on the compressed one.
    head_end = server.received.index(b"\r\n\r\n") + 4
    frames_sent = parse_frames(server.received[head_end:])[0]
    assert [(f.op, f.rsv1) for f in frames_sent] == [(OP_TEXT, True), (OP_CLOSE, False)]
    assert inflate(frames_sent[0].payload) == b"reply " * 10
    assert all(server.received[head_end + 1] & 0x80 for _ in [0])  # the mask bit


def test_our_client_inflates_an_empty_compressed_message() -> None:
    server = ScriptedServer("permessage-deflate", bytes([FIN | RSV1 | OP_TEXT, 0]))
    client = OurClient(server.port, True)
    try:
        client.poll_until(lambda: len(client.received) == 1 or client.closed)
    finally:
        client.close()
        server.close()
    # An empty compressed payload is an empty message (7.2.3.6 allows it).
    assert client.received == [(FIN | OP_TEXT, b"")]


# -- the ASGI server ----------------------------------------------------------------------

async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "bytes": message.get("bytes"),
                    "text": message.get("text")})


@pytest.mark.parametrize("offer", [CLIENT_OFFERS[0], CLIENT_OFFERS[-1]],
                         ids=["defaults", "all-set"])
def test_websockets_client_against_the_asgi_server(offer: dict[str, Any]) -> None:
    offered = ClientPerMessageDeflateFactory(**offer)
    with running_asgi(asgi_echo, lifespan=False) as running, \
            ws_client(running.ws_url + "/", **NO_PINGS, compression=None, max_size=None,
                      extensions=[offered]) as ws:
        answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        exchange(ws)
    assert answer is not None and answer.startswith("permessage-deflate")


def test_asgi_server_compression_off_answers_without_the_extension() -> None:
    with running_asgi(asgi_echo, lifespan=False, ws_compression=False) as running:
        sock, head, rest = upgrade(running.port, "permessage-deflate", path="/")
        with sock:
            assert response_header(head, "Sec-WebSocket-Extensions") == []
            sock.sendall(client_frame(FIN | OP_TEXT, b"plain"))
            frames, _ = read_frames(sock, 1, rest)
            assert [(f.first_byte, f.payload) for f in frames] == [(FIN | OP_TEXT, b"plain")]
        with ws_client(running.ws_url + "/", **NO_PINGS) as ws:  # websockets offers by default
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            ws.send("plain")
            assert ws.recv(timeout=TIMEOUT) == "plain"


def test_asgi_server_bomb_closes_with_1009() -> None:
    with running_asgi(asgi_echo, lifespan=False,
                      limits=Limits(max_ws_message_size=LIMIT)) as running, \
            ws_client(running.ws_url + "/", **NO_PINGS, max_size=None) as ws:
        ws.send(bytes(32 << 20))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_websockets_client_demanding_an_8_bit_window_gets_no_extension(
        serve: Callable[..., Any]) -> None:
    echo = Echo()
    with serve(echo) as server:
        offer = ClientPerMessageDeflateFactory(server_max_window_bits=8)
        with ws_client(server.ws_url + "/ws", **NO_PINGS, compression=None,
                       extensions=[offer]) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            ws.send("plain")
            assert ws.recv(timeout=TIMEOUT) == "plain"
        assert server.errors == []
    assert echo.classes == ["Connection"]


def test_a_new_handler_still_gets_messages_inflated(serve: Callable[..., Any]) -> None:
    """set_handler on a compressing connection (the ASGI server does it for flow
    control) keeps the inflating in front of the new handler."""
    seen: list[bytes] = []

    def later(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_MSG:
            seen.append(data.data)
            conn.ws_send(data.data.upper(), data.op)

    def first(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_OPEN:
            conn.set_handler(later, events=(MG_EV_WS_MSG,))
            assert conn.handler is later

    with serve(first) as server:
        sock, _, rest = upgrade(server.port, "permessage-deflate")
        with sock:
            sock.sendall(client_frame(FIN | RSV1 | OP_TEXT, deflate(b"quiet please")))
            frames, rest = read_frames(sock, 1, rest)
        assert server.errors == []
    assert seen == [b"quiet please"]
    assert frames[0].rsv1 and inflate(frames[0].payload) == b"QUIET PLEASE"

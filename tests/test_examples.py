"""The scripts in examples/ run as written: each as a child process on 127.0.0.1 port 0,
driven with a real client, then stopped with a signal (exit status 0).

Every test talks to the example before signalling it, so the signal arrives while
Manager.run() is polling with its handlers installed.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import requests
import websocket
from subprocess_helpers import REPO, run_to_end, running

from pymongoose import MG_EV_HTTP_MSG, MG_EV_READ, Connection

TIMEOUT = 10.0


def address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a printed URL; the port must be a real one, not 0."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port
    return parts.hostname, parts.port


def test_examples_folder_has_the_documented_scripts() -> None:
    names = {p.name for p in (REPO / "examples").glob("*.py")}
    assert names >= {"hello_http.py", "static_files.py", "websocket_echo.py",
                     "http_client.py", "tcp_echo.py", "udp_echo.py"}


def test_hello_http_replies_and_stops_on_sigint() -> None:
    with running("examples/hello_http.py", "http://127.0.0.1:0") as child:
        url = child.wait_for(r"Listening on (http://\S+)").group(1)
        address(url)
        for path in ("/", "/some/where?x=1"):
            response = requests.get(url + path, timeout=TIMEOUT)
            assert response.status_code == 200
            assert response.text == "Hello, World!"
        assert child.stop(signal.SIGINT) == 0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small folder to serve: an index page, a text file, a subfolder."""
    (tmp_path / "index.html").write_text("<h1>the index</h1>\n")
    (tmp_path / "notes.txt").write_text("plain notes\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.json").write_text('{"answer": 42}')
    return tmp_path


def test_static_files_serves_root_and_stops_on_sigterm(site: Path) -> None:
    with running("examples/static_files.py", "--listen", "http://127.0.0.1:0",
                 "--root", str(site)) as child:
        url = child.wait_for(r"on (http://\S+)").group(1)
        address(url)

        index = requests.get(url + "/", timeout=TIMEOUT)
        assert index.status_code == 200
        assert index.text == "<h1>the index</h1>\n"
        assert index.headers["Content-Type"].startswith("text/html")

        notes = requests.get(url + "/notes.txt", timeout=TIMEOUT)
        assert (notes.status_code, notes.text) == (200, "plain notes\n")
        assert notes.headers["Content-Type"].startswith("text/plain")

        data = requests.get(url + "/sub/data.json", timeout=TIMEOUT)
        assert data.json() == {"answer": 42}

        assert requests.get(url + "/missing.txt", timeout=TIMEOUT).status_code == 404
        assert child.stop(signal.SIGTERM) == 0


def test_static_files_refuses_a_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_to_end("examples/static_files.py", "http://127.0.0.1:0",
                        "--root", str(missing))
    assert result.returncode == 2
    assert "nowhere" in result.stderr


def test_websocket_echo_text_and_binary_then_sigint() -> None:
    with running("examples/websocket_echo.py", "--listen", "http://127.0.0.1:0") as child:
        ws_url = child.wait_for(r"(ws://\S+/ws)").group(1)
        host, port = address(ws_url)

        page = requests.get(f"http://{host}:{port}/", timeout=TIMEOUT)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "WebSocket" in page.text

        ws = websocket.create_connection(ws_url, timeout=TIMEOUT)
        try:
            ws.send("héllo")
            assert ws.recv() == "héllo"
            payload = bytes(range(256)) * 8
            ws.send_binary(payload)
            opcode, data = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            assert data == payload
        finally:
            ws.close()
        assert child.stop(signal.SIGINT) == 0


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        assert chunk, "the server closed the connection early"
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def test_tcp_echo_small_and_large_then_sigint() -> None:
    with running("examples/tcp_echo.py", "tcp://127.0.0.1:0") as child:
        addr = address(child.wait_for(r"(tcp://\S+)").group(1))
        with socket.create_connection(addr, timeout=TIMEOUT) as sock:
            sock.sendall(b"ping\n")
            assert recv_exactly(sock, 5) == b"ping\n"
            # Larger than any single socket buffer: echoed back piece by piece.
            big = bytes(range(251)) * 4000
            sock.sendall(big)
            assert recv_exactly(sock, len(big)) == big
        assert child.stop(signal.SIGINT) == 0


def test_udp_echo_answers_each_sender_then_sigterm() -> None:
    with running("examples/udp_echo.py", "--listen", "udp://127.0.0.1:0") as child:
        addr = address(child.wait_for(r"(udp://\S+)").group(1))
        # Two clients: each datagram must go back to the socket it came from.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two:
            for sock in (one, two):
                sock.settimeout(TIMEOUT)
                sock.bind(("127.0.0.1", 0))
            one.sendto(b"first", addr)
            two.sendto(b"second", addr)
            assert one.recvfrom(2048) == (b"first", addr)
            assert two.recvfrom(2048) == (b"second", addr)
        assert child.stop(signal.SIGTERM) == 0


def answer_with_request_line(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        if data.uri == "/missing":
            conn.reply(404, "no such thing")
        else:
            conn.reply(200, f"{data.method} {data.uri}?{data.query}\n",
                       headers={"X-Example": "yes"})


def test_http_client_prints_status_headers_and_body(serve: Callable[..., Any]) -> None:
    with serve(answer_with_request_line) as server:
        url = f"{server.url}/path/here?a=1"
        result = run_to_end("examples/http_client.py", url)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "X-Example: yes" in lines[1:]
    assert body == "GET /path/here?a=1\n"
    assert f"Content-Length: {len(body)}" in lines[1:]
    assert url in result.stderr  # the startup line
    assert not server.errors


def test_http_client_prints_an_error_status_and_still_succeeds(
        serve: Callable[..., Any]) -> None:
    with serve(answer_with_request_line) as server:
        result = run_to_end("examples/http_client.py", f"{server.url}/missing")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 404 Not Found\n")
    assert result.stdout.endswith("\n\nno such thing")


def answer_until_close(conn: Connection, ev: int, data: Any) -> None:
    """A raw TCP server whose response has no Content-Length: the body ends at close."""
    if ev == MG_EV_READ and b"\r\n\r\n" in conn.recv_data():
        conn.recv_data(consume=True)
        conn.send(b"HTTP/1.1 200 OK\r\nX-Framing: close\r\n\r\nbody ends when we close")
        conn.drain()


def test_http_client_reads_a_body_that_ends_at_close(serve: Callable[..., Any]) -> None:
    with serve(answer_until_close, "tcp://127.0.0.1:0") as server:
        result = run_to_end("examples/http_client.py", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200 OK\nX-Framing: close\n\n")
    assert result.stdout.endswith("\n\nbody ends when we close")


def never_answer(conn: Connection, ev: int, data: Any) -> None:
    """Accept, read and say nothing."""


def test_http_client_gives_up_after_its_timeout(serve: Callable[..., Any]) -> None:
    with serve(never_answer, "tcp://127.0.0.1:0") as server:
        result = run_to_end("examples/http_client.py", "--timeout", "0.5", f"{server.url}/")
    assert result.returncode == 1
    assert "no response within 0.5 s" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it),
    never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_http_client_fails_on_a_closed_port(refusing_port: int) -> None:
    url = f"http://127.0.0.1:{refusing_port}/"
    result = run_to_end("examples/http_client.py", url)
    assert result.returncode != 0
    assert f"error: {url}" in result.stderr
    assert result.stdout == ""

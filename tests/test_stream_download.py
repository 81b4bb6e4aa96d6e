"""A 200 MB HTTP response streamed to a deliberately slow client.

The server is examples/stream_download.py in a child process: it produces data only
while its send buffer has room (send_len, MG_EV_WRITE / MG_EV_POLL), then drains. The
client has a small receive buffer and reads small pieces with pauses. Every byte must
arrive, and the server's resident memory (VmHWM, the peak, against VmRSS at start)
must stay far below the size of the download.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from subprocess_helpers import running

BLOCK = 64 * 1024
PATTERN = bytes(range(256)) * (BLOCK // 256)
SIZE = 200 * 1000 * 1000
MEMORY_BOUND = 64 * 1024 * 1024
TIMEOUT = 30.0


def expected_blocks(size: int) -> Iterator[bytes]:
    """The bytes the example promises: 64 KiB blocks, each led by its index."""
    index = 0
    while size > 0:
        block = index.to_bytes(8, "big") + PATTERN[8:]
        yield block[:size]
        size -= BLOCK
        index += 1


def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class ChunkedReader:
    """Reads a chunked HTTP body from a socket in small pieces, with pauses."""

    def __init__(self, sock: socket.socket, piece: int, pause_every: int) -> None:
        self.sock = sock
        self.piece = piece
        self.pause_every = pause_every
        self.buffer = bytearray()
        self.reads = 0

    def _fill(self) -> None:
        data = self.sock.recv(self.piece)
        if not data:
            raise AssertionError("the server closed the connection early")
        self.buffer += data
        self.reads += 1
        if self.reads % self.pause_every == 0:
            time.sleep(0.005)  # a slow consumer: the server's buffers fill up meanwhile

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n")
        text = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return text

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


def test_a_slow_client_gets_every_byte_and_the_server_stays_small() -> None:
    with running("examples/stream_download.py", "http://127.0.0.1:0") as child:
        url = child.wait_for(r"Downloads on (http://\S+)/download").group(1)
        port = int(url.rsplit(":", 1)[1])
        pid = child.proc.pid
        baseline_kib = status_kib(pid, "VmRSS")

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        started = time.monotonic()
        with sock:
            sock.sendall(f"GET /download?size={SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reader = ChunkedReader(sock, piece=8192, pause_every=256)
            assert reader.line() == b"HTTP/1.1 200 OK"
            headers = {}
            while line := reader.line():
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            assert headers["transfer-encoding"] == "chunked"
            assert "content-length" not in headers

            got, received = hashlib.sha256(), 0
            while True:
                length = int(reader.line().split(b";")[0], 16)
                if length == 0:
                    assert reader.line() == b""  # no trailers
                    break
                got.update(reader.exactly(length))
                received += length
                assert reader.line() == b""
            # drain(): the server closes once everything is sent.
            assert reader.buffer == b"" and sock.recv(1) == b""
        elapsed = time.monotonic() - started
        peak_kib = status_kib(pid, "VmHWM")
        assert child.stop(signal.SIGINT) == 0

    expected = hashlib.sha256()
    for block in expected_blocks(SIZE):
        expected.update(block)
    assert received == SIZE
    assert got.hexdigest() == expected.hexdigest()
    growth = (peak_kib - baseline_kib) * 1024
    print(f"\n200 MB to a slow client in {elapsed:.1f} s ({reader.reads} reads); server RSS "
          f"{baseline_kib // 1024} MiB at start, peak {peak_kib // 1024} MiB")
    assert growth < MEMORY_BOUND, f"server memory grew by {growth / 2**20:.1f} MiB"


def test_small_downloads_and_bad_sizes() -> None:
    with running("examples/stream_download.py", "http://127.0.0.1:0") as child:
        url = child.wait_for(r"Downloads on (http://\S+)/download").group(1)
        for size in (1, 8, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17):
            response = requests.get(f"{url}/download?size={size}", timeout=TIMEOUT)
            assert response.status_code == 200
            assert response.content == b"".join(expected_blocks(size))
        assert requests.get(f"{url}/download?size=-1", timeout=TIMEOUT).status_code == 400
        assert requests.get(f"{url}/download?size=x", timeout=TIMEOUT).status_code == 400
        assert requests.get(f"{url}/other", timeout=TIMEOUT).status_code == 404
        assert child.stop(signal.SIGTERM) == 0

"""Peers for the SNTP and DNS tests: a UDP responder we script, and dnsmasq.

Everything listens on 127.0.0.1. The UDP responder runs in a thread and answers each
datagram with whatever its ``answer(request)`` returns (None: no answer); dnsmasq
runs in the foreground on a free port, with no upstream servers and no hosts file.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from _tools import require

from pymongoose import Manager

TIMEOUT = 10.0
NTP_UNIX_OFFSET = 2208988800


def poll_until(manager: Manager, done: Callable[[], bool], timeout: float = TIMEOUT,
               what: str = "the expected event") -> None:
    """Poll ``manager`` until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        manager.poll(20)


class UdpResponder:
    """A UDP server on 127.0.0.1 whose answers a test decides."""

    def __init__(self, answer: Callable[[bytes], Optional[bytes]]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.received = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.requests.append(data)
            self.received.set()
            reply = self.answer(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT)
        self.sock.close()


@contextlib.contextmanager
def udp_responder(answer: Callable[[bytes], Optional[bytes]]) -> Iterator[UdpResponder]:
    """A :class:`UdpResponder` for the duration of the block."""
    responder = UdpResponder(answer)
    try:
        yield responder
    finally:
        responder.close()


def ntp_timestamp(unix_ms: int) -> bytes:
    """An NTP timestamp (seconds since 1900, 32-bit fraction) for ``unix_ms``."""
    seconds, millis = divmod(unix_ms, 1000)
    return struct.pack("!II", (seconds + NTP_UNIX_OFFSET) & 0xFFFFFFFF,
                       (millis << 32) // 1000)


def ntp_reply(request: bytes, unix_ms: int, *, first_byte: int = (0 << 6) | (4 << 3) | 4,
              stratum: int = 2, origin: Optional[bytes] = None) -> bytes:
    """An NTP v4 server reply to ``request`` saying it is ``unix_ms`` now."""
    stamp = ntp_timestamp(unix_ms)
    echoed = request[40:48] if origin is None else origin
    return (bytes([first_byte, stratum, 6, 0xEC]) + bytes(8) + b"TEST" + stamp + echoed
            + stamp + stamp)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (for daemons that need one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dns_answers(port: int, name: str) -> bool:
    """Whether a DNS server on 127.0.0.1:port answers an A query for ``name``."""
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(query, ("127.0.0.1", port))
            reply = sock.recv(512)
        except OSError:
            return False
    return reply[:2] == b"\x12\x34"


@contextlib.contextmanager
def dnsmasq(tmp_path: Path, names: dict[str, str]) -> Iterator[int]:
    """dnsmasq answering ``names`` (name -> IPv4) on 127.0.0.1; yields its port."""
    binary = require("dnsmasq")
    for _attempt in range(5):
        port = free_udp_port()
        log = tmp_path / f"dnsmasq-{port}.log"
        args = [binary, "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--log-queries",
                "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}",
                f"--pid-file={tmp_path / f'dnsmasq-{port}.pid'}", f"--log-facility={log}"]
        args += [f"--address=/{name}/{ip}" for name, ip in names.items()]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        probe = next(iter(names))
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and not _dns_answers(port, probe):
            if time.monotonic() > deadline:
                break
        if proc.poll() is None and _dns_answers(port, probe):
            try:
                yield port
            finally:
                proc.terminate()
                proc.wait(timeout=TIMEOUT)
                if proc.stderr is not None:
                    proc.stderr.close()
            return
        proc.kill()
        proc.wait(timeout=TIMEOUT)  # most likely the port was taken meanwhile: retry
        if proc.stderr is not None and _attempt < 4:
            proc.stderr.close()
    pytest.fail(f"dnsmasq did not start: {proc.stderr.read() if proc.stderr else ''}")

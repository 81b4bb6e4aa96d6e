"""Test certificates made with the openssl CLI, and a client Manager driven until done.

Shared by test_tls.py and test_tls_hostile.py. Everything lives in a temporary
folder; certificates are valid for a day and name 127.0.0.1 and localhost.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from _tools import require

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    Connection,
    Manager,
    TlsOpts,
)

SERVER_EXT = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=digitalSignature\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
)


def openssl(*args: str, cwd: Path) -> None:
    require("openssl")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def ec_key(folder: Path, name: str, curve: str = "prime256v1") -> Path:
    path = folder / name
    openssl("ecparam", "-name", curve, "-genkey", "-noout", "-out", str(path), cwd=folder)
    return path


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec_key(folder, f"{name}.key")
    crt = folder / f"{name}.crt"
    openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(crt), cwd=folder)
    return crt, key


def make_cert(folder: Path, name: str, ca: tuple[Path, Path], key: Path,
              san: str = "IP:127.0.0.1,DNS:localhost", cn: str = "localhost") -> Path:
    csr = folder / f"{name}.csr"
    crt = folder / f"{name}.crt"
    ext = folder / f"{name}.ext"
    ext.write_text(SERVER_EXT.replace("IP:127.0.0.1,DNS:localhost", san))
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr), cwd=folder)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-sha256", "-days", "1", "-extfile", str(ext),
            "-out", str(crt), cwd=folder)
    return crt


@dataclass
class Certs:
    """Paths of the test PKI: a CA, a server and a client signed by it, and a stranger."""

    folder: Path
    ca: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing we serve
    other_host_crt: Path  # signed by ca, but for other.test only
    rsa_crt: Path
    rsa_key: Path

    def server_opts(self, **kwargs: Any) -> TlsOpts:
        return TlsOpts(cert=self.server_crt.read_bytes(), key=self.server_key.read_bytes(),
                       **kwargs)

    def client_opts(self, **kwargs: Any) -> TlsOpts:
        return TlsOpts(ca=self.ca.read_bytes(), **kwargs)


def make_certs(folder: Path) -> Certs:
    ca = make_ca(folder, "test-ca")
    other = make_ca(folder, "other-ca")
    server_key = ec_key(folder, "server.key")
    server_crt = make_cert(folder, "server", ca, server_key)
    client_key = ec_key(folder, "client.key")
    client_crt = make_cert(folder, "client", ca, client_key, san="DNS:client.test",
                           cn="client.test")
    other_host_crt = make_cert(folder, "other-host", ca, server_key, san="DNS:other.test",
                               cn="other.test")
    rsa_key = folder / "rsa.key"
    openssl("genrsa", "-traditional", "-out", str(rsa_key), "2048", cwd=folder)
    rsa_crt = make_cert(folder, "rsa", ca, rsa_key)
    return Certs(folder, ca[0], server_crt, server_key, client_crt, client_key, other[0],
                 other_host_crt, rsa_crt, rsa_key)


def https_get(url: str, **kwargs: Any) -> requests.Response:
    """``requests.get`` (one attempt: every handshake must succeed)."""
    return requests.get(url, **kwargs)


def https_post(url: str, **kwargs: Any) -> requests.Response:
    """``requests.post`` (one attempt)."""
    return requests.post(url, **kwargs)


def run_tool(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` of a TLS client (curl, openssl), output captured as text."""
    require(args[0])
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The test PKI, made once per session."""
    require("openssl")
    return make_certs(tmp_path_factory.mktemp("tls"))


def client_hello(server_name: str = "localhost") -> bytes:
    """The first flight of a real TLS client (Python's ssl module): its ClientHello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    data = outgoing.read()
    assert data[:1] == b"\x16" and data[5:6] == b"\x01"
    return data


@dataclass
class ClientRun:
    """What a client connection saw: its events, errors, and the HTTP responses."""

    events: list[int]
    errors: list[str]
    bodies: list[bytes]
    statuses: list[Optional[int]]
    was_tls: list[bool]
    closed: bool = False


def fetch(url: str, tls: Optional[TlsOpts], *, late_init: Optional[TlsOpts] = None,
          timeout: float = 10.0,
          request: bytes = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n") -> ClientRun:
    """Connect with our own client, send one request, poll until the connection closes.

    The request is queued on MG_EV_CONNECT: Mongoose holds it until the TLS handshake
    is done. ``late_init`` is passed to ``tls_init`` right after ``connect``.
    """
    run = ClientRun([], [], [], [], [])

    def handler(conn: Connection, ev: int, data: Any) -> None:
        run.events.append(ev)
        if ev == MG_EV_CONNECT:
            conn.send(request)
        elif ev == MG_EV_ERROR:
            run.errors.append(data)
        elif ev == MG_EV_HTTP_MSG:
            run.bodies.append(data.body_bytes)
            run.statuses.append(data.status())
            run.was_tls.append(conn.is_tls)
            conn.close()
        elif ev == MG_EV_CLOSE:
            run.closed = True

    with Manager() as mgr:
        conn = mgr.connect(url, handler, tls=tls)
        if late_init is not None:
            conn.tls_init(late_init)
        deadline = time.monotonic() + timeout
        while not run.closed and time.monotonic() < deadline:
            mgr.poll(20)
    assert run.closed, f"the client connection did not close within {timeout} s: {run}"
    return run

"""TLS with Mongoose's built-in TLS 1.3 engine: HTTPS and WSS servers and clients.

Peers: requests, curl, openssl s_client, websocket-client, our own client, and a
server made with Python's ssl module. Certificates come from the openssl CLI (a test
CA, EC P-256 server and client certificates for 127.0.0.1 and localhost).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from _tools import require
from conftest import read_until_closed, serving
from tls_helpers import (
    Certs,
    certs,
    ec_key,
    fetch,
    https_get,
    https_post,
    openssl,
    run_tool,
)

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_TLS_HS,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_TEXT,
    Connection,
    Manager,
    TlsOpts,
)

TIMEOUT = 10.0
__all__ = ["certs"]  # the session fixture, imported from tls_helpers


def closed_without_answer(sock: socket.socket) -> bool:
    """True when the peer closes (or resets) ``sock`` without sending a byte."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def hello(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, f"hello {data.uri} tls={conn.is_tls}")


def ws_echo(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)
    elif ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, data.op)


@pytest.fixture
def https(certs: Certs) -> Iterator[str]:
    """An HTTPS hello server; yields its base URL."""
    with serving(hello, "https://127.0.0.1:0", tls=certs.server_opts()) as server:
        yield f"https://127.0.0.1:{server.port}"


# -- servers, driven by other clients -------------------------------------------------


def test_requests_verifies_our_server_with_the_test_ca(https: str, certs: Certs) -> None:
    response = https_get(https + "/a", verify=str(certs.ca), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == "hello /a tls=True"
    localhost = https.replace("127.0.0.1", "localhost")
    assert https_get(localhost + "/b", verify=str(certs.ca), timeout=TIMEOUT).ok


def test_requests_refuses_our_server_without_the_ca(https: str) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https, timeout=TIMEOUT)  # the system store does not know the test CA


def test_curl_with_cacert(https: str, certs: Certs) -> None:
    out = run_tool(["curl", "-sS", "--fail", "--max-time", "10", "--cacert", str(certs.ca),
                    https + "/curl"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello /curl tls=True"


def test_openssl_s_client_negotiates_tls13_and_verifies(https: str, certs: Certs) -> None:
    port = https.rsplit(":", 1)[1]
    out = run_tool(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(certs.ca),
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-servername", "localhost"],
        input="")
    assert "New, TLSv1.3, Cipher is TLS_" in out.stdout
    assert "Verify return code: 0 (ok)" in out.stdout


def test_openssl_s_client_refuses_tls12(https: str) -> None:
    require("openssl")
    port = https.rsplit(":", 1)[1]
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2"],
        input="", capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "TLSv1.2" not in out.stdout.replace("Protocol  : TLSv1.2", "")  # no session


def test_listener_tls_init_after_listen(certs: Certs) -> None:
    # The cymongoose way: listen, then tls_init on the listener, before polling.
    errors: list[BaseException] = []
    mgr = Manager(hello, error_handler=errors.append)
    try:
        listener = mgr.listen("https://127.0.0.1:0")
        listener.tls_init(certs.server_opts())
        assert listener.is_tls
        port = listener.local_addr[1]  # type: ignore[index]
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(https_get(
            f"https://localhost:{port}/x", verify=str(certs.ca), timeout=TIMEOUT)))
        thread.start()
        while thread.is_alive():
            mgr.poll(20)
        assert result[0].text == "hello /x tls=True"
    finally:
        mgr.close()
    assert errors == []


def test_plain_http_listener_made_tls(certs: Certs) -> None:
    with serving(hello, "http://127.0.0.1:0", tls=certs.server_opts()) as server:
        assert server.listener.is_tls
        response = https_get(f"https://127.0.0.1:{server.port}/p", verify=str(certs.ca),
                                timeout=TIMEOUT)
        assert response.text == "hello /p tls=True"


def test_websocket_client_over_wss(certs: Certs) -> None:
    with serving(ws_echo, "wss://127.0.0.1:0", tls=certs.server_opts()) as server:
        ws = websocket.create_connection(
            f"wss://127.0.0.1:{server.port}/ws", sslopt={"ca_certs": str(certs.ca)},
            timeout=TIMEOUT)
        try:
            for message in ("one", "two" * 5000):
                ws.send(message)
                assert ws.recv() == message
            ws.send_binary(bytes(range(256)))
            assert ws.recv() == bytes(range(256))
        finally:
            ws.close()


def test_large_bodies_both_ways(certs: Certs) -> None:
    def echo(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, data.body_bytes, headers={"Content-Type": "application/octet-stream"})

    body = bytes(range(256)) * 4096  # 1 MiB: many TLS records
    with serving(echo, "https://127.0.0.1:0", tls=certs.server_opts()) as server:
        response = https_post(f"https://127.0.0.1:{server.port}/", data=body,
                                 verify=str(certs.ca), timeout=30)
        assert response.content == body


def test_rsa_keys_are_refused_with_advice(certs: Certs) -> None:
    # Mongoose 7.23's engine parses RSA keys but its RSA signature fails mid-handshake.
    with pytest.raises(ValueError, match=r"needs EC keys.*prime256v1"):
        TlsOpts(cert=certs.rsa_crt.read_bytes(), key=certs.rsa_key.read_bytes())


def test_https_listener_without_certificate_refuses_connections(certs: Certs) -> None:
    errors: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ERROR:
            errors.append(data)
        hello(conn, ev, data)

    with serving(handler, "https://127.0.0.1:0") as server:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                         timeout=TIMEOUT)
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert closed_without_answer(sock)  # no plain-text answer
    assert any("no certificate" in e for e in errors)


def test_tls_free_on_listener_stops_tls_for_new_connections(certs: Certs) -> None:
    # The Manager belongs to the poll thread: the test thread only sets an Event, and
    # a timer made before polling starts calls tls_free() there.
    wanted, done = threading.Event(), threading.Event()
    listeners: list[Connection] = []

    def free_tls_when_wanted() -> None:
        if wanted.is_set() and not done.is_set():
            listeners[0].tls_free()
            done.set()

    def setup(manager: Manager) -> None:
        listeners.extend(c for c in manager.connections if c.is_listening)
        manager.timer_add(5, free_tls_when_wanted, repeat=True)

    with serving(hello, "https://127.0.0.1:0", setup=setup,
                 tls=certs.server_opts()) as server:
        url = f"https://127.0.0.1:{server.port}/"
        assert https_get(url, verify=str(certs.ca), timeout=TIMEOUT).ok
        wanted.set()
        assert done.wait(TIMEOUT)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(certs.ca), timeout=TIMEOUT)


# -- our client -------------------------------------------------------------------------


def test_our_client_against_our_server(https: str, certs: Certs) -> None:
    run = fetch(https + "/", certs.client_opts())
    assert run.errors == []
    assert run.statuses == [200]
    assert run.bodies == [b"hello /hello tls=True"]
    assert run.was_tls == [True]
    assert MG_EV_TLS_HS in run.events


def test_certificate_dates_follow_the_host_clock_when_it_moves(https: str,
                                                                certs: Certs) -> None:
    """Mongoose checks certificate dates against mg_boot_timestamp_ms + a raw monotonic
    clock, which drift apart from the host's clock (NTP, a resumed VM): in one CI run a
    certificate made a moment before was "not yet valid" by a second. Each TLS set-up
    takes the host's time again, so a stale offset is corrected before it is used."""
    import time

    from pymongoose._ffi import lib

    assert fetch(https + "/", certs.client_opts()).errors == []
    saved = lib.mg_boot_timestamp_ms
    lib.mg_boot_timestamp_ms = saved - 2 * 3600 * 1000  # two hours behind the host
    try:
        run = fetch(https + "/", certs.client_opts())  # certificates made minutes ago
        assert run.errors == [], "checked against a clock two hours behind"
        assert run.bodies == [b"hello /hello tls=True"]
        assert abs(int(lib.mg_now()) - time.time() * 1000) < 2000
    finally:
        if abs(int(lib.mg_now()) - time.time() * 1000) > 2000:
            lib.mg_boot_timestamp_ms = saved


def test_our_client_tls_init_after_connect(https: str, certs: Certs) -> None:
    # The cymongoose way: connect(), then tls_init() before polling.
    run = fetch(https + "/", None, late_init=TlsOpts(ca=certs.ca.read_text()))
    assert run.errors == []
    assert run.bodies == [b"hello /hello tls=True"]


def test_our_client_by_localhost_name(https: str, certs: Certs) -> None:
    run = fetch(https.replace("127.0.0.1", "localhost") + "/", certs.client_opts())
    assert run.bodies == [b"hello /hello tls=True"]


def test_wrong_ca_fails_with_a_clear_error(https: str, certs: Certs) -> None:
    run = fetch(https + "/", TlsOpts(ca=certs.other_ca.read_bytes()))
    assert run.bodies == []
    assert len(run.errors) == 1
    assert run.errors[0].startswith("TLS handshake failed: ")
    assert "CA" in run.errors[0]
    assert run.events[-1] == MG_EV_CLOSE


def test_wrong_host_name_fails_with_a_clear_error(certs: Certs) -> None:
    # A certificate without an IP address entry (one naming the address connected to
    # matches whatever the name), for other.test only.
    opts = TlsOpts(cert=certs.other_host_crt.read_bytes(), key=certs.server_key.read_bytes())
    with serving(hello, "https://127.0.0.1:0", tls=opts) as server:
        run = fetch(f"https://127.0.0.1:{server.port}/", certs.client_opts(name="wrong.example"))
    assert run.bodies == []
    assert run.errors == ["TLS handshake failed: failed to verify hostname"]
    assert run.events[-1] == MG_EV_CLOSE


def test_default_name_is_the_url_host(certs: Certs) -> None:
    # A certificate for other.test only: connecting to 127.0.0.1 must fail ...
    opts = TlsOpts(cert=certs.other_host_crt.read_bytes(), key=certs.server_key.read_bytes())
    with serving(hello, "https://127.0.0.1:0", tls=opts) as server:
        url = f"https://127.0.0.1:{server.port}/"
        run = fetch(url, certs.client_opts())
        assert run.errors == ["TLS handshake failed: failed to verify hostname"]
        # ... and succeed when told which name to expect.
        run = fetch(url, certs.client_opts(name="other.test"))
        assert run.bodies == [b"hello /hello tls=True"]


def test_skip_verification_accepts_any_certificate(https: str, certs: Certs) -> None:
    run = fetch(https + "/", TlsOpts(ca=certs.other_ca.read_bytes(), skip_verification=True))
    assert run.errors == []
    assert run.bodies == [b"hello /hello tls=True"]
    run = fetch(https + "/", TlsOpts(skip_verification=True))
    assert run.bodies == [b"hello /hello tls=True"]


def test_client_needs_a_ca_or_skip_verification(https: str) -> None:
    with Manager() as mgr, pytest.raises(ValueError, match="skip_verification=True"):
        mgr.connect(https, tls=TlsOpts())
    # An https:// client that never got TLS options fails instead of talking plain text.
    run = fetch(https + "/", None)
    assert run.bodies == []
    assert len(run.errors) == 1 and "no TLS options" in run.errors[0]
    with Manager() as mgr:
        conn = mgr.connect(https)
        with pytest.raises(ValueError, match=r"TlsOpts\(ca=\.\.\.\)"):
            conn.tls_init(TlsOpts())


def test_our_wss_client_against_our_server(certs: Certs) -> None:
    got: list[Any] = []
    with serving(ws_echo, "wss://127.0.0.1:0", tls=certs.server_opts()) as server, \
            Manager() as mgr:
        def client(conn: Connection, ev: int, data: Any) -> None:
            if ev == MG_EV_WS_OPEN:
                conn.ws_send("over wss", WEBSOCKET_OP_TEXT)
            elif ev == MG_EV_WS_MSG:
                got.append((data.text, conn.is_tls))
                conn.close()
            elif ev == MG_EV_ERROR:
                got.append(data)

        conn = mgr.ws_connect(f"wss://localhost:{server.port}/ws", client,
                              tls=certs.client_opts())
        while not conn.is_closed:
            mgr.poll(20)
    assert got == [("over wss", True)]


@pytest.fixture
def python_ssl_server(certs: Certs) -> Iterator[int]:
    """An HTTPS server made with Python's ssl module, one request per connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server_crt), str(certs.server_key))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = sock.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(TIMEOUT)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    body = f"python ssl {tls.version()}".encode()
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body))
            except (OSError, ssl.SSLError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        socket.create_connection(sock.getsockname(), timeout=TIMEOUT).close()  # wake accept()
        sock.close()
        thread.join(timeout=TIMEOUT)


def test_our_client_against_python_ssl_server(python_ssl_server: int, certs: Certs) -> None:
    run = fetch(f"https://127.0.0.1:{python_ssl_server}/", certs.client_opts())
    assert run.errors == []
    assert run.bodies == [b"python ssl TLSv1.3"]
    run = fetch(f"https://localhost:{python_ssl_server}/", certs.client_opts())
    assert run.bodies == [b"python ssl TLSv1.3"]
    run = fetch(f"https://127.0.0.1:{python_ssl_server}/", TlsOpts(ca=certs.other_ca.read_bytes()))
    assert run.bodies == [] and run.errors and "TLS handshake failed" in run.errors[0]


# -- mutual TLS -------------------------------------------------------------------------


def test_mutual_tls(certs: Certs) -> None:
    opts = certs.server_opts(ca=certs.ca.read_bytes())  # a server with ca= asks for client certs
    with serving(hello, "https://127.0.0.1:0", tls=opts) as server:
        url = f"https://127.0.0.1:{server.port}/m"
        response = https_get(url, verify=str(certs.ca), timeout=TIMEOUT,
                                cert=(str(certs.client_crt), str(certs.client_key)))
        assert response.text == "hello /m tls=True"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(certs.ca), timeout=TIMEOUT)  # no client certificate
        run = fetch(url, certs.client_opts(cert=certs.client_crt.read_bytes(),
                                           key=certs.client_key.read_bytes()))
        assert run.bodies == [b"hello /hello tls=True"]
        # Our client without a certificate: in TLS 1.3 its handshake is over before the
        # server checks, so it just sees the connection close unanswered.
        run = fetch(url, certs.client_opts())
        assert run.bodies == []


def test_mutual_tls_refuses_a_client_cert_from_another_ca(certs: Certs, tmp_path: Path) -> None:
    other_key = ec_key(tmp_path, "k.pem")
    other_crt = tmp_path / "c.pem"
    openssl("req", "-x509", "-new", "-key", str(other_key), "-sha256", "-days", "1",
            "-subj", "/CN=self-signed", "-out", str(other_crt), cwd=tmp_path)
    opts = certs.server_opts(ca=certs.ca.read_bytes())
    with serving(hello, "https://127.0.0.1:0", tls=opts) as server:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                         cert=(str(other_crt), str(other_key)), timeout=TIMEOUT)
        assert https_get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                            cert=(str(certs.client_crt), str(certs.client_key)),
                            timeout=TIMEOUT).ok


# -- events and flags -------------------------------------------------------------------


def test_accepted_connections_are_tls_from_the_start(certs: Certs) -> None:
    seen: list[tuple[int, bool]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_ACCEPT, MG_EV_TLS_HS, MG_EV_HTTP_MSG):
            seen.append((ev, conn.is_tls))
        hello(conn, ev, data)

    with serving(handler, "https://127.0.0.1:0", tls=certs.server_opts()) as server:
        assert https_get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                            timeout=TIMEOUT).ok
    assert (MG_EV_ACCEPT, True) in seen
    assert (MG_EV_HTTP_MSG, True) in seen


# -- TlsOpts ----------------------------------------------------------------------------


def test_tls_opts_accepts_pem_as_bytes_or_str(certs: Certs) -> None:
    a = TlsOpts(ca=certs.ca.read_text(), cert=certs.server_crt.read_text(),
                key=certs.server_key.read_text(), name="localhost")
    b = TlsOpts(ca=certs.ca.read_bytes(), cert=certs.server_crt.read_bytes(),
                key=certs.server_key.read_bytes(), name=b"localhost")
    assert a.ca == b.ca and a.cert == b.cert and a.key == b.key and a.name == b.name
    assert a.skip_verification is False
    assert "ca=<" in repr(a) and "BEGIN" not in repr(a)  # no key material in reprs


def test_tls_opts_key_kinds(certs: Certs, tmp_path: Path) -> None:
    pkcs8 = tmp_path / "p8.pem"
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(certs.server_key), "-out", str(pkcs8),
            cwd=tmp_path)
    TlsOpts(cert=certs.server_crt.read_bytes(), key=pkcs8.read_bytes())  # PKCS#8 EC
    with_params = tmp_path / "params.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", str(with_params), cwd=tmp_path)
    assert b"EC PARAMETERS" in with_params.read_bytes()
    TlsOpts(cert=certs.server_crt.read_bytes(), key=with_params.read_bytes())

    p384 = ec_key(tmp_path, "p384.pem", "secp384r1")
    with pytest.raises(ValueError, match=r"P-384.*P-256"):
        TlsOpts(cert=certs.server_crt.read_bytes(), key=p384.read_bytes())
    ed = tmp_path / "ed.pem"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(ed), cwd=tmp_path)
    with pytest.raises(ValueError, match=r"Ed25519.*EC P-256"):
        TlsOpts(cert=certs.server_crt.read_bytes(), key=ed.read_bytes())
    encrypted = tmp_path / "enc.pem"
    openssl("pkcs8", "-topk8", "-in", str(certs.server_key), "-out", str(encrypted),
            "-passout", "pass:secret", cwd=tmp_path)
    with pytest.raises(ValueError, match="encrypted"):
        TlsOpts(cert=certs.server_crt.read_bytes(), key=encrypted.read_bytes())


@pytest.mark.parametrize("field", ["ca", "cert", "key"])
def test_tls_opts_refuses_non_pem(field: str, certs: Certs) -> None:
    kwargs: dict[str, Any] = {"cert": certs.server_crt.read_bytes(),
                              "key": certs.server_key.read_bytes()}
    for blob in (b"\x30\x82\x01\x00" + bytes(300), b"not a certificate",
                 b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"):
        kwargs[field] = blob
        with pytest.raises(ValueError, match=f"TlsOpts {field}"):
            TlsOpts(**kwargs)
    kwargs[field] = 42
    with pytest.raises(TypeError, match=f"TlsOpts {field}"):
        TlsOpts(**kwargs)


def test_tls_opts_other_mistakes(certs: Certs) -> None:
    with pytest.raises(ValueError, match="key is missing"):
        TlsOpts(cert=certs.server_crt.read_bytes())
    with pytest.raises(ValueError, match="cert is missing"):
        TlsOpts(key=certs.server_key.read_bytes())
    with pytest.raises(ValueError, match="expected a PEM CERTIFICATE"):
        TlsOpts(ca=certs.server_key.read_bytes())
    with pytest.raises(ValueError, match="expected an unencrypted EC P-256"):
        TlsOpts(cert=certs.server_crt.read_bytes(), key=certs.server_crt.read_bytes())
    with pytest.raises(ValueError, match="host name"):
        TlsOpts(name="has space")
    with pytest.raises(TypeError):
        TlsOpts(skip_verification=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="handshake_timeout"):
        TlsOpts(handshake_timeout=-1)
    with Manager() as mgr:
        with pytest.raises(ValueError, match="certificate and key"):
            mgr.listen("https://127.0.0.1:0", tls=TlsOpts(ca=certs.ca.read_bytes()))
        with pytest.raises(ValueError, match="UDP"):
            mgr.listen("udp://127.0.0.1:0", tls=certs.server_opts())
        with pytest.raises(TypeError, match="TlsOpts"):
            mgr.listen("https://127.0.0.1:0", tls="yes")  # type: ignore[arg-type]
        listener = mgr.listen("https://127.0.0.1:0")
        with pytest.raises(TypeError, match="TlsOpts"):
            listener.tls_init({"cert": "x"})  # type: ignore[arg-type]
        listener.close()
        mgr.poll(0)
        with pytest.raises(Exception, match="closed"):
            listener.tls_init(certs.server_opts())


def test_ca_bundle_with_several_certificates(https: str, certs: Certs) -> None:
    bundle = certs.other_ca.read_bytes() + certs.ca.read_bytes()
    run = fetch(https + "/", TlsOpts(ca=bundle))
    assert run.errors == []
    assert run.bodies == [b"hello /hello tls=True"]
    run = fetch(https + "/", TlsOpts(ca=certs.other_ca.read_bytes() * 2))
    assert run.bodies == [] and "TLS handshake failed" in run.errors[0]


def test_tls_free_closes_a_tls_session_and_tls_init_twice_is_refused(certs: Certs) -> None:
    refused: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/free":
                conn.tls_free()  # its bytes could no longer be read: closed
            else:
                try:
                    conn.tls_init(certs.server_opts())
                except RuntimeError as exc:
                    refused.append(str(exc))
                hello(conn, ev, data)

    with serving(handler, "https://127.0.0.1:0", tls=certs.server_opts()) as server:
        url = f"https://127.0.0.1:{server.port}"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url + "/free", verify=str(certs.ca), timeout=TIMEOUT)
        assert https_get(url + "/again", verify=str(certs.ca), timeout=TIMEOUT).ok
    assert len(refused) == 1 and "already speaks TLS" in refused[0]


def test_https_with_asyncio(certs: Certs) -> None:
    import asyncio

    from pymongoose.aio import AsyncManager

    async def main() -> str:
        async with AsyncManager(hello) as amgr:
            listener = amgr.listen("https://127.0.0.1:0", tls=certs.server_opts())
            port = listener.local_addr[1]  # type: ignore[index]
            response = await asyncio.get_running_loop().run_in_executor(
                None, lambda: https_get(f"https://localhost:{port}/aio",
                                           verify=str(certs.ca), timeout=TIMEOUT))
            return response.text

    assert asyncio.run(main()) == "hello /aio tls=True"


def test_tls_init_from_the_connect_handler(https: str, certs: Certs) -> None:
    # Mongoose's C examples (and cymongoose's) call tls_init on MG_EV_CONNECT: a TLS
    # client without options delivers that event at once, before any byte is sent.
    answer: list[bytes] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            conn.tls_init(certs.client_opts(name="localhost"))
        elif ev == MG_EV_TLS_HS:
            conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            answer.append(data.body_bytes)
            conn.close()

    with Manager() as mgr:
        conn = mgr.connect(https + "/", handler, http=True)
        while not conn.is_closed:
            mgr.poll(20)
    assert len(answer) == 1 and answer[0]


def test_a_connect_handler_without_tls_init_fails_the_connection(https: str) -> None:
    seen: list[Any] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ERROR:
            seen.append(data)
        elif ev == MG_EV_CONNECT:
            seen.append("connect")
        elif ev == MG_EV_CLOSE:
            seen.append("close")

    with Manager() as mgr:
        conn = mgr.connect(https + "/", handler)
        while not conn.is_closed:
            mgr.poll(20)
    assert len(seen) == 3 and seen[0] == "connect" and seen[2] == "close"
    assert "no TLS options" in seen[1] and "MG_EV_CONNECT handler" in seen[1]


def test_tls_init_from_the_accept_handler(certs: Certs) -> None:
    # cymongoose's README way: listen("https://...") without options, then tls_init on
    # each accepted connection in MG_EV_ACCEPT.
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            conn.tls_init(certs.server_opts())
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "accepted over TLS")

    with serving(handler, "https://127.0.0.1:0") as server:
        response = https_get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                             timeout=TIMEOUT)
        assert response.text == "accepted over TLS"


def test_an_accept_handler_without_tls_init_refuses_plain_text(certs: Certs) -> None:
    errors: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ERROR:
            errors.append(data)
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "plain text")

    events = (MG_EV_ACCEPT, MG_EV_ERROR, MG_EV_HTTP_MSG)
    with serving(handler, "https://127.0.0.1:0", events=events) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # closed, never answered in plain text
        assert read_until_closed(sock, reset_is_close=True) == b""
    assert any("MG_EV_ACCEPT handler did not call conn.tls_init" in e for e in errors)

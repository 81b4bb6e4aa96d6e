"""examples/https_server.py runs as written: as a child process on 127.0.0.1 port 0,
driven with requests, curl and our own client, then stopped with a signal."""

from __future__ import annotations

import signal

from _tools import require
from subprocess_helpers import run_to_end, running
from tls_helpers import Certs, certs, fetch, https_get, run_tool

from pymongoose import TlsOpts

__all__ = ["certs"]  # the session fixture, imported from tls_helpers

TIMEOUT = 10.0


def test_https_example_with_a_throwaway_certificate() -> None:
    require("openssl", "curl")  # the example makes its certificate with openssl
    with running("examples/https_server.py", "https://127.0.0.1:0") as child:
        cert = child.wait_for(r"Certificate: (\S+)").group(1)
        url = child.wait_for(r"Listening on (https://127\.0\.0\.1:[1-9]\d*)").group(1)
        response = https_get(url + "/hi", verify=cert, timeout=TIMEOUT)
        assert response.text == "Hello over TLS: GET /hi\n"
        out = run_tool(["curl", "-sS", "--fail", "--max-time", "10", "--cacert", cert,
                        url.replace("127.0.0.1", "localhost") + "/curl"])
        assert out.stdout == "Hello over TLS: GET /curl\n", out.stderr
        with open(cert, "rb") as f:
            run = fetch(url + "/", TlsOpts(ca=f.read()))
        assert run.bodies == [b"Hello over TLS: GET /hello\n"]
        assert child.stop(signal.SIGTERM) == 0


def test_https_example_with_given_certificate(certs: Certs) -> None:
    with running("examples/https_server.py", "--listen", "https://127.0.0.1:0",
                 "--cert", str(certs.server_crt), "--key", str(certs.server_key)) as child:
        url = child.wait_for(r"Listening on (https://127\.0\.0\.1:[1-9]\d*)").group(1)
        response = https_get(url + "/x", verify=str(certs.ca), timeout=TIMEOUT)
        assert response.text == "Hello over TLS: GET /x\n"
        assert child.stop(signal.SIGINT) == 0


def test_https_example_explains_a_refused_key(certs: Certs) -> None:
    out = run_to_end("examples/https_server.py", "https://127.0.0.1:0",
                     "--cert", str(certs.rsa_crt), "--key", str(certs.rsa_key))
    assert out.returncode != 0
    assert "needs EC keys" in out.stderr

"""HTTPS server with Mongoose's built-in TLS 1.3 engine (no OpenSSL library needed).

    python examples/https_server.py [URL]                  # default https://127.0.0.1:8443
    python examples/https_server.py --cert server.crt --key server.key

The key must be an unencrypted EC P-256 key; the built-in engine cannot sign with RSA:

    openssl ecparam -name prime256v1 -genkey -noout -out server.key

Without --cert and --key, a throwaway self-signed certificate for 127.0.0.1 and
localhost is made with the openssl command; its path is printed, for clients to trust:

    curl --cacert /tmp/.../cert.pem https://127.0.0.1:8443/

Ctrl-C or SIGTERM stops it.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from pymongoose import MG_EV_HTTP_MSG, Manager, TlsOpts


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, f"Hello over TLS: {data.method} {data.uri}\n")


def throwaway_certificate(folder):
    """A self-signed EC P-256 certificate for 127.0.0.1 and localhost, valid for a day."""
    cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True)
    return cert, key


def main():
    parser = argparse.ArgumentParser(description="Serve 'Hello over TLS' on HTTPS.")
    parser.add_argument("url", nargs="?", default="https://127.0.0.1:8443")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    parser.add_argument("--cert", help="PEM certificate (chain); needs --key")
    parser.add_argument("--key", help="PEM EC P-256 private key; needs --cert")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    with tempfile.TemporaryDirectory() as folder:
        if args.cert:
            cert, key = Path(args.cert), Path(args.key)
        else:
            cert, key = throwaway_certificate(folder)
            print(f"Certificate: {cert} (self-signed; trust it with curl --cacert)", flush=True)
        try:
            tls = TlsOpts(cert=cert.read_bytes(), key=key.read_bytes())
        except ValueError as exc:  # says what is wrong with the PEM, e.g. an RSA key
            sys.exit(f"error: {exc}")

        mgr = Manager(handler, events=(MG_EV_HTTP_MSG,))
        listener = mgr.listen(args.listen or args.url, tls=tls)
        ip, port, is_ipv6 = listener.local_addr  # the real port, even when asked for port 0
        host = f"[{ip}]" if is_ipv6 else ip
        ready = f"Listening on https://{host}:{port}"
        # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
        # either arrives and closes everything.
        mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()

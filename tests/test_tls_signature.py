"""Every handshake of our TLS server verifies, whatever its ECDSA signature looks like.

Mongoose 7.23 DER-encodes the signature of its CertificateVerify message without dropping
the leading zero bytes of r and s, so about one handshake in 128 carried a non-minimal
INTEGER that OpenSSL refuses ("bad signature"). The build fixes that in its copy of
mongoose.c (build_ffi.MONGOOSE_FIXES) with pymg_tls_der_signature from csrc/tls.c.
"""

from __future__ import annotations

import socket
import ssl

from conftest import serving
from hypothesis import given
from hypothesis import strategies as st
from test_tls import hello
from tls_helpers import Certs, certs

from pymongoose._ffi import ffi, lib

__all__ = ["certs"]  # the session fixture, imported from tls_helpers

TIMEOUT = 10.0


def der_integer(value: bytes) -> bytes:
    """DER INTEGER of an unsigned big-endian number, written from X.690's rules."""
    number = int.from_bytes(value, "big")
    body = number.to_bytes(number.bit_length() // 8 + 1, "big")  # room for a sign bit
    return bytes([0x02, len(body)]) + body


def der_signature(sig: bytes) -> bytes:
    body = der_integer(sig[:32]) + der_integer(sig[32:])
    return bytes([0x30, len(body)]) + body


def encode(sig: bytes) -> bytes:
    out = ffi.new("uint8_t[72]")
    size = lib.pymg_tls_der_signature(ffi.from_buffer(sig), out)
    return bytes(ffi.buffer(out, size))


EDGES = [
    bytes(64),
    b"\xff" * 64,
    b"\x00" + b"\x7f" * 31 + b"\x80" * 32,
    b"\x00\x00\x80" + b"\x01" * 29 + b"\x00" * 31 + b"\x01",
    b"\x7f" + b"\x00" * 31 + b"\x00\xff" + b"\x00" * 30,
]


def test_edge_signatures_are_minimal_der() -> None:
    for sig in EDGES:
        assert encode(sig) == der_signature(sig), sig.hex()


@given(st.binary(min_size=64, max_size=64))
def test_signatures_are_minimal_der(sig: bytes) -> None:
    assert encode(sig) == der_signature(sig)


@given(st.integers(0, 31), st.integers(0, 31), st.binary(min_size=64, max_size=64))
def test_leading_zero_bytes_are_dropped(zeros_r: int, zeros_s: int, sig: bytes) -> None:
    sig = bytes(zeros_r) + sig[zeros_r:32] + bytes(zeros_s) + sig[32 + zeros_s:]
    assert encode(sig) == der_signature(sig)


def test_five_hundred_openssl_handshakes_all_verify(certs: Certs) -> None:
    # Before the fix, P(no bad signature in 500 handshakes) = (127/128)^500 < 2%.
    context = ssl.create_default_context(cafile=str(certs.ca))
    with serving(hello, "https://127.0.0.1:0", tls=certs.server_opts()) as server:
        for _ in range(500):
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
        assert server.errors == []

"""TLS options for Mongoose's built-in TLS 1.3 engine, checked before they reach C.

Mongoose's engine (compiled in with ``MG_TLS=MG_TLS_BUILTIN``) speaks TLS 1.3 only,
with one cipher suite (TLS_CHACHA20_POLY1305_SHA256, whatever the client prefers) and
X25519 key exchange. Our private key must be EC P-256 (prime256v1), unencrypted, in
PEM: Mongoose 7.23 parses RSA keys but fails to sign with them. The engine reports few
of its parsing problems, and some of them not at all, so this module reads the PEM
material itself first and raises a ``ValueError`` that says what to change.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Union

from ._ffi import NULL, lib

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "TlsOpts"]

#: Seconds a TLS handshake may take before the connection is closed.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

PemInput = Union[bytes, bytearray, memoryview, str, None]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)
_ENGINE = "Mongoose's built-in TLS engine"
_KEY_KINDS = "an unencrypted EC P-256 (prime256v1) private key"
_MAKE_KEY = "`openssl ecparam -name prime256v1 -genkey -noout -out key.pem`"
_NO_RSA = (f"the key is RSA; {_ENGINE} needs EC keys (Mongoose 7.23 reads RSA keys but "
           f"cannot sign with them): make a P-256 key with {_MAKE_KEY}")
_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_OID_P256 = bytes.fromhex("2a8648ce3d030107")
_KNOWN_KEY_OIDS = {
    bytes.fromhex("2b6570"): "Ed25519",
    bytes.fromhex("2b6571"): "Ed448",
    bytes.fromhex("2a864886f70d01010a"): "RSA-PSS",
    bytes.fromhex("2a8648ce380401"): "DSA",
}
_KNOWN_CURVE_OIDS = {
    bytes.fromhex("2b81040022"): "P-384 (secp384r1)",
    bytes.fromhex("2b81040023"): "P-521 (secp521r1)",
    bytes.fromhex("2b8104000a"): "secp256k1",
}
_MAX_NAME = 252  # Mongoose keeps the server name in a 254-byte field


def _as_pem_bytes(value: PemInput, what: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"TlsOpts {what}: PEM text must be ASCII") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"TlsOpts {what} must be PEM as bytes or str, not {type(value).__name__}")


def _pem_blocks(data: bytes, what: str) -> list[tuple[str, bytes, bytes]]:
    """``(label, DER, the block's PEM text)`` for each PEM block in ``data``."""
    blocks = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        body = match.group(2)
        if b":" in body:  # "Proc-Type: 4,ENCRYPTED" and friends
            raise ValueError(
                f"TlsOpts {what}: the {label} block is encrypted; {_ENGINE} needs an "
                "unencrypted key (e.g. `openssl ec -in key.pem -out plain.pem`)"
            )
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"TlsOpts {what}: the {label} block is not valid base64") from None
        if not der:
            raise ValueError(f"TlsOpts {what}: the {label} block is empty")
        blocks.append((label, der, match.group(0) + b"\n"))
    if not blocks:
        raise ValueError(
            f"TlsOpts {what} is not PEM: expected text with '-----BEGIN ...-----' and "
            f"'-----END ...-----' lines (DER and other formats: convert with openssl)"
        )
    return blocks


def _certificates(data: bytes, what: str) -> bytes:
    """The CERTIFICATE blocks of ``data``, re-joined: C gets nothing else."""
    blocks = _pem_blocks(data, what)
    certs = [pem for label, _, pem in blocks if label == "CERTIFICATE"]
    if not certs:
        labels = ", ".join(sorted({label for label, _, _ in blocks}))
        raise ValueError(f"TlsOpts {what}: expected a PEM CERTIFICATE, found {labels}")
    for label, der, _ in blocks:
        if label == "CERTIFICATE" and der[0] != 0x30:
            raise ValueError(f"TlsOpts {what}: a CERTIFICATE block does not hold DER")
    return b"".join(certs)


class _Der:
    """Just enough DER reading to tell which kind of key a PEM block holds."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def next(self) -> tuple[int, bytes]:
        data, pos = self.data, self.pos
        if pos + 2 > len(data):
            raise ValueError("truncated")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("truncated")
        self.pos = pos + length
        return tag, data[pos:pos + length]

    def expect(self, tag: int) -> bytes:
        got, value = self.next()
        if got != tag:
            raise ValueError(f"expected tag {tag:#x}, got {got:#x}")
        return value


def _check_sec1_ec_key(der: bytes) -> None:
    """RFC 5915 ECPrivateKey: Mongoose wants a 32-byte (P-256) key."""
    seq = _Der(_Der(der).expect(0x30))
    if seq.expect(0x02) != b"\x01":
        raise ValueError("not an EC private key (version 1)")
    secret = seq.expect(0x04)
    curve = None
    while seq.pos < len(seq.data):
        tag, value = seq.next()
        if tag == 0xA0:
            curve = _Der(value).expect(0x06)
    if curve is not None and curve != _OID_P256:
        name = _KNOWN_CURVE_OIDS.get(curve, "an unknown curve")
        raise ValueError(f"the EC key is on {name}; {_ENGINE} takes P-256 (prime256v1) only")
    if len(secret) != 32:
        raise ValueError(f"the EC key is not P-256 (prime256v1); {_ENGINE} takes P-256 only")


def _check_key(data: bytes) -> bytes:
    """The one private key block of ``data`` (other blocks, e.g. EC PARAMETERS, dropped)."""
    blocks = _pem_blocks(data, "key")
    keys = [(label, der, pem) for label, der, pem in blocks if label.endswith("PRIVATE KEY")]
    if not keys:
        labels = ", ".join(sorted({label for label, _, _ in blocks}))
        raise ValueError(f"TlsOpts key: expected {_KEY_KINDS}, in PEM; found {labels}")
    if len(keys) > 1:
        raise ValueError("TlsOpts key: holds more than one private key")
    label, der, pem = keys[0]
    try:
        if label == "ENCRYPTED PRIVATE KEY":
            raise ValueError(
                f"the key is encrypted; {_ENGINE} needs an unencrypted one "
                "(`openssl pkey -in key.pem -out plain.pem`)"
            )
        if label == "EC PRIVATE KEY":
            # Mongoose reads this form at fixed offsets: short-form outer length.
            if len(der) < 39 or der[1] & 0x80 or der[2:7] != b"\x02\x01\x01\x04\x20":
                _check_sec1_ec_key(der)
                raise ValueError(f"the EC key's layout is not one {_ENGINE} reads")
            _check_sec1_ec_key(der)
        elif label == "RSA PRIVATE KEY":
            raise ValueError(_NO_RSA)
        elif label == "PRIVATE KEY":  # PKCS#8
            seq = _Der(_Der(der).expect(0x30))
            seq.expect(0x02)
            algorithm = _Der(seq.expect(0x30))
            oid = algorithm.expect(0x06)
            inner = seq.expect(0x04)
            if oid == _OID_EC:
                curve = algorithm.expect(0x06)
                if curve != _OID_P256:
                    name = _KNOWN_CURVE_OIDS.get(curve, "an unknown curve")
                    raise ValueError(
                        f"the EC key is on {name}; {_ENGINE} takes P-256 (prime256v1) only"
                    )
                _check_sec1_ec_key(inner)
            elif oid == _OID_RSA:
                raise ValueError(_NO_RSA)
            else:
                name = _KNOWN_KEY_OIDS.get(oid, "of an unknown algorithm")
                raise ValueError(f"the key is {name}; {_ENGINE} takes {_KEY_KINDS}")
        else:
            raise ValueError(f"a {label} is not one of the key kinds {_ENGINE} takes")
    except ValueError as exc:
        advice = "" if _ENGINE in str(exc) else f" (expected {_KEY_KINDS}, in PEM)"
        raise ValueError(f"TlsOpts key: {exc}{advice}") from None
    return pem


def _check_name(name: object) -> bytes:
    if name is None:
        return b""
    if isinstance(name, str):
        raw = name.encode("idna") if not name.isascii() else name.encode("ascii")
    elif isinstance(name, (bytes, bytearray, memoryview)):
        raw = bytes(name)
    else:
        raise TypeError(f"TlsOpts name must be str or bytes, not {type(name).__name__}")
    if len(raw) > _MAX_NAME or any(ch <= 0x20 or ch >= 0x7F for ch in raw):
        raise ValueError(
            f"TlsOpts name {name!r} is not a host name (printable ASCII, no spaces, "
            f"at most {_MAX_NAME} bytes)"
        )
    return raw


class TlsOpts:
    """TLS settings for a listener or a connection (PEM as bytes or str).

    - ``cert`` and ``key``: our certificate (a chain may follow it) and its private
      key. A server needs both; a client sends them when the server asks (mutual TLS).
    - ``ca``: the CA certificate(s) to verify the peer with. On a client it checks
      the server; on a server it makes client certificates mandatory (mutual TLS).
    - ``name``: the server name a client sends (SNI) and expects in the server's
      certificate; defaults to the URL's host.
    - ``skip_verification``: a client accepts any server certificate (``ca`` is then
      not used, and the URL's host is not checked; a ``name`` given is still sent and
      checked).
    - ``handshake_timeout`` (keyword only): seconds before an unfinished handshake
      closes the connection with ``MG_EV_ERROR``; 0 waits for ever.

    Keys must be EC P-256, unencrypted (no RSA: the engine cannot sign with it);
    invalid input raises ``ValueError``.
    """

    __slots__ = ("_key_pem", "ca", "cert", "handshake_timeout", "key", "name",
                 "skip_verification")

    def __init__(self, ca: PemInput = None, cert: PemInput = None, key: PemInput = None,
                 name: Union[str, bytes, None] = None, skip_verification: bool = False,
                 *, handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        ca_raw = _as_pem_bytes(ca, "ca")
        cert_raw = _as_pem_bytes(cert, "cert")
        key_raw = _as_pem_bytes(key, "key")
        #: The CA certificates (PEM), b"" when not given.
        self.ca: bytes = _certificates(ca_raw, "ca") if ca_raw else b""
        #: Our certificate and chain (PEM), b"" when not given.
        self.cert: bytes = _certificates(cert_raw, "cert") if cert_raw else b""
        #: Our private key (PEM, as given), b"" when not given.
        self.key: bytes = key_raw
        self._key_pem: bytes = _check_key(key_raw) if key_raw else b""
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            raise ValueError(f"TlsOpts: cert and key go together; {missing} is missing")
        #: The expected server name (bytes), b"" when not given.
        self.name: bytes = _check_name(name)
        if not isinstance(skip_verification, bool):
            raise TypeError("TlsOpts skip_verification must be a bool")
        #: Whether a client accepts any server certificate.
        self.skip_verification: bool = skip_verification
        if isinstance(handshake_timeout, bool) or not isinstance(handshake_timeout, (int, float)):
            raise TypeError("TlsOpts handshake_timeout must be a number of seconds")
        if not (math.isfinite(handshake_timeout) and 0 <= handshake_timeout <= 3600):
            raise ValueError("TlsOpts handshake_timeout must be from 0 to 3600 seconds")
        #: Seconds an unfinished handshake may take (0: no limit).
        self.handshake_timeout: float = float(handshake_timeout)

    def __repr__(self) -> str:
        parts = [f"{field}=<{len(getattr(self, field))} bytes>"
                 for field in ("ca", "cert", "key") if getattr(self, field)]
        if self.name:
            parts.append(f"name={self.name.decode('ascii')!r}")
        if self.skip_verification:
            parts.append("skip_verification=True")
        return f"TlsOpts({', '.join(parts)})"

    # -- used by Connection.tls_init ----------------------------------------------------

    def _check_server(self) -> None:
        if not self.cert:
            raise ValueError(
                "a TLS server needs its certificate and key: TlsOpts(cert=..., key=...)"
            )

    def _check_client(self) -> None:
        if not self.ca and not self.skip_verification:
            raise ValueError(
                "a TLS client verifies the server by default and needs the CA that signed "
                "its certificate: TlsOpts(ca=...); pass skip_verification=True to accept "
                "any certificate (unsafe)"
            )

    def _conf(self, client: bool, default_name: bytes) -> Any:
        """A C copy of these options (freed by C); ``default_name`` stands in for name."""
        skip = client and self.skip_verification
        name = self.name or (b"" if skip else default_name)
        # Mongoose's own skip_verification still checks a given CA: give it none.
        ca = b"" if skip else self.ca
        key = self._key_pem
        conf = lib.pymg_tls_conf_new(
            ca or NULL, len(ca), self.cert or NULL, len(self.cert),
            key or NULL, len(key), name or NULL, len(name),
            1 if self.skip_verification else 0,
            round(self.handshake_timeout * 1000),
        )
        if conf == NULL:
            raise MemoryError("cannot allocate TLS options")
        return conf


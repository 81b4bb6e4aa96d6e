"""Build ``pymongoose._mongoose_cffi``: Mongoose plus our C glue, CFFI out-of-line API mode.

Mongoose's own source is never part of this repository. It comes, in order, from
``$MONGOOSE_SRC`` (a folder holding ``mongoose.c`` and ``mongoose.h``), from a cached
copy in ``csrc/``, or from the pinned, hash-checked registry artifact that carries it
(see ``fetch_pinned_source``).
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"

# cdef headers, in dependency order; each sits beside the C it describes.
CDEF_HEADERS = [
    "cdef/core.h", "cdef/http.h", "cdef/ws.h", "cdef/mqtt.h", "cdef/util.h", "glue.h",
    "mqtt.h", "aio.h", "util.h", "tls.h", "sntp.h", "dns.h", "conn_limits.h",
    "static_policy.h", "asgi.h", "chunked.h", "portable.h", "ws_send.h", "cdef/callbacks.h",
]
GLUE_SOURCES = ["glue.c", "aio.c", "util.c", "tls.c", "mqtt.c", "sntp.c", "dns.c",
                "conn_limits.c", "static_policy.c", "asgi.c", "chunked.c", "portable.c",
                "ws_send.c"]

# Compile-time configuration shared by the binding and bench/'s C baseline server.
DEFINES = [
    ("MG_TLS", "MG_TLS_BUILTIN"),  # Mongoose's own TLS 1.3: no system library
    ("MG_ENABLE_IPV6", "1"),
    ("MG_ENABLE_DIRLIST", "1"),  # listings only where serve_dir(list_dirs=True) asks
    ("MG_MAX_RECV_SIZE", "(64UL * 1024UL * 1024UL)"),  # room for large request bodies
]
COMPILE_ARGS = ["-O2"]

# PYMONGOOSE_PORTABLE=1: build the code paths macOS and the BSDs compile (Mongoose's
# poll() instead of epoll, no malloc_trim, no MSG_NOSIGNAL; csrc/pymg_compat.h), so
# that a Linux CI exercises them (.ci/portable).
PORTABLE_DEFINES = [("MG_ENABLE_EPOLL", "0"), ("PYMG_FORCE_PORTABLE", "1")]

# PYMONGOOSE_SANITIZE=address[,undefined]: a debugging build under ASan/UBSan (README,
# "Sanitizers"). Only these two: either changes nothing but flags.
SANITIZERS = ("address", "undefined")

MONGOOSE_VERSION = "7.23"
PINNED_PROJECT = "cymongoose"
PINNED_ARCHIVE = "cymongoose-0.2.5.tar.gz"
PINNED_ARCHIVE_SHA256 = "8c0ec19752d493702c566735a28918f1b81a756197f78e4931c566dbad849a8f"
PINNED_MEMBERS = {
    "mongoose.c": (
        "cymongoose-0.2.5/thirdparty/mongoose/mongoose.c",
        "651d514ee52761c26af774d74e91346bf150c915120d967ec4332a69ea1600f5",
    ),
    "mongoose.h": (
        "cymongoose-0.2.5/thirdparty/mongoose/mongoose.h",
        "0ee23157099964b7ca1c7bf3e02b1b8250cbd7838a6938fed63726e720f70b0b",
    ),
}


class MongooseSourceError(RuntimeError):
    """Mongoose's source could not be found, fetched or verified."""


class BuildConfigError(RuntimeError):
    """A build setting from the environment (PYMONGOOSE_SANITIZE or _PORTABLE) is not valid."""


def _help(problem: str) -> str:
    return (
        f"pymongoose needs Mongoose {MONGOOSE_VERSION}'s mongoose.c and mongoose.h to build, "
        f"and {problem} To build without the network, or with your own (for example a "
        "commercially licensed or newer) Mongoose, point MONGOOSE_SRC at a folder that holds "
        "both files, e.g. `MONGOOSE_SRC=/path/to/mongoose pip install .`, or copy them into "
        f"{CSRC}/."
    )


def _log(message: str) -> None:
    print(f"pymongoose build: {message}", file=sys.stderr, flush=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pip_config_index_url() -> str | None:
    """The index-url from pip's configuration files, last one wins as in pip."""
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    home = Path.home()
    files += [home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    if os.environ.get("VIRTUAL_ENV"):
        files.append(Path(os.environ["VIRTUAL_ENV"]) / "pip.conf")
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    found = None
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "download", "install"):
            if parser.has_option(section, "index-url"):
                found = parser.get(section, "index-url")
    return found


def _pip_default_index_url() -> str | None:
    """pip's built-in default index, asked of pip itself (never written down here)."""
    try:
        from pip._internal.models.index import PyPI  # type: ignore[import-not-found]

        return str(PyPI.simple_url)
    except Exception:
        pass
    code = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
    for python in (getattr(sys, "_base_executable", None), shutil.which("python3")):
        if not python:
            continue
        try:
            out = subprocess.run(
                [python, "-c", code], capture_output=True, text=True, timeout=60, check=True
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip():
            return out.stdout.strip()
    return None


def package_index_url() -> str:
    """The package index pip is configured with: PIP_INDEX_URL, pip's config, pip's default."""
    url = os.environ.get("PIP_INDEX_URL") or _pip_config_index_url() or _pip_default_index_url()
    if not url:
        raise MongooseSourceError(_help("no package index is configured for pip."))
    return url.rstrip("/") + "/"


def _download(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return bytes(response.read())


def fetch_pinned_source(dest: Path) -> None:
    """Fetch the pinned sdist that carries Mongoose, check every hash, extract two files."""
    index = package_index_url()
    page_url = urllib.parse.urljoin(index, f"{PINNED_PROJECT}/")
    _log(f"fetching Mongoose {MONGOOSE_VERSION} from {PINNED_ARCHIVE} on {index}")
    try:
        page = json.loads(
            _download(page_url, {"Accept": "application/vnd.pypi.simple.v1+json"})
        )
        entry = next(f for f in page.get("files", []) if f.get("filename") == PINNED_ARCHIVE)
        archive_url = urllib.parse.urljoin(page_url, entry["url"])
        archive = _download(archive_url)
    except StopIteration:
        raise MongooseSourceError(
            _help(f"the package index {index} does not list {PINNED_ARCHIVE}.")
        ) from None
    except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        raise MongooseSourceError(
            _help(f"downloading {PINNED_ARCHIVE} from {index} failed ({exc}).")
        ) from exc
    if _sha256(archive) != PINNED_ARCHIVE_SHA256:
        raise MongooseSourceError(
            _help(f"{PINNED_ARCHIVE} from {index} does not match its pinned sha256.")
        )
    extracted = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for name, (member, digest) in PINNED_MEMBERS.items():
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            if _sha256(data) != digest:
                raise MongooseSourceError(
                    _help(f"{member} in {PINNED_ARCHIVE} does not match its pinned sha256.")
                )
            extracted[name] = data
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in extracted.items():
        tmp = dest / f".{name}.part"
        tmp.write_bytes(data)
        tmp.replace(dest / name)


def mongoose_source_dir() -> Path:
    """The folder holding mongoose.c and mongoose.h, fetching them if need be."""
    names = ("mongoose.c", "mongoose.h")
    user_dir = os.environ.get("MONGOOSE_SRC")
    if user_dir:
        folder = Path(user_dir).expanduser().resolve()
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise MongooseSourceError(
                _help(f"MONGOOSE_SRC={user_dir} has no {' or '.join(missing)}.")
            )
        return folder
    if all((CSRC / n).is_file() for n in names):
        return CSRC
    fetch_pinned_source(CSRC)
    return CSRC


# Bugs in Mongoose 7.23 that no glue can reach, fixed in a copy of mongoose.c made at
# build time (build/mongoose-fixed/). Each entry is (what, exact text, replacement); a
# source without the exact text (a newer or commercial Mongoose) is built as it is.
MONGOOSE_FIXES = [
    (
        # The TLS 1.3 CertificateVerify of an EC key DER-encodes r and s without dropping
        # their leading zero bytes: about one handshake in 128 carries a non-minimal
        # INTEGER that OpenSSL-based clients refuse as a bad signature. tls.c encodes it.
        "minimal DER for the server's ECDSA signature",
        """    neg1 = !!(sig[0] & 0x80);
    neg2 = !!(sig[32] & 0x80);
    verify[8] = 0x30;  // ASN.1 SEQUENCE
    verify[9] = (uint8_t) (68 + neg1 + neg2);
    verify[10] = 0x02;  // ASN.1 INTEGER
    verify[11] = (uint8_t) (32 + neg1);
    memmove(verify + 12 + neg1, sig, 32);
    verify[12 + 32 + neg1] = 0x02;  // ASN.1 INTEGER
    verify[13 + 32 + neg1] = (uint8_t) (32 + neg2);
    memmove(verify + 14 + 32 + neg1 + neg2, sig + 32, 32);

    sigsz = (size_t) (70 + neg1 + neg2);
""",
        """    (void) neg1;
    (void) neg2;
    {
      extern size_t pymg_tls_der_signature(const uint8_t *sig, uint8_t *out);
      sigsz = pymg_tls_der_signature(sig, verify + 8);  // pymongoose fix
    }
""",
    ),
    (
        # Certificate checks compare an IPv4 subjectAltName through a uint32_t load from
        # the certificate's bytes, wherever they lie: undefined behaviour (UBSan stops
        # on it), and a fault on CPUs that need aligned loads.
        "aligned IPv4 subjectAltName comparison",
        """          *((uint32_t *) name.value) == server_ip->addr.ip4)""",
        """          memcmp(name.value, &server_ip->addr.ip4, 4) == 0)  // pymongoose fix""",
    ),
    (
        # Speed, not behaviour: Mongoose zeroes every byte it drops from a connection's
        # buffers (each WebSocket frame read, each chunk written) one volatile store at a
        # time, ~900 instructions per 64-byte echo. memset followed by a compiler barrier
        # zeroes the same bytes, and can be dropped by the compiler no more than the loop.
        "mg_bzero at memset speed",
        """    while (len--) *buf++ = 0;
""",
        """#if defined(__GNUC__) || defined(__clang__)  // pymongoose fix
    memset((void *) buf, 0, len);
    __asm__ __volatile__("" : : "r"(buf) : "memory");
#else
    while (len--) *buf++ = 0;
#endif
""",
    ),
    (
        # Every frame a client sends is masked (RFC 6455 5.3): Mongoose unmasks it a
        # byte at a time, ~500 instructions of a 64-byte echo's ~1,100 in the C server.
        # Eight bytes at a time with the 4-byte key repeated twice does the same XOR
        # (8 is a multiple of 4, so the tail continues with the right key byte). The
        # key is read only when there is a payload: for a header cut short, Mongoose's
        # key pointer is 4 bytes before the buffer (the byte loop never read it).
        "WebSocket unmasking eight bytes at a time",
        """    for (i = 0; i < msg->data_len; i++) p[i] ^= m[i & 3];
""",
        """    i = 0;
    if (msg->data_len >= 8) {  // pymongoose fix: eight bytes at a time
      uint32_t key32;  // (read only with a payload: a header cut short has no key)
      uint64_t key64, word;
      memcpy(&key32, m, sizeof(key32));
      key64 = ((uint64_t) key32 << 32) | key32;
      for (; i + 8 <= msg->data_len; i += 8) {
        memcpy(&word, p + i, sizeof(word));
        word ^= key64;
        memcpy(p + i, &word, sizeof(word));
      }
    }
    for (; i < msg->data_len; i++) p[i] ^= m[i & 3];
""",
    ),
    (
        # The same for the frames a WebSocket client sends (it masks them).
        "WebSocket masking of sent frames eight bytes at a time",
        """    for (i = 0; i < len; i++) p[i] ^= mask[i & 3];
""",
        """    i = 0;
    if (len >= 8) {  // pymongoose fix: eight bytes at a time
      uint32_t key32;
      uint64_t key64, word;
      memcpy(&key32, mask, sizeof(key32));
      key64 = ((uint64_t) key32 << 32) | key32;
      for (; i + 8 <= len; i += 8) {
        memcpy(&word, p + i, sizeof(word));
        word ^= key64;
        memcpy(p + i, &word, sizeof(word));
      }
    }
    for (; i < len; i++) p[i] ^= mask[i & 3];
""",
    ),
]


def fixed_mongoose_c(source_dir: Path) -> Path:
    """mongoose.c with MONGOOSE_FIXES applied, written under build/ when one applies."""
    original = source_dir / "mongoose.c"
    text = original.read_text(encoding="utf-8", errors="surrogateescape")
    applied = 0
    for what, old, new in MONGOOSE_FIXES:
        if text.count(old) == 1:
            text = text.replace(old, new)
            applied += 1
        else:
            _log(f"Mongoose fix not applied ({what}): its code is not in this mongoose.c")
    if applied == 0:
        return original
    target = ROOT / "build" / "mongoose-fixed" / "mongoose.c"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8", errors="surrogateescape")
    if not target.is_file() or target.read_bytes() != data:
        target.write_bytes(data)
    return target


#: C functions whose cffi wrapper keeps the GIL across the call, on CPython (PyPy calls
#: C directly, never through these wrappers). cffi releases and retakes the GIL around
#: every call: about 400 instructions, 6% of a WebSocket echo. Only functions on the
#: per-message paths are listed, and each must return in bounded time without waiting:
#: no poll, no wait on a file or a lock; a send() on a non-blocking socket is allowed.
#: (One that calls back into Python would still be safe: cffi's callbacks take the GIL
#: re-entrantly.)
GIL_KEPT = (
    "pymg_ws_send", "mg_ws_send", "pymg_http_reply", "mg_send", "pymg_asgi_send",
    "pymg_conn_flags", "mg_mqtt_pub", "pymg_mqtt_version",
)


GIL_KEPT_MARK = "/* pymongoose: the GIL is kept (build_ffi.GIL_KEPT) */"


def keep_gil(c_source: str, names: tuple[str, ...] = GIL_KEPT) -> tuple[str, list[str]]:
    """cffi's generated C with the GIL release taken out of ``names``' wrappers.

    Returns the new text and the names whose wrapper was found in neither cffi's usual
    shape nor already edited.
    """
    missing = []
    for name in names:
        call = (r"  _cffi_restore_errno\(\);\n  \{ (?:result = )?" + re.escape(name)
                + r"\([^;]*\); \}\n  _cffi_save_errno\(\);\n")
        released = re.compile(f"  Py_BEGIN_ALLOW_THREADS\\n({call})  Py_END_ALLOW_THREADS\\n")
        c_source, count = released.subn(lambda m: f"  {GIL_KEPT_MARK}\n{m.group(1)}", c_source)
        if count != 1 and not re.search(re.escape(GIL_KEPT_MARK) + r"\n" + call, c_source):
            missing.append(name)
    return c_source, missing


def keep_gil_in_file(c_file: Path, names: tuple[str, ...] = GIL_KEPT) -> None:
    """Apply :func:`keep_gil` to the C file cffi generated; a build step of setup.py."""
    text = c_file.read_text(encoding="utf-8")
    edited, missing = keep_gil(text, names)
    if missing:
        _log("the GIL is released around these calls after all (cffi's generated "
             f"wrapper has a shape this build does not know): {', '.join(missing)}")
    if edited != text:
        c_file.write_text(edited, encoding="utf-8")


def _read_cdefs() -> str:
    return "\n".join((CSRC / name).read_text() for name in CDEF_HEADERS)


def _build_path(path: Path) -> str:
    """Paths under the project are given relative to it, as setuptools prefers."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def sanitizer_args(spec: str | None = None) -> tuple[list[str], list[str]]:
    """Extra (compile, link) arguments for ``PYMONGOOSE_SANITIZE``; empty when unset."""
    if spec is None:
        spec = os.environ.get("PYMONGOOSE_SANITIZE", "")
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    if not kinds:
        return [], []
    unknown = [k for k in kinds if k not in SANITIZERS]
    if unknown:
        raise BuildConfigError(
            f"PYMONGOOSE_SANITIZE={spec!r}: unknown sanitizer {', '.join(unknown)}; "
            f"use a comma-separated list of {', '.join(SANITIZERS)}."
        )
    flag = "-fsanitize=" + ",".join(dict.fromkeys(kinds))
    return [flag, "-fno-omit-frame-pointer", "-g", "-O1"], [flag]


def portable_defines(setting: str | None = None) -> list[tuple[str, str]]:
    """Extra macros for ``PYMONGOOSE_PORTABLE`` (1: the portable path); none when unset or 0."""
    if setting is None:
        setting = os.environ.get("PYMONGOOSE_PORTABLE", "")
    setting = setting.strip()
    if setting in ("", "0"):
        return []
    if setting == "1":
        return list(PORTABLE_DEFINES)
    raise BuildConfigError(f"PYMONGOOSE_PORTABLE={setting!r}: use 1 (portable path) or 0.")


def make_ffibuilder() -> FFI:
    """The FFI that builds ``pymongoose._mongoose_cffi``."""
    source_dir = mongoose_source_dir()
    sanitize_compile, sanitize_link = sanitizer_args()
    builder = FFI()
    builder.cdef(_read_cdefs())
    builder.set_source(
        "pymongoose._mongoose_cffi",
        '#include "mongoose.h"\n#include "glue.h"\n#include "mqtt.h"\n#include "aio.h"\n'
        '#include "util.h"\n#include "tls.h"\n#include "sntp.h"\n#include "dns.h"\n'
        '#include "conn_limits.h"\n#include "static_policy.h"\n#include "asgi.h"\n'
        '#include "chunked.h"\n#include "portable.h"\n#include "ws_send.h"\n',
        sources=[_build_path(fixed_mongoose_c(source_dir))]
        + [_build_path(CSRC / s) for s in GLUE_SOURCES],
        include_dirs=[_build_path(source_dir), _build_path(CSRC)],
        define_macros=DEFINES + portable_defines(),
        extra_compile_args=COMPILE_ARGS + sanitize_compile,
        extra_link_args=sanitize_link,
    )
    return builder


def ffibuilder() -> FFI:
    """Entry point for setuptools' ``cffi_modules``: one paragraph, not a traceback, on failure."""
    try:
        return make_ffibuilder()
    except (MongooseSourceError, BuildConfigError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    # Development build in place: `python build_ffi.py`. Through setup.py, so that it is
    # the build pip makes (GIL_KEPT included).
    os.chdir(ROOT)
    sys.exit(subprocess.call([sys.executable, "setup.py", "build_ext", "--inplace"]))

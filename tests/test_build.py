"""Where the build finds Mongoose: MONGOOSE_SRC, the cached copy, or the pinned fetch.

The fetch is exercised against a package index of our own on 127.0.0.1, serving a
stand-in archive: the hash checks must refuse it as it is, and accept it once the test
pins its hashes instead.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import build_ffi  # noqa: E402

FAKE_C = b"/* stand-in mongoose.c */\n"
FAKE_H = b"/* stand-in mongoose.h */\n"


def _fake_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (member, _digest) in build_ffi.PINNED_MEMBERS.items():
            data = FAKE_C if name == "mongoose.c" else FAKE_H
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def fake_index(monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """A PEP 691 index on 127.0.0.1 listing the pinned archive name with stand-in bytes."""
    archive = _fake_archive()
    page = json.dumps({
        "meta": {"api-version": "1.0"},
        "name": build_ffi.PINNED_PROJECT,
        "files": [{
            "filename": build_ffi.PINNED_ARCHIVE,
            "url": f"../../files/{build_ffi.PINNED_ARCHIVE}",
            "hashes": {"sha256": hashlib.sha256(archive).hexdigest()},
        }],
    }).encode()

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server names its hooks this way
            body = page if self.path.startswith("/simple/") else archive
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple/")
    try:
        yield archive
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_refuses_an_archive_whose_hash_differs(fake_index: bytes, tmp_path: Path) -> None:
    with pytest.raises(build_ffi.MongooseSourceError) as caught:
        build_ffi.fetch_pinned_source(tmp_path)
    message = str(caught.value)
    assert "sha256" in message and "MONGOOSE_SRC" in message
    assert not (tmp_path / "mongoose.c").exists()


def test_fetch_refuses_a_member_whose_hash_differs(
    fake_index: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_ffi, "PINNED_ARCHIVE_SHA256", hashlib.sha256(fake_index).hexdigest())
    with pytest.raises(build_ffi.MongooseSourceError, match=r"mongoose.c in .* sha256"):
        build_ffi.fetch_pinned_source(tmp_path)
    assert not (tmp_path / "mongoose.c").exists()


def test_fetch_extracts_both_files_when_every_hash_matches(
    fake_index: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_ffi, "PINNED_ARCHIVE_SHA256", hashlib.sha256(fake_index).hexdigest())
    members = {
        name: (member, hashlib.sha256(FAKE_C if name == "mongoose.c" else FAKE_H).hexdigest())
        for name, (member, _digest) in build_ffi.PINNED_MEMBERS.items()
    }
    monkeypatch.setattr(build_ffi, "PINNED_MEMBERS", members)
    build_ffi.fetch_pinned_source(tmp_path)
    assert (tmp_path / "mongoose.c").read_bytes() == FAKE_C
    assert (tmp_path / "mongoose.h").read_bytes() == FAKE_H


def test_unreachable_index_gives_one_paragraph_naming_mongoose_src(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple/")
    with pytest.raises(build_ffi.MongooseSourceError) as caught:
        build_ffi.fetch_pinned_source(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "MONGOOSE_SRC" in message and f"127.0.0.1:{port}" in message


def test_mongoose_src_wins_and_must_hold_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mongoose.c").write_bytes(FAKE_C)
    monkeypatch.setenv("MONGOOSE_SRC", str(tmp_path))
    with pytest.raises(build_ffi.MongooseSourceError, match=r"MONGOOSE_SRC=.* no mongoose.h"):
        build_ffi.mongoose_source_dir()
    (tmp_path / "mongoose.h").write_bytes(FAKE_H)
    assert build_ffi.mongoose_source_dir() == tmp_path.resolve()


def test_index_url_comes_from_pip_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = http://127.0.0.1:1/configured/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    assert build_ffi.package_index_url() == "http://127.0.0.1:1/configured/simple/"
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:1/env/simple")
    assert build_ffi.package_index_url() == "http://127.0.0.1:1/env/simple/"


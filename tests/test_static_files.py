"""Static files: serve_dir and serve_file against a folder made for each test.

The folder's parent holds a secret file; no request, however its path is spelt, may
bring the secret back.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import requests
from _tools import require
from conftest import read_until_closed

from pymongoose import MG_EV_HTTP_MSG, Connection

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
#: The ``serve`` fixture of conftest: ``with serve(handler) as server: ...``
Serve = Callable[..., Any]


@dataclass
class Site:
    """A document root under a parent folder that holds a secret."""

    root: Path
    secret: bytes
    blob: bytes


@pytest.fixture
def site(tmp_path: Path) -> Site:
    secret = f"TOP-SECRET-{uuid.uuid4().hex}".encode()
    (tmp_path / "secret.txt").write_bytes(secret)
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "style.css").write_text("body { color: red; }\n")
    (root / "app.js").write_text("console.log('hi');\n")
    (root / "data.json").write_text('{"answer": 42}\n')
    (root / "logo.png").write_bytes(PNG_BYTES)
    blob = bytes(i * 7 % 251 for i in range(300_000))
    (root / "blob.bin").write_bytes(blob)
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (root / "docs" / "notes.txt").write_text("some notes\n")
    return Site(root, secret, blob)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests Session that ignores proxy settings from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def site_url(serve: Serve, site: Site) -> Iterator[str]:
    """Base URL of a server answering every request with serve_dir(site.root)."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, str(site.root))

    with serve(handler) as server:
        yield server.url


def curl_as_is(url: str, *args: str) -> bytes:
    """curl -i, with the path sent exactly as written (no dot-segment cleanup)."""
    require("curl")
    result = subprocess.run(
        ["curl", "-s", "-i", "--noproxy", "*", "--max-time", str(TIMEOUT), "--path-as-is",
         *args, url],
        capture_output=True, timeout=TIMEOUT + 5, check=True,
    )
    return result.stdout


def test_index_html_for_root(site_url: str, http: requests.Session) -> None:
    """``/`` and a folder's ``/docs/`` are answered with their index.html."""
    root = http.get(site_url + "/", timeout=TIMEOUT)
    docs = http.get(site_url + "/docs/", timeout=TIMEOUT)
    assert root.status_code == 200
    assert root.text == "<h1>home</h1>\n"
    assert root.headers["Content-Type"].startswith("text/html")
    assert docs.text == "<h1>docs</h1>\n"


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("index.html", "text/html"),
        ("style.css", "text/css"),
        ("app.js", "javascript"),
        ("data.json", "application/json"),
        ("logo.png", "image/png"),
    ],
)
def test_mime_types(site_url: str, site: Site, http: requests.Session, name: str,
                    mime: str) -> None:
    """Content-Type follows the file extension; the bytes are the file's."""
    r = http.get(f"{site_url}/{name}", timeout=TIMEOUT)
    assert r.status_code == 200
    assert mime in r.headers["Content-Type"]
    assert r.content == (site.root / name).read_bytes()
    assert r.headers["Content-Length"] == str(len(r.content))


def test_missing_file_is_404(site_url: str, http: requests.Session) -> None:
    r = http.get(site_url + "/no-such-file.txt", timeout=TIMEOUT)
    assert r.status_code == 404
    nested = http.get(site_url + "/docs/missing/deeper.html", timeout=TIMEOUT)
    assert nested.status_code == 404


def test_large_file_arrives_intact(site_url: str, site: Site, http: requests.Session) -> None:
    """A file bigger than one send buffer arrives whole."""
    r = http.get(site_url + "/blob.bin", timeout=TIMEOUT)
    assert r.status_code == 200
    assert len(r.content) == len(site.blob)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(site.blob).digest()


def test_etag_then_if_none_match_gives_304(site_url: str, http: requests.Session) -> None:
    """The ETag of a first answer, sent back in If-None-Match, gives 304 with no body."""
    first = http.get(site_url + "/style.css", timeout=TIMEOUT)
    etag = first.headers["ETag"]
    assert etag
    again = http.get(site_url + "/style.css", headers={"If-None-Match": etag}, timeout=TIMEOUT)
    assert again.status_code == 304
    assert again.content == b""
    stale = http.get(site_url + "/style.css", headers={"If-None-Match": '"not-it"'},
                     timeout=TIMEOUT)
    assert stale.status_code == 200
    assert stale.content == first.content


def test_etag_changes_with_the_file(site_url: str, site: Site, http: requests.Session) -> None:
    """After the file changes, the old ETag no longer gives 304."""
    etag = http.get(site_url + "/data.json", timeout=TIMEOUT).headers["ETag"]
    (site.root / "data.json").write_text('{"answer": 43, "changed": true}\n')
    r = http.get(site_url + "/data.json", headers={"If-None-Match": etag}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"answer": 43, "changed": True}
    assert r.headers["ETag"] != etag


@pytest.mark.parametrize(("header", "start", "end"),
                         [("bytes=0-9", 0, 9), ("bytes=1000-1999", 1000, 1999),
                          ("bytes=299990-", 299990, 299999)])
def test_range_gives_206(site_url: str, site: Site, http: requests.Session, header: str,
                         start: int, end: int) -> None:
    """A Range request gets 206, exactly those bytes, and a matching Content-Range."""
    r = http.get(site_url + "/blob.bin", headers={"Range": header}, timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.content == site.blob[start:end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(site.blob)}"
    assert r.headers["Content-Length"] == str(end - start + 1)


def test_range_past_the_end_gives_416(site_url: str, site: Site,
                                      http: requests.Session) -> None:
    r = http.get(site_url + "/blob.bin", headers={"Range": "bytes=400000-"}, timeout=TIMEOUT)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(site.blob)}"


def test_head_sends_headers_only(site_url: str, site: Site) -> None:
    """HEAD gets the GET headers (same length and ETag) and no body."""
    out = curl_as_is(site_url + "/data.json", "-I")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {(site.root / 'data.json').stat().st_size}".encode() in head
    assert b"Etag:" in head or b"ETag:" in head
    assert body == b""


def test_folder_without_slash_redirects(site_url: str, http: requests.Session) -> None:
    r = http.get(site_url + "/docs", allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["Location"] == "/docs/"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/.%2e/secret.txt",
        "/docs/../../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/docs/..%2f..%2fsecret.txt",
        "/..",
    ],
)
def test_path_traversal_is_refused(site_url: str, site: Site, path: str) -> None:
    """Paths climbing out of the root are refused and never reveal the file outside it."""
    out = curl_as_is(site_url + path)
    status_line = out.split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"403", b"404"), status_line
    assert site.secret not in out


def test_traversal_on_raw_socket_is_refused(site_url: str, site: Site) -> None:
    """The same, with the request line written by hand so no client can tidy it."""
    port = urlsplit(site_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /%2e%2e/%2E%2E/..%2f/secret.txt HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 4")
    assert site.secret not in answer


def test_serve_dir_accepts_path_objects_and_options(serve: Serve, site: Site,
                                                    http: requests.Session) -> None:
    """root_dir may be a Path; extra headers, extra MIME types and a 404 page apply."""
    (site.root / "readme.md").write_text("# hello\n")
    (site.root / "404.html").write_text("<p>lost</p>\n")

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, site.root, extra_headers={"X-Served-By": "pymongoose"},
                           mime_types="md=text/markdown", page404=str(site.root / "404.html"))

    with serve(handler) as server:
        md = http.get(server.url + "/readme.md", timeout=TIMEOUT)
        lost = http.get(server.url + "/nowhere", timeout=TIMEOUT)
    assert md.status_code == 200
    assert md.headers["Content-Type"] == "text/markdown"
    assert md.headers["X-Served-By"] == "pymongoose"
    assert md.text == "# hello\n"
    assert lost.text == "<p>lost</p>\n"


def test_serve_dir_missing_root_raises(serve: Serve, tmp_path: Path,
                                       http: requests.Session) -> None:
    """A root that is not a folder raises FileNotFoundError in the handler."""
    raised: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            try:
                conn.serve_dir(data, str(tmp_path / "absent"))
            except FileNotFoundError as exc:
                raised.append(exc)
                conn.reply(500, "no root")

    with serve(handler) as server:
        r = http.get(server.url + "/", timeout=TIMEOUT)
    assert r.status_code == 500
    assert len(raised) == 1


def test_serve_file(serve: Serve, site: Site, http: requests.Session) -> None:
    """serve_file answers any URI with that one file, with MIME type, ETag and Range."""
    target = site.root / "logo.png"

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/gone":
                conn.serve_file(data, str(site.root / "gone.png"))
            else:
                conn.serve_file(data, str(target))

    with serve(handler) as server:
        r = http.get(server.url + "/any/path/at/all", timeout=TIMEOUT)
        cached = http.get(server.url + "/x", headers={"If-None-Match": r.headers["ETag"]},
                          timeout=TIMEOUT)
        part = http.get(server.url + "/x", headers={"Range": "bytes=8-15"}, timeout=TIMEOUT)
        gone = http.get(server.url + "/gone", timeout=TIMEOUT)
        # Even a climbing path gets the one file, never what it names.
        climbing = curl_as_is(server.url + "/../secret.txt")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "image/png"
    assert r.content == PNG_BYTES
    assert cached.status_code == 304
    assert cached.content == b""
    assert part.status_code == 206
    assert part.content == PNG_BYTES[8:16]
    assert part.headers["Content-Range"] == f"bytes 8-15/{len(PNG_BYTES)}"
    assert gone.status_code == 404
    assert site.secret not in climbing
    assert climbing.endswith(PNG_BYTES)

"""Static-file policy of serve_dir: symlinks, hidden entries, folder listings.

The document root sits beside an ``outside`` folder holding a secret; symlinks in the
root point both ways. No request may bring the secret back, whatever the options.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from _tools import require
from conftest import serving

from pymongoose import MG_EV_HTTP_MSG, Connection

TIMEOUT = 10


@dataclass
class Tree:
    """A document root, and a secret outside it."""

    root: Path
    secret: bytes


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    secret = f"SECRET-{uuid.uuid4().hex}".encode()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(secret)
    (outside / "index.html").write_bytes(secret)
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text("home\n")
    (root / "plain.txt").write_text("plain\n")
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_text("inner\n")
    (root / ".env").write_text("API_KEY=hidden\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "files").mkdir()  # no index: listed only on request
    (root / "files" / "a.txt").write_text("a\n")
    (root / "files" / ".hidden.txt").write_text("dot\n")
    (root / "files" / "out.txt").symlink_to(outside / "secret.txt")
    (root / "files" / "in.txt").symlink_to(root / "plain.txt")
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    (root / "link-out-dir").symlink_to(outside, target_is_directory=True)
    (root / "link-in.txt").symlink_to(root / "plain.txt")
    (root / "link-in-dir").symlink_to(root / "sub", target_is_directory=True)
    (root / "relative-out.txt").symlink_to(Path("..") / "outside" / "secret.txt")
    (root / "index-out").mkdir()
    (root / "index-out" / "index.html").symlink_to(outside / "index.html")
    (root / "404.html").write_text("custom not found\n")
    return Tree(root, secret)


@contextmanager
def static_server(tree: Tree, **options: Any) -> Iterator[str]:
    """A server answering everything with serve_dir(tree.root, **options); its URL."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, str(tree.root), **options)

    with serving(handler) as server:
        yield server.url


def fetch(url: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=TIMEOUT, allow_redirects=False)


def raw_get(url: str) -> bytes:
    """curl -i with the path exactly as written."""
    require("curl")
    return subprocess.run(
        ["curl", "-s", "-i", "--noproxy", "*", "--max-time", str(TIMEOUT), "--path-as-is", url],
        capture_output=True, timeout=TIMEOUT + 5, check=True).stdout


# -- symlinks --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/link-out.txt", "/relative-out.txt", "/link-out-dir/secret.txt", "/link-out-dir/",
    "/link-out-dir", "/files/out.txt", "/index-out/", "/link-out-dir/index.html",
])
def test_symlinks_out_of_the_root_are_404(tree: Tree, path: str) -> None:
    with static_server(tree) as url:
        r = fetch(url + path)
    assert r.status_code == 404, (path, r.status_code)
    assert tree.secret not in r.content


@pytest.mark.parametrize("path, body", [
    ("/link-in.txt", b"plain\n"), ("/link-in-dir/inner.txt", b"inner\n"),
    ("/files/in.txt", b"plain\n"),
])
def test_symlinks_inside_the_root_work(tree: Tree, path: str, body: bytes) -> None:
    with static_server(tree) as url:
        r = fetch(url + path)
    assert (r.status_code, r.content) == (200, body)


def test_refusal_looks_like_a_missing_file(tree: Tree) -> None:
    """With page404, a refused path gets exactly what a missing one gets (Mongoose sends
    page404 with status 200), so a client cannot tell that something is there."""
    with static_server(tree, page404=str(tree.root / "404.html")) as url:
        refused = [fetch(url + path) for path in ("/link-out.txt", "/.env")]
        missing = fetch(url + "/nowhere.txt")
    assert missing.text == "custom not found\n"
    for r in refused:
        assert (r.status_code, r.text) == (missing.status_code, missing.text)


def test_allow_hidden_does_not_open_symlinks_out(tree: Tree) -> None:
    with static_server(tree, allow_hidden=True, list_dirs=True) as url:
        assert fetch(url + "/link-out.txt").status_code == 404
        listing = fetch(url + "/files/")
    assert listing.status_code == 200
    assert b"out.txt" not in listing.content


# -- hidden files ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/.env", "/.git/config", "/.git/", "/%2eenv", "/%2Egit/config", "/sub/../.env",
    "/files/.hidden.txt",
])
def test_hidden_entries_are_refused_by_default(tree: Tree, path: str) -> None:
    with static_server(tree) as url:
        out = raw_get(url + path)
    status = int(out.split(b" ", 2)[1])
    assert status in (400, 404), out[:200]  # 400: Mongoose's own refusal of ".."
    assert b"API_KEY" not in out and b"[core]" not in out and b"dot\n" not in out


@pytest.mark.parametrize("path, body", [
    ("/.env", b"API_KEY=hidden\n"), ("/.git/config", b"[core]\n"),
    ("/files/.hidden.txt", b"dot\n"),
])
def test_allow_hidden_serves_them(tree: Tree, path: str, body: bytes) -> None:
    with static_server(tree, allow_hidden=True) as url:
        r = fetch(url + path)
    assert (r.status_code, r.content) == (200, body)


def test_names_merely_containing_dots_are_served(tree: Tree) -> None:
    (tree.root / "a.b.c").write_text("dots\n")
    (tree.root / "sub" / "x..y").write_text("two dots\n")
    with static_server(tree) as url:
        assert fetch(url + "/a.b.c").text == "dots\n"
        assert fetch(url + "/sub/x..y").text == "two dots\n"


# -- folder listings --------------------------------------------------------------------------


def test_folder_without_index_is_403_by_default(tree: Tree) -> None:
    with static_server(tree) as url:
        r = fetch(url + "/files/")
        assert r.status_code == 403
        assert b"a.txt" not in r.content
        assert fetch(url + "/sub/").status_code == 403
        # A folder with an index still serves it.
        assert fetch(url + "/").text == "home\n"


def test_list_dirs_lists_without_hidden_entries(tree: Tree) -> None:
    with static_server(tree, list_dirs=True) as url:
        r = fetch(url + "/files/")
        assert r.status_code == 200
        assert b"a.txt" in r.content and b"in.txt" in r.content
        assert b".hidden.txt" not in r.content and b"out.txt" not in r.content
        assert fetch(url + "/files/a.txt").text == "a\n"
        # The missing slash is still a redirect to the folder first.
        redirect = fetch(url + "/files")
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == "/files/"


def test_list_dirs_with_allow_hidden_lists_dotfiles(tree: Tree) -> None:
    with static_server(tree, list_dirs=True, allow_hidden=True) as url:
        r = fetch(url + "/files/")
    assert r.status_code == 200
    assert b".hidden.txt" in r.content

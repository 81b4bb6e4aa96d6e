"""``python -m pymongoose``: the static file server with a WebSocket echo at /ws.

Run as a child process on 127.0.0.1 port 0 (the real URL is read from what it prints),
driven with requests and websocket-client, stopped with SIGINT or SIGTERM.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import websocket
from subprocess_helpers import Child, run_to_end, running

from pymongoose.__main__ import main

TIMEOUT = 10.0
URL_LINE = (r"^Serving files from (?P<root>.+) at (?P<url>http://127\.0\.0\.1:\d+)/ "
            r"\(1 worker, WebSocket echo at (?P<ws>\S+)\)$")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder to serve: an index page, a text file and a subfolder without an index
    (with a dotfile and a dot-folder in it)."""
    (tmp_path / "index.html").write_text("<p>welcome</p>\n")
    (tmp_path / "hello.txt").write_text("hello from a file\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (tmp_path / "sub" / ".secret").write_text("not for listing\n")
    (tmp_path / "sub" / ".git").mkdir()
    (tmp_path / "sub" / "inner").mkdir()
    return tmp_path


def start(child: Child, root: Path) -> tuple[str, str]:
    """Wait for the startup line; return the base and WebSocket URLs it names."""
    match = child.wait_for(URL_LINE)
    assert Path(match["root"]) == root.resolve()
    url, ws_url = match["url"], match["ws"]
    assert urlsplit(url).port != 0
    assert ws_url == "ws" + url[len("http"):] + "/ws"
    return url, ws_url


def test_serves_files_and_echoes_websocket_then_sigint(site: Path) -> None:
    with running("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                 "--root", str(site)) as child:
        url, ws_url = start(child, site)

        index = requests.get(url + "/", timeout=TIMEOUT)
        assert index.status_code == 200
        assert index.text == "<p>welcome</p>\n"
        assert index.headers["Content-Type"].startswith("text/html")
        assert requests.get(url + "/index.html", timeout=TIMEOUT).text == "<p>welcome</p>\n"

        hello = requests.get(url + "/hello.txt", timeout=TIMEOUT)
        assert (hello.status_code, hello.text) == (200, "hello from a file\n")
        assert hello.headers["Content-Type"].startswith("text/plain")

        data = requests.get(url + "/sub/data.bin", timeout=TIMEOUT)
        assert data.content == bytes(range(256))

        assert requests.get(url + "/no/such/file.txt", timeout=TIMEOUT).status_code == 404

        ws = websocket.create_connection(ws_url, timeout=TIMEOUT)
        try:
            ws.send("text ✓")
            opcode, echoed = ws.recv_data()
            assert (opcode, echoed) == (websocket.ABNF.OPCODE_TEXT, "text ✓".encode())
            ws.send_binary(b"\x00\xffbinary\x00")
            opcode, echoed = ws.recv_data()
            assert (opcode, echoed) == (websocket.ABNF.OPCODE_BINARY, b"\x00\xffbinary\x00")
        finally:
            ws.close()

        assert child.stop(signal.SIGINT) == 0
        assert "Traceback" not in child.stderr()


def test_a_folder_without_index_is_listed_without_hidden_entries(site: Path) -> None:
    with running("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                 "--root", str(site)) as child:
        url, _ = start(child, site)
        listing = requests.get(url + "/sub/", timeout=TIMEOUT)
        assert listing.status_code == 200
        assert listing.headers["Content-Type"].startswith("text/html")
        assert "data.bin" in listing.text and "inner/" in listing.text
        assert ".secret" not in listing.text and ".git" not in listing.text
        assert requests.get(url + "/sub/.secret", timeout=TIMEOUT).status_code == 404
        # a folder with an index page still gets the page
        assert requests.get(url + "/", timeout=TIMEOUT).text == "<p>welcome</p>\n"
        assert child.stop(signal.SIGINT) == 0


def test_no_list_refuses_folders_without_index(site: Path) -> None:
    with running("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                 "--root", str(site), "--no-list") as child:
        url, _ = start(child, site)
        refused = requests.get(url + "/sub/", timeout=TIMEOUT)
        assert refused.status_code == 403
        assert "data.bin" not in refused.text
        assert requests.get(url + "/sub/data.bin", timeout=TIMEOUT).status_code == 200
        assert requests.get(url + "/", timeout=TIMEOUT).text == "<p>welcome</p>\n"
        assert child.stop(signal.SIGINT) == 0


def test_etag_and_range_requests(site: Path) -> None:
    with running("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                 "--root", str(site)) as child:
        url, _ = start(child, site)
        first = requests.get(url + "/hello.txt", timeout=TIMEOUT)
        etag = first.headers["ETag"]
        again = requests.get(url + "/hello.txt", headers={"If-None-Match": etag},
                             timeout=TIMEOUT)
        assert again.status_code == 304
        part = requests.get(url + "/hello.txt", headers={"Range": "bytes=0-4"}, timeout=TIMEOUT)
        assert (part.status_code, part.content) == (206, b"hello")
        assert child.stop(signal.SIGTERM) == 0


def test_sigterm_exits_cleanly(site: Path) -> None:
    with running("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                 "--root", str(site)) as child:
        url, _ = start(child, site)
        assert requests.get(url + "/hello.txt", timeout=TIMEOUT).status_code == 200
        assert child.stop(signal.SIGTERM) == 0
        assert "Traceback" not in child.stderr()


def test_missing_root_exits_2_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "not-here"
    result = run_to_end("-m", "pymongoose", "--listen", "http://127.0.0.1:0",
                        "--root", str(missing))
    assert result.returncode == 2
    assert "not-here" in result.stderr
    assert "is not a directory" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_busy_port_exits_2_with_a_message(site: Path, busy_port: int) -> None:
    url = f"http://127.0.0.1:{busy_port}"
    result = run_to_end("-m", "pymongoose", "--listen", url, "--root", str(site))
    assert result.returncode == 2
    assert f"cannot listen on {url}" in result.stderr
    assert "Address already in use" in result.stderr
    assert result.stdout == ""


def test_main_in_process_refuses_a_missing_root(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--listen", "http://127.0.0.1:0", "--root", str(tmp_path / "gone")])
    assert status == 2
    err = capsys.readouterr().err
    assert "gone" in err and "is not a directory" in err


def test_main_in_process_refuses_a_busy_port(
        site: Path, busy_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", f"http://127.0.0.1:{busy_port}", "--root", str(site)]) == 2
    assert "Address already in use" in capsys.readouterr().err


def test_main_in_process_refuses_an_unknown_scheme(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "ftp://127.0.0.1:0", "--root", str(site)]) == 2
    assert "unknown scheme 'ftp'" in capsys.readouterr().err

"""Every Python block in README.md and docs/ runs.

The conventions (CONTRIBUTING.md, "Code blocks in the docs"):

- every fenced block names its language; ``python`` blocks are run, others are not;
- an unmarked ``python`` block is a complete program: run in a fresh folder, it must exit
  with status 0 within the timeout;
- ``<!-- snippet: server [http PATH -> TEXT | ws PATH MESSAGE -> TEXT] -->`` on the line
  before marks a program that serves until Ctrl-C: its ports are replaced by 0, it must
  print its address, answer the probe, and exit with status 0 on SIGINT;
- ``<!-- snippet: needs NAME, ... -->`` marks a fragment: the names in PROVIDERS are
  defined before it runs.

docs/drafts/ (pages other branches have not integrated yet) is left out, as the docs
build leaves it out.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest
import websocket

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DOCS = ROOT / "docs"
#: Seconds a program may take; servers get as long to start and as long to stop.
TIMEOUT = 60.0


def pages() -> list[Path]:
    """README, CHANGELOG, CONTRIBUTING and every docs page, drafts and build output left out."""
    found = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md"]
    for path in sorted(DOCS.rglob("*.md")):
        parts = path.relative_to(DOCS).parts
        if parts[0] not in ("drafts", "_build"):
            found.append(path)
    return [path for path in found if path.exists()]


FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced block: where it is, its info string, its text and its snippet marker."""

    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str
    marker: Optional[str] = None

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def is_python(self) -> bool:
        return self.language in ("python", "py")

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, each with the marker on the line before it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        end = i + 1
        while end < len(lines) and not (lines[end].startswith(fence[0] * len(fence))
                                         and not lines[end].strip(fence[0]).strip()):
            end += 1
        assert end < len(lines), f"{path}:{i + 1}: fence never closed"
        blocks.append(Block(path, i + 1, opening["info"].strip(), "\n".join(lines[i + 1:end]),
                            marker["body"] if marker else None))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for page in pages() for block in parse(page)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.is_python]


# --- what a fragment may ask for ------------------------------------------------------

TLS_PAGE = DOCS / "tls.md"


def make_tls_files(folder: Path) -> None:
    """ca.crt, server.crt and server.key, made by the commands docs/tls.md shows."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (Debian package openssl)")
    script = next(block.code for block in parse(TLS_PAGE)
                  if block.language == "sh" and "openssl ecparam" in block.code)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, check=True,
                   capture_output=True, timeout=TIMEOUT)


SNTP_SERVER = f"""
import sys, time
sys.path.insert(0, {str(TESTS)!r})
from net_helpers import UdpResponder, ntp_reply
_sntp = UdpResponder(lambda request: ntp_reply(request, int(time.time() * 1000)))
sys.argv[1:] = [_sntp.url]
"""

DNS_SERVER = f"""
import struct, sys
sys.path.insert(0, {str(TESTS)!r})
from net_helpers import UdpResponder

def _a_record(query, ip=bytes([127, 0, 0, 1])):
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    return header + query[12:] + b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + ip

_dns = UdpResponder(_a_record)
sys.argv[1:] = [_dns.url, "docs.example"]
"""


@dataclass
class Provider:
    """Code run before a fragment (and after it), or files put beside it."""

    before: str = ""
    after: str = ""
    files: Optional[Callable[[Path], None]] = None


PROVIDERS: dict[str, Provider] = {
    "mgr": Provider(before="from pymongoose import Manager as _Manager\nmgr = _Manager()\n",
                    after="mgr.close()\n"),
    "handler": Provider(before="def handler(conn, ev, data):\n    pass\n"),
    "tls_files": Provider(files=make_tls_files),
    "sntp_server": Provider(before=SNTP_SERVER),
    "dns_server": Provider(before=DNS_SERVER),
}


# --- running ---------------------------------------------------------------------------

def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """The program and anything it started (workers) go, whatever state they are in."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)


def output_of(folder: Path) -> str:
    out = (folder / "stdout.txt").read_text(errors="replace")
    err = (folder / "stderr.txt").read_text(errors="replace")
    return f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"


def run_program(block: Block, folder: Path, code: str) -> None:
    script = folder / "snippet.py"
    script.write_text(code)
    with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=folder, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            status = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            pytest.fail(f"{block.where}: still running after {TIMEOUT:g} s\n{output_of(folder)}")
    assert status == 0, f"{block.where}: exit status {status}\n{output_of(folder)}"


PORT_IN_URL = re.compile(r"\b(127\.0\.0\.1|localhost):\d+")
ADDRESS_PRINTED = re.compile(r"127\.0\.0\.1'?(?::|,\s*)(\d+)")
PROBE = re.compile(r"^server(?:\s+(?P<kind>http|ws)\s+(?P<path>/\S*)(?:\s+(?P<message>.*?))?"
                   r"\s+->\s+(?P<expect>.+))?$")


def probe(kind: Optional[str], port: int, path: str, message: str) -> str:
    """What the server answers: an HTTP body, a WebSocket message, or '' for a TCP connect."""
    if kind == "http":
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                        timeout=TIMEOUT) as response:
                return bytes(response.read()).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return bytes(exc.read()).decode(errors="replace")
    if kind == "ws":
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=TIMEOUT)
        try:
            ws.send(message)
            answer = ws.recv()
        finally:
            ws.close()
        return answer if isinstance(answer, str) else answer.decode(errors="replace")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        return ""


def run_server(block: Block, folder: Path, spec: re.Match[str]) -> None:
    script = folder / "snippet.py"
    script.write_text(PORT_IN_URL.sub(lambda m: f"{m[1]}:0", block.code))
    lines: queue.Queue[Optional[str]] = queue.Queue()
    with open(folder / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-u", str(script)], cwd=folder,
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        assert proc.stdout is not None
        seen: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.decode(errors="replace"))
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            port = None
            while port is None:
                line = lines.get(timeout=TIMEOUT)
                if line is None:
                    break
                seen.append(line)
                found = ADDRESS_PRINTED.search(line)
                port = int(found[1]) if found else None
            assert port is not None, f"{block.where}: the server never printed its address"
            answer = probe(spec["kind"], port, spec["path"] or "/", spec["message"] or "")
            if spec["expect"]:
                assert spec["expect"] in answer, (
                    f"{block.where}: expected {spec['expect']!r} in the answer {answer!r}")
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            status = proc.wait(timeout=TIMEOUT)
            assert status == 0, f"{block.where}: exit status {status} after SIGINT"
        except BaseException as exc:
            kill_group(proc)
            reader.join(timeout=TIMEOUT)
            (folder / "stdout.txt").write_text("".join(seen))
            raise AssertionError(f"{exc}\n{output_of(folder)}") from exc
        finally:
            reader.join(timeout=TIMEOUT)
            proc.stdout.close()


def needed_names(marker: str) -> list[str]:
    body = marker[len("needs"):]
    return [name.strip() for name in body.split(",") if name.strip()]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    marker = block.marker or ""
    if marker.startswith("server"):
        spec = PROBE.match(marker)
        assert spec, f"{block.where}: bad server marker {marker!r}"
        run_server(block, tmp_path, spec)
        return
    before, after = "", ""
    if marker:
        assert marker.startswith("needs"), f"{block.where}: unknown marker {marker!r}"
        for name in needed_names(marker):
            assert name in PROVIDERS, f"{block.where}: no provider for {name!r}"
            provider = PROVIDERS[name]
            if provider.files:
                provider.files(tmp_path)
            before += provider.before
            after = provider.after + after
    run_program(block, tmp_path, before + block.code + "\n" + after)


# --- the conventions themselves ----------------------------------------------------------

def test_every_block_names_its_language() -> None:
    bare = [block.where for block in ALL_BLOCKS if not block.info]
    assert not bare, f"fenced blocks without a language (python, sh, text, ...): {bare}"


def test_every_marker_sits_on_a_python_block() -> None:
    orphans = []
    for page in pages():
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if MARKER.match(line):
                nxt = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
                if not nxt or nxt["info"].split()[:1] not in (["python"], ["py"]):
                    orphans.append(f"{page.relative_to(ROOT)}:{i + 1}")
    assert not orphans, f"snippet markers not followed by a python block: {orphans}"


def test_the_harness_finds_the_blocks(tmp_path: Path) -> None:
    """The parser sees the README's quick start and the docs pages' programs."""
    readme = [block for block in PYTHON_BLOCKS if block.path.name == "README.md"]
    assert readme, "README.md has no python block: where is the quick start?"
    assert len({block.path for block in PYTHON_BLOCKS}) >= 15
    sample = textwrap.dedent("""\
        <!-- snippet: needs mgr -->
        ```python
        x = 1
        ```

        ````text
        ```python
        not a block of its own
        ```
        ````
        """)
    page = tmp_path / "sample.md"
    page.write_text(sample)
    found = parse(page)
    assert [(b.language, b.marker) for b in found] == [("python", "needs mgr"), ("text", None)]

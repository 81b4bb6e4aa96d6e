"""Run cymongoose 0.2.5's own test suite against pymongoose (issue 11).

The suite comes from the same pinned, hash-checked sdist the build fetches Mongoose
from (build_ffi.py). It is extracted into a temporary folder, never into this
repository, next to a ``cymongoose`` alias package whose modules *are* pymongoose's.
Each test file runs in its own pytest process (a failing test's server threads would
otherwise poison the files after it); a table of results per file follows, and the
exit status is non-zero below ``REQUIRED_PASSED``.

Usage: python .ci/cymongoose_suite.py [--keep] [--timeout S] [test files ...]
(files as named in the sdist, e.g. ``test_tls.py`` or ``examples/test_examples_http.py``;
the threshold applies to a full run only).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build_ffi  # noqa: E402  (the repository root's builder: index, download, pinned hash)

TOTAL_TESTS = 562
REQUIRED_PASSED = 534  # 95% of TOTAL_TESTS (issue 11)
FILE_TIMEOUT = 600.0  # seconds for one file's pytest process; pytest-timeout stops one test at 60
PREFIX = "cymongoose-0.2.5/"
CACHE = ROOT / "build" / "cymongoose-suite" / build_ffi.PINNED_ARCHIVE

# What the suite's tests import beyond the standard library (cymongoose's dev group
# also lists aiohttp, fastapi, flask and uvicorn: only its benchmarks, not run, use them).
TEST_DEPS = {
    "pytest": "pytest",
    "pytest-asyncio": "pytest-asyncio",
    "pytest-timeout": "pytest-timeout",
    "websocket-client": "websocket-client",
}

# cymongoose's modules the suite imports, and the pymongoose module each one is.
ALIASES = {
    "cymongoose._mongoose": "pymongoose",
    "cymongoose.aio": "pymongoose.aio",
    "cymongoose.wsgi": "pymongoose.wsgi",
    "cymongoose.asgi": "pymongoose.asgi",
}

ALIAS_INIT = '''"""cymongoose, as a user who changed one import line sees it: pymongoose."""
import importlib
import sys

import pymongoose

# Each submodule is the pymongoose module itself, not a second copy loaded under a new
# name; one that fails to import is left to fail again, visibly, where a test imports it.
for _name, _target in {aliases!r}.items():
    try:
        sys.modules[_name] = importlib.import_module(_target)
    except Exception:
        pass
sys.modules[__name__] = pymongoose
'''


def fetch_archive() -> bytes:
    """The pinned sdist: $CYMONGOOSE_SDIST, the build/ cache, or the package index."""
    local = os.environ.get("CYMONGOOSE_SDIST")
    path = Path(local) if local else CACHE
    if path.is_file():
        data = path.read_bytes()
    else:
        index = build_ffi.package_index_url()
        page_url = urllib.parse.urljoin(index, f"{build_ffi.PINNED_PROJECT}/")
        page = json.loads(
            build_ffi._download(page_url, {"Accept": "application/vnd.pypi.simple.v1+json"})
        )
        entry = next(
            (f for f in page.get("files", []) if f.get("filename") == build_ffi.PINNED_ARCHIVE),
            None,
        )
        if entry is None:
            sys.exit(f"cymongoose-suite: {index} does not list {build_ffi.PINNED_ARCHIVE}")
        data = build_ffi._download(urllib.parse.urljoin(page_url, entry["url"]))
    if build_ffi._sha256(data) != build_ffi.PINNED_ARCHIVE_SHA256:
        sys.exit(f"cymongoose-suite: {path} does not match the pinned sha256 in build_ffi.py")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def install_test_deps() -> Path:
    """A folder with whichever of the suite's test dependencies this Python lacks,
    pip-installed there (not into the venv, whose own test run they must not change).
    The folder goes on the suite's PYTHONPATH only."""
    folder = CACHE.parent / f"site-{sys.implementation.cache_tag}"
    have = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    have |= {d.metadata["Name"].lower()
             for d in importlib.metadata.distributions(path=[str(folder)])}
    missing = [req for dist, req in TEST_DEPS.items() if dist not in have]
    if missing:
        print(f"cymongoose-suite: installing {' '.join(missing)} into {folder}", flush=True)
        # Their own dependencies come along; pytest at the venv's version, so that the
        # copy in the folder (first on the path) is the same pytest.
        pin = f"pytest=={importlib.metadata.version('pytest')}"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target",
                        str(folder), *missing, pin], check=True)
    return folder


def prepare(workdir: Path, archive: bytes) -> list[str]:
    """Extract tests/ and the pytest settings; write the alias package. Returns test files."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = [
            m
            for m in tar.getmembers()
            if (m.name.startswith(PREFIX + "tests/") or m.name == PREFIX + "pyproject.toml")
            and (m.isfile() or m.isdir())
        ]
        for member in members:
            member.name = member.name[len(PREFIX):]
            tar.extract(member, workdir)
    alias = workdir / "cymongoose"
    alias.mkdir()
    (alias / "__init__.py").write_text(ALIAS_INIT.format(aliases=ALIASES))
    tests = workdir / "tests"
    files = sorted(str(p.relative_to(tests)) for p in tests.rglob("test_*.py"))
    return [f for f in files if not f.startswith("benchmarks/")]


def collected(workdir: Path, env: dict[str, str], name: str) -> int:
    """How many tests pytest collects from one file (for a file whose run did not finish)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         f"tests/{name}"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    return sum(1 for line in out.stdout.splitlines() if "::" in line)


def run_file(workdir: Path, env: dict[str, str], name: str, timeout: float) -> dict[str, object]:
    """One file in its own pytest process and process group; counts from its JUnit XML."""
    report = workdir / "reports" / (name.replace("/", "_") + ".xml")
    report.parent.mkdir(exist_ok=True)
    log = workdir / "reports" / (name.replace("/", "_") + ".log")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=short",
             f"--junitxml={report}", f"tests/{name}"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        note = ""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            note = "timeout"
        finally:
            # Whatever the file left running (servers, example subprocesses) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result: dict[str, object] = {"file": name, "seconds": time.monotonic() - started}
    if report.is_file():
        suites = ET.parse(report).getroot()
        suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
        assert suite is not None
        tests, failures, errors, skipped = (
            int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")
        )
        result.update(
            passed=tests - failures - errors - skipped,
            failed=failures,
            errors=errors,
            skipped=skipped,
            failing=[
                f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
                for case in suite.iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None
            ],
        )
    else:
        count = collected(workdir, env, name)
        result.update(passed=0, failed=0, errors=count, skipped=0, failing=[],
                      note=note or f"no report (exit {proc.returncode})")
    if note:
        result["note"] = note
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="only these test files (no threshold)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--timeout", type=float, default=FILE_TIMEOUT)
    parser.add_argument("--list-failing", action="store_true",
                        help="print each failing test's id after the table")
    args = parser.parse_args()

    archive = fetch_archive()
    deps = install_test_deps()
    workdir = Path(tempfile.mkdtemp(prefix="cymongoose-suite-"))
    try:
        files = prepare(workdir, archive)
        if args.files:
            wanted = {f.removeprefix("tests/") for f in args.files}
            unknown = wanted - set(files)
            if unknown:
                sys.exit(f"cymongoose-suite: no such test file {', '.join(sorted(unknown))}")
            files = [f for f in files if f in wanted]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(workdir), str(deps), env.get("PYTHONPATH", "")) if p
        )
        env.pop("PYTEST_ADDOPTS", None)
        results = []
        for name in files:
            result = run_file(workdir, env, name, args.timeout)
            results.append(result)
            print(
                f"  {name}: {result['passed']} passed, {result['failed']} failed, "
                f"{result['errors']} errors {result.get('note', '')}",
                flush=True,
            )
        keys = ("passed", "failed", "errors", "skipped")
        width = max(len(str(r["file"])) for r in results) + 2
        print(f"\n{'file':<{width}}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>8}")
        for r in results:
            counts = "".join(f"{r[k]:>8}" for k in keys)
            print(f"{r['file']:<{width}}{counts}  {r.get('note', '')}")
        totals = {k: sum(int(r[k]) for r in results) for k in keys}  # type: ignore[call-overload]
        print(f"{'total':<{width}}" + "".join(f"{totals[k]:>8}" for k in keys))
        if args.list_failing:
            print()
            for r in results:
                for case in r["failing"]:  # type: ignore[attr-defined]
                    print(f"FAILING {r['file']}::{case}")
        if args.keep:
            print(f"cymongoose-suite: kept {workdir}")
        if args.files:
            return 0 if totals["failed"] + totals["errors"] == 0 else 1
        print(f"cymongoose-suite: {totals['passed']} of {TOTAL_TESTS} pass "
              f"(required: {REQUIRED_PASSED})")
        return 0 if totals["passed"] >= REQUIRED_PASSED else 1
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""The README's two set-up commands can be extracted by their markers (CI runs what
.ci/readme-extract prints: .ci/run the test command, .ci/readme-commands the main job)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def extract(name: str, readme: Path = REPO / "README.md") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / ".ci" / "readme-extract"), name, str(readme)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_both_commands_are_marked_and_use_a_fresh_venv() -> None:
    main_job, tests = extract("main-job"), extract("tests")
    assert main_job.returncode == 0, main_job.stderr
    assert tests.returncode == 0, tests.stderr
    for command in (main_job.stdout, tests.stdout):
        assert command.startswith("python3 -m venv ")  # CI substitutes the interpreter
        assert command.count("\n") == 1
    # The main job runs the console script, not `python -m` (which would put the source
    # tree first on sys.path), and pip installs it as a regular package.
    assert " .venv/bin/pip install . " in main_job.stdout
    assert main_job.stdout.rstrip().endswith(".venv/bin/pymongoose --root .")
    assert tests.stdout.rstrip().endswith(".venv/bin/pytest")


def test_the_main_job_command_is_a_declared_entry_point() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert 'pymongoose = "pymongoose.__main__:main"' in scripts.splitlines()


def test_a_missing_or_ambiguous_marker_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- readme-command: tests -->\n```sh\none\ntwo\n```\n")
    result = extract("tests", readme)
    assert result.returncode == 1 and "(found 2)" in result.stderr
    result = extract("main-job", readme)
    assert result.returncode == 1 and "(found 0)" in result.stderr
    readme.write_text("<!-- readme-command: tests -->\ntext in between\n```sh\nx\n```\n")
    assert extract("tests", readme).returncode == 1

"""PYMONGOOSE_SANITIZE: which compiler and linker flags the build adds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import build_ffi


def test_unset_adds_nothing() -> None:
    assert build_ffi.sanitizer_args("") == ([], [])
    assert build_ffi.sanitizer_args(" , ") == ([], [])


@pytest.mark.parametrize(("spec", "flag"), [
    ("address", "-fsanitize=address"),
    ("address,undefined", "-fsanitize=address,undefined"),
    (" undefined , address ", "-fsanitize=undefined,address"),
    ("address,address", "-fsanitize=address"),
])
def test_sanitizers_compile_with_debug_info_and_link_the_runtime(spec: str, flag: str) -> None:
    compile_args, link_args = build_ffi.sanitizer_args(spec)
    assert compile_args[0] == flag
    assert "-fno-omit-frame-pointer" in compile_args and "-g" in compile_args
    assert link_args == [flag]


def test_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMONGOOSE_SANITIZE", "address")
    assert build_ffi.sanitizer_args()[1] == ["-fsanitize=address"]


def test_unknown_sanitizer_is_refused_with_the_choices() -> None:
    with pytest.raises(build_ffi.BuildConfigError, match=r"unknown sanitizer thread.*address"):
        build_ffi.sanitizer_args("address,thread")

"""Every capture of utils.match lies inside the subject (found by fuzz/fuzz_utils).

With adjacent ``#`` wildcards and a later ``?``, Mongoose's backtracking leaves some
capture slots ending before they start: their length wraps to nearly 2**64. The C
helper behind ``utils.match`` (pymg_match, csrc/util.c) now reports such captures as
empty, so its (offset, length) pairs always describe bytes of the subject, which is
what Python slices with and what any C caller would read.
"""

from __future__ import annotations

import pytest

from pymongoose import utils
from pymongoose._ffi import ffi, lib

# The fuzzer's input, and a plain match with a '?' between two '#'.
CASES = [
    (b"ata\xff\xff\xff\xff\xd8\xff\xff\xfe\xff\xd8\xff\xff\xff\xff\xff\\\x7f\xff\xff",
     b"##\xff\xff?\xff\xff#\xff#"),
    (b"a/b/c", b"#?#"),
]


def _raw_captures(s: bytes, pattern: bytes) -> tuple[int, list[tuple[int, int]]]:
    n = sum(pattern.count(w) for w in (b"?", b"*", b"#"))
    caps = ffi.new("size_t[]", 2 * n)
    found = lib.pymg_match(s, len(s), pattern, len(pattern), caps, n)
    return found, [(caps[2 * i], caps[2 * i + 1]) for i in range(n)]


@pytest.mark.parametrize(("s", "pattern"), CASES)
def test_capture_spans_lie_inside_the_subject(s: bytes, pattern: bytes) -> None:
    found, spans = _raw_captures(s, pattern)
    assert found == 1
    for offset, length in spans:
        assert offset <= len(s) and length <= len(s) - offset, (offset, length)


def test_the_fuzzers_input_gives_empty_captures_where_slots_were_inverted() -> None:
    s, pattern = CASES[0]
    matched, captures = utils.match(s, pattern)
    assert matched
    assert len(captures) == 5
    # Before the fix these two were "the rest of s" (a slice with a length of ~2**64).
    assert captures[1] == b"" and captures[2] == b""
    assert all(c in s for c in captures)

"""Constants come from the compiled library and name themselves."""

from __future__ import annotations

import pytest

import pymongoose
from pymongoose._ffi import lib

EVENT_CONSTANTS = [name for name in pymongoose.__all__ if name.startswith("MG_EV_")]


@pytest.mark.parametrize("name", EVENT_CONSTANTS)
def test_event_codes_are_the_libraries_own(name: str) -> None:
    assert getattr(pymongoose, name) == getattr(lib, name)
    assert pymongoose.event_name(getattr(pymongoose, name)) == name


def test_event_codes_are_distinct_and_user_events_come_last() -> None:
    values = [getattr(pymongoose, name) for name in EVENT_CONSTANTS]
    assert len(set(values)) == len(values)
    assert max(values) == pymongoose.MG_EV_USER


def test_event_name_of_user_and_unknown_codes() -> None:
    assert pymongoose.event_name(pymongoose.MG_EV_USER + 3) == "MG_EV_USER+3"
    assert pymongoose.event_name(-1) == "MG_EV_UNKNOWN(-1)"
    with pytest.raises(TypeError):
        pymongoose.event_name("MG_EV_OPEN")  # type: ignore[arg-type]


def test_websocket_opcodes_are_rfc6455s() -> None:
    assert (pymongoose.WEBSOCKET_OP_CONTINUE, pymongoose.WEBSOCKET_OP_TEXT,
            pymongoose.WEBSOCKET_OP_BINARY, pymongoose.WEBSOCKET_OP_CLOSE,
            pymongoose.WEBSOCKET_OP_PING, pymongoose.WEBSOCKET_OP_PONG) == (0, 1, 2, 8, 9, 10)


def test_log_levels_are_ordered() -> None:
    levels = [pymongoose.MG_LL_NONE, pymongoose.MG_LL_ERROR, pymongoose.MG_LL_INFO,
              pymongoose.MG_LL_DEBUG, pymongoose.MG_LL_VERBOSE]
    assert levels == sorted(levels) and len(set(levels)) == 5
    assert levels == [lib.MG_LL_NONE, lib.MG_LL_ERROR, lib.MG_LL_INFO, lib.MG_LL_DEBUG,
                      lib.MG_LL_VERBOSE]

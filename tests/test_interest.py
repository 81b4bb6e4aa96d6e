"""Event interest read from a handler's source: which handlers qualify, and what they get.

The handlers below are module-level (or made by factories) so that their source can be
read; each one's shape is what its test is about, so the style rules that would
rewrite a shape are off here.
"""
# ruff: noqa: SIM109, SIM114, SIM300, RUF060

from __future__ import annotations

import enum
import functools
import importlib
import linecache
import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests
import websocket

import pymongoose
from pymongoose import (
    ALL_EVENTS,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_MQTT_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    MG_EV_USER,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    PYMG_EV_HTTP_BODY,
    WEBSOCKET_OP_BINARY,
    Connection,
    Manager,
    MqttBroker,
    inferred_events,
)
from pymongoose import constants as mg_constants
from pymongoose._interest import _SHAPES, interest_mask, mask_events

TIMEOUT = 10.0
HTTP = frozenset({MG_EV_HTTP_MSG})

# -- handlers that qualify ----------------------------------------------------------------


def quick_start(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"hello")


def with_docstring(conn: Connection, ev: int, data: Any) -> None:
    """A docstring does not count as a statement."""
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"hello")


def reversed_compare(conn: Connection, ev: int, data: Any) -> None:
    if MG_EV_HTTP_MSG == ev:
        conn.reply(200, b"hello")


def identity_compare(conn: Connection, ev: int, data: Any) -> None:
    if ev is MG_EV_HTTP_MSG:
        conn.reply(200, b"hello")


def echo_chain(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)
    elif ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, WEBSOCKET_OP_BINARY)


def membership_tuple(conn: Connection, ev: int, data: Any) -> None:
    if ev in (MG_EV_HTTP_MSG, MG_EV_CLOSE):
        pass


def membership_list_and_set(conn: Connection, ev: int, data: Any) -> None:
    if ev in [MG_EV_HTTP_MSG]:
        pass
    elif ev in {MG_EV_ERROR, MG_EV_CLOSE}:
        pass


def or_of_tests(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG or MG_EV_WS_OPEN == ev or ev in (MG_EV_CLOSE,) or ev is MG_EV_ERROR:
        pass


def module_attributes(conn: Connection, ev: int, data: Any) -> None:
    if ev == pymongoose.MG_EV_HTTP_MSG:
        pass
    elif ev == pymongoose.constants.MG_EV_WS_MSG or ev == mg_constants.MG_EV_CLOSE:
        pass


def else_if_nested(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass
    else:
        if ev == MG_EV_CLOSE:  # the same tree as elif, on purpose
            pass


def pymongoose_events(conn: Connection, ev: int, data: Any) -> None:
    if ev == PYMG_EV_HTTP_BODY or ev == MG_EV_HTTP_HDRS or ev == MG_EV_USER:
        pass


def empty_membership(conn: Connection, ev: int, data: Any) -> None:
    if ev in ():
        conn.reply(500, b"never")


def renamed_parameters(c: Connection, code: int, msg: Any) -> None:
    if code == MG_EV_HTTP_MSG:
        c.reply(200, b"hello")


def branches_may_do_anything(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        total = 0
        for part in (b"a", b"b"):
            total += len(part)
        conn.reply(200, str(total))
        return


# -- handlers that do not ------------------------------------------------------------------


def has_else(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"hello")
    else:
        conn.userdata = ev


def elif_then_else(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass
    elif ev == MG_EV_CLOSE:
        pass
    else:
        pass


def statement_before(conn: Connection, ev: int, data: Any) -> None:
    conn.userdata = ev
    if ev == MG_EV_HTTP_MSG:
        pass


def statement_after(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass
    conn.userdata = ev


def two_chains(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass
    if ev == MG_EV_CLOSE:
        pass


def not_equal(conn: Connection, ev: int, data: Any) -> None:
    if ev != MG_EV_POLL:
        pass


def ordering(conn: Connection, ev: int, data: Any) -> None:
    if ev < MG_EV_HTTP_MSG:
        pass


def chained_compare(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG == MG_EV_HTTP_MSG:
        pass


def and_test(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG and conn.is_websocket:
        pass


def other_parameter(conn: Connection, ev: int, data: Any) -> None:
    if data == MG_EV_HTTP_MSG:
        pass


def mixed_parameters(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass
    elif data == MG_EV_CLOSE:
        pass


def parameter_twice(conn: Connection, ev: int, data: Any) -> None:
    if ev == ev:
        pass


def literal_code(conn: Connection, ev: int, data: Any) -> None:
    if ev == 11:
        pass


def call_in_test(conn: Connection, ev: int, data: Any) -> None:
    if ev == int(MG_EV_HTTP_MSG):
        pass


def attribute_of_parameter(conn: Connection, ev: int, data: Any) -> None:
    if ev.real == MG_EV_HTTP_MSG:
        pass


def membership_of_name(conn: Connection, ev: int, data: Any) -> None:
    if ev in WANTED:
        pass


def only_docstring(conn: Connection, ev: int, data: Any) -> None:
    """Does nothing at all."""


def assigns_the_name(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:  # noqa: F823 - the name is local here, on purpose
        MG_EV_HTTP_MSG = 0  # noqa: F841
    # (The test above raises UnboundLocalError for every event.)


WANTED = (MG_EV_HTTP_MSG,)
NOT_AN_EVENT = "MG_EV_HTTP_MSG"
OUT_OF_RANGE = 999
A_BOOL = True


class Code(enum.IntEnum):
    HTTP = MG_EV_HTTP_MSG


class Holder:
    HTTP = MG_EV_HTTP_MSG


def names_a_string(conn: Connection, ev: int, data: Any) -> None:
    if ev == NOT_AN_EVENT:
        pass


def names_an_unknown_code(conn: Connection, ev: int, data: Any) -> None:
    if ev == OUT_OF_RANGE:
        pass


def names_a_bool(conn: Connection, ev: int, data: Any) -> None:
    if ev == A_BOOL:
        pass


def names_an_int_enum(conn: Connection, ev: int, data: Any) -> None:
    if ev == Code.HTTP:
        pass


def names_a_class_attribute(conn: Connection, ev: int, data: Any) -> None:
    if ev == Holder.HTTP:
        pass


def names_nothing(conn: Connection, ev: int, data: Any) -> None:
    if ev == NOT_DEFINED_ANYWHERE:  # type: ignore[name-defined]  # noqa: F821
        pass


def names_a_missing_module_attribute(conn: Connection, ev: int, data: Any) -> None:
    if ev == pymongoose.MG_EV_NO_SUCH_EVENT:  # type: ignore[attr-defined]
        pass


def star_args(*args: Any) -> None:
    if args[1] == MG_EV_HTTP_MSG:
        pass


def needs_a_fourth(conn: Connection, ev: int, data: Any, extra: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass


def generator(conn: Connection, ev: int, data: Any) -> Iterator[None]:
    if ev == MG_EV_HTTP_MSG:
        yield None


async def coroutine(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass


lambda_handler = lambda conn, ev, data: conn.reply(200, b"x") if ev == MG_EV_HTTP_MSG else None  # noqa: E731


@pytest.mark.parametrize(("handler", "expected"), [
    (quick_start, HTTP),
    (with_docstring, HTTP),
    (reversed_compare, HTTP),
    (identity_compare, HTTP),
    (echo_chain, {MG_EV_HTTP_MSG, MG_EV_WS_MSG}),
    (membership_tuple, {MG_EV_HTTP_MSG, MG_EV_CLOSE}),
    (membership_list_and_set, {MG_EV_HTTP_MSG, MG_EV_ERROR, MG_EV_CLOSE}),
    (or_of_tests, {MG_EV_HTTP_MSG, MG_EV_WS_OPEN, MG_EV_CLOSE, MG_EV_ERROR}),
    (module_attributes, {MG_EV_HTTP_MSG, MG_EV_WS_MSG, MG_EV_CLOSE}),
    (else_if_nested, {MG_EV_HTTP_MSG, MG_EV_CLOSE}),
    (pymongoose_events, {PYMG_EV_HTTP_BODY, MG_EV_HTTP_HDRS, MG_EV_USER}),
    (empty_membership, set()),
    (renamed_parameters, HTTP),
    (branches_may_do_anything, HTTP),
], ids=lambda value: getattr(value, "__name__", ""))
def test_qualifying_shapes(handler: Callable[..., Any], expected: set[int]) -> None:
    assert inferred_events(handler) == frozenset(expected)


@pytest.mark.parametrize("handler", [
    has_else, elif_then_else, statement_before, statement_after, two_chains, not_equal,
    ordering, chained_compare, and_test, other_parameter, mixed_parameters, parameter_twice,
    literal_code, call_in_test, attribute_of_parameter, membership_of_name, only_docstring,
    assigns_the_name, names_a_string, names_an_unknown_code, names_a_bool, names_an_int_enum,
    names_a_class_attribute, names_nothing, names_a_missing_module_attribute, star_args,
    needs_a_fourth, generator, coroutine, lambda_handler,
], ids=lambda value: getattr(value, "__name__", ""))
def test_other_shapes_get_every_event(handler: Callable[..., Any]) -> None:
    assert inferred_events(handler) is None
    assert interest_mask(handler, None, infer=True) == ALL_EVENTS


# -- what a handler is ----------------------------------------------------------------------


class Handlers:
    """Methods and a __call__ in quick-start shape: ``self`` is skipped."""

    def on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"method")

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_WS_MSG, MG_EV_CLOSE):
            pass

    @staticmethod
    def static(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ERROR:
            pass

    @classmethod
    def klass(cls, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            pass


class Subclass(Handlers):
    pass


class SelfTests(Handlers):
    def on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if self == MG_EV_HTTP_MSG:  # compares the instance: not the event parameter
            pass


class WithSuper(Handlers):
    def on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            super().on_event(conn, ev, data)


def test_bound_methods_skip_self() -> None:
    handlers = Handlers()
    assert inferred_events(handlers.on_event) == HTTP
    assert inferred_events(Handlers.static) == {MG_EV_ERROR}
    assert inferred_events(Handlers.klass) == {MG_EV_CONNECT}
    assert inferred_events(SelfTests().on_event) is None
    assert inferred_events(WithSuper().on_event) == HTTP  # __class__ is a closure cell


def test_callable_instances_use_their_class_call() -> None:
    assert inferred_events(Handlers()) == {MG_EV_WS_MSG, MG_EV_CLOSE}
    assert inferred_events(Subclass()) == {MG_EV_WS_MSG, MG_EV_CLOSE}
    assert inferred_events(Handlers) is None  # calling the class makes an instance


def test_the_mqtt_broker_is_read_like_any_callable() -> None:
    found = inferred_events(MqttBroker())
    assert found is not None and set(MqttBroker.EVENTS) >= found


def with_context(context: str, conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, context)


def test_partial_shifts_the_event_parameter() -> None:
    assert inferred_events(functools.partial(with_context, "ctx")) == HTTP
    assert inferred_events(functools.partial(functools.partial(with_context), "ctx")) == HTTP
    # Binding the event parameter itself: the call handler(conn, ev, data) fails.
    assert inferred_events(functools.partial(quick_start, ev=MG_EV_HTTP_MSG)) is None
    assert inferred_events(functools.partial(with_context)) is None  # four arguments needed
    assert inferred_events(functools.partial(Handlers().on_event)) == HTTP


def counting(func: Callable[..., Any]) -> Callable[..., Any]:
    calls: list[int] = []

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        calls.append(1)
        return func(*args)

    wrapper.calls = calls  # type: ignore[attr-defined]
    return wrapper


def registering(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


@counting
def counted(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass


@registering
def registered(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        pass


def test_decorators() -> None:
    # The wrapper is what runs, and it acts on every event (it counts them).
    assert inferred_events(counted) is None
    # A decorator that returns the function itself changes nothing.
    assert inferred_events(registered) == HTTP


def test_builtins_and_objects_without_source() -> None:
    assert inferred_events(print) is None
    assert inferred_events(object()) is None  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"MG_EV_HTTP_MSG": MG_EV_HTTP_MSG}
    exec("def h(conn, ev, data):\n    if ev == MG_EV_HTTP_MSG:\n        pass\n", namespace)
    assert inferred_events(namespace["h"]) is None


# -- names: closures and globals -----------------------------------------------------------


def make_closure_handler(code: int) -> Callable[..., Any]:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == code:
            conn.reply(200, b"closure")
    return handler


def make_handler_with_empty_cell() -> Callable[..., Any]:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == later:
            pass
    return handler
    later = MG_EV_HTTP_MSG  # never runs: the cell stays empty


def make_bench_style(lib: Any) -> Callable[..., Any]:
    http_msg, ws_msg = lib.MG_EV_HTTP_MSG, lib.MG_EV_WS_MSG

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == http_msg:
            conn.ws_upgrade(data)
        elif ev == ws_msg:
            conn.ws_send(data.data, 2)
    return handler


def test_closure_names_resolve_per_function() -> None:
    # One code object, two closures: the cache holds the shape, not the codes.
    assert inferred_events(make_closure_handler(MG_EV_HTTP_MSG)) == HTTP
    assert inferred_events(make_closure_handler(MG_EV_WS_MSG)) == {MG_EV_WS_MSG}
    assert inferred_events(make_closure_handler(12345)) is None
    assert inferred_events(make_handler_with_empty_cell()) is None
    assert inferred_events(make_bench_style(pymongoose)) == {MG_EV_HTTP_MSG, MG_EV_WS_MSG}


REBOUND = MG_EV_HTTP_MSG


def uses_rebound(conn: Connection, ev: int, data: Any) -> None:
    if ev == REBOUND:
        pass


def test_globals_are_read_when_the_route_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inferred_events(uses_rebound) == HTTP
    monkeypatch.setitem(globals(), "REBOUND", MG_EV_CLOSE)
    assert inferred_events(uses_rebound) == {MG_EV_CLOSE}
    monkeypatch.setitem(globals(), "REBOUND", "no longer a code")
    assert inferred_events(uses_rebound) is None


def test_replaced_code_is_read_afresh() -> None:
    # What an autoreloader does: the function object stays, its __code__ changes.
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            pass

    def replacement(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_MSG:
            pass

    assert inferred_events(handler) == HTTP
    handler.__code__ = replacement.__code__
    assert inferred_events(handler) == {MG_EV_WS_MSG}


def test_source_edited_after_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "edited_handler_module.py"
    module.write_text("from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG\n\n\n"
                      "def handler(conn, ev, data):\n"
                      "    if ev == MG_EV_HTTP_MSG:\n"
                      "        conn.reply(200, b'x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("edited_handler_module")
    try:
        assert inferred_events(imported.handler) == HTTP
        _SHAPES.clear()  # as on a first read after the edit
        # The file now tests a name the compiled code never reads: the mismatch is seen.
        module.write_text("from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG\n\n\n"
                          "def handler(conn, ev, data):\n"
                          "    if ev == MG_EV_WS_MSG:\n"
                          "        conn.reply(200, b'x')\n")
        linecache.checkcache(str(module))
        assert inferred_events(imported.handler) is None
        # Lines added above the function: the code's lines fall outside what is read.
        module.write_text("from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG\n\n\n"
                          "def handler(conn, ev, data):\n"
                          "    if ev == MG_EV_HTTP_MSG:\n"
                          "        pass\n"
                          "    conn.reply(200, b'x')\n")
        linecache.checkcache(str(module))
        _SHAPES.clear()
        assert inferred_events(imported.handler) is None
    finally:
        sys.modules.pop("edited_handler_module", None)


def test_else_removed_after_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same lines, same names: only the compiled code tells the else is still there.
    module = tmp_path / "else_removed_module.py"
    module.write_text("from pymongoose import MG_EV_HTTP_MSG\n\n\n"
                      "def handler(conn, ev, data):\n"
                      "    if ev == MG_EV_HTTP_MSG:\n"
                      "        conn.reply(200, b'x')\n"
                      "    else:\n"
                      "        conn.reply(200, b'y')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("else_removed_module")
    try:
        assert inferred_events(imported.handler) is None
        module.write_text("from pymongoose import MG_EV_HTTP_MSG\n\n\n"
                          "def handler(conn, ev, data):\n"
                          "    if ev == MG_EV_HTTP_MSG:\n"
                          "        conn.reply(200, b'x')\n"
                          "    elif ev == MG_EV_HTTP_MSG:\n"
                          "        conn.reply(200, b'y')\n")
        linecache.checkcache(str(module))
        _SHAPES.clear()
        assert inferred_events(imported.handler) is None
    finally:
        sys.modules.pop("edited_handler_module", None)


# -- interest_mask and reading the events back ----------------------------------------------


def test_interest_mask() -> None:
    http_bit = 1 << MG_EV_HTTP_MSG
    assert interest_mask(None, None, infer=True) == 0
    assert interest_mask(quick_start, None) == ALL_EVENTS  # declared interest only
    assert interest_mask(quick_start, None, infer=True) == http_bit
    assert interest_mask(quick_start, ALL_EVENTS, infer=True) == ALL_EVENTS
    assert interest_mask(has_else, (MG_EV_HTTP_MSG,), infer=True) == http_bit
    assert interest_mask(quick_start, (MG_EV_CLOSE,), infer=True) == 1 << MG_EV_CLOSE
    assert interest_mask(empty_membership, None, infer=True) == 0
    # Codes from 64 up are not mask bits: they always reach Python.
    assert interest_mask(quick_start, (MG_EV_HTTP_MSG, 70)) == http_bit
    with pytest.raises(TypeError, match="ALL_EVENTS"):
        interest_mask(quick_start, MG_EV_HTTP_MSG)
    with pytest.raises(TypeError):
        interest_mask(quick_start, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MG_EV_"):
        interest_mask(quick_start, ("MG_EV_HTTP_MSG",))  # type: ignore[arg-type]


def test_mask_events() -> None:
    assert mask_events(ALL_EVENTS) is None
    assert mask_events(0) == frozenset()
    assert mask_events((1 << MG_EV_HTTP_MSG) | (1 << MG_EV_CLOSE)) == {MG_EV_HTTP_MSG,
                                                                          MG_EV_CLOSE}


def test_debug_log_names_the_inferred_events(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pymongoose"):
        mgr = Manager(echo_chain)
    mgr.close()
    lines = [r.getMessage() for r in caplog.records if "inferred" in r.getMessage()]
    assert len(lines) == 1
    assert "echo_chain" in lines[0]
    assert "MG_EV_HTTP_MSG, MG_EV_WS_MSG" in lines[0]
    assert "events=ALL_EVENTS" in lines[0]


def test_no_log_line_without_inference(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pymongoose"):
        Manager(has_else).close()
        Manager(quick_start, events=(MG_EV_HTTP_MSG,)).close()
        Manager(quick_start, infer_events=False).close()
    assert not [r for r in caplog.records if "inferred" in r.getMessage()]


def test_manager_handler_events() -> None:
    with Manager(quick_start) as mgr:
        assert mgr.infer_events
        assert mgr.handler_events == HTTP
    with Manager(quick_start, infer_events=False) as mgr:
        assert not mgr.infer_events
        assert mgr.handler_events is None
    with Manager(quick_start, events=ALL_EVENTS) as mgr:
        assert mgr.handler_events is None
    with Manager(has_else) as mgr:
        assert mgr.handler_events is None
    with Manager(quick_start, events=(MG_EV_CLOSE, MG_EV_HTTP_MSG)) as mgr:
        assert mgr.handler_events == {MG_EV_CLOSE, MG_EV_HTTP_MSG}
    with Manager() as mgr:
        assert mgr.handler_events == frozenset()


def test_every_registration_point_infers() -> None:
    with Manager(quick_start) as mgr:
        listener = mgr.listen("http://127.0.0.1:0")
        assert listener.events == HTTP  # the Manager's handler
        port = listener.local_addr[1]  # type: ignore[index]
        own = mgr.listen("http://127.0.0.1:0", echo_chain)
        assert own.events == {MG_EV_HTTP_MSG, MG_EV_WS_MSG}
        raw = mgr.listen("tcp://127.0.0.1:0", membership_tuple, events=ALL_EVENTS)
        assert raw.events is None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            adopted = mgr.listen_socket(sock, or_of_tests)
            assert adopted.events == {MG_EV_HTTP_MSG, MG_EV_WS_OPEN, MG_EV_CLOSE, MG_EV_ERROR}
        client = mgr.connect(f"http://127.0.0.1:{port}", identity_compare)
        assert client.events == HTTP
        ws = mgr.ws_connect(f"ws://127.0.0.1:{port}", membership_list_and_set)
        assert ws.events == {MG_EV_HTTP_MSG, MG_EV_ERROR, MG_EV_CLOSE}
        broker = mgr.mqtt_listen("mqtt://127.0.0.1:0", MqttBroker())
        assert broker.events is not None
        mqtt_port = broker.local_addr[1]  # type: ignore[index]
        mqtt_client = mgr.mqtt_connect(f"mqtt://127.0.0.1:{mqtt_port}", mqtt_handler)
        assert mqtt_client.events == {MG_EV_MQTT_OPEN}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            sntp = mgr.sntp_connect(f"udp://127.0.0.1:{udp.getsockname()[1]}", has_else)
            assert sntp.events is None
        client.set_handler(echo_chain)
        assert client.events == {MG_EV_HTTP_MSG, MG_EV_WS_MSG}
        client.set_handler(echo_chain, events=(MG_EV_CLOSE,))
        assert client.events == {MG_EV_CLOSE}
        client.set_handler(quick_start, events=ALL_EVENTS)
        assert client.events is None
    with Manager(quick_start, infer_events=False) as mgr:
        listener = mgr.listen("http://127.0.0.1:0", echo_chain)
        assert listener.events is None
        listener.set_handler(quick_start)
        assert listener.events is None


def mqtt_handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_MQTT_OPEN:
        pass


# -- end to end: who gets called ----------------------------------------------------------


class CallCounter:
    """Counts the calls of one code object made on the poll thread, as a profiler would."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.events: list[int] = []

    def profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is self.code:
            self.events.append(frame.f_locals["ev"])


def serve_counting(handler: Callable[..., Any], requests_count: int,
                   **manager_kwargs: Any) -> tuple[list[int], Optional[frozenset[int]]]:
    """Serve ``requests_count`` HTTP requests and return the events the handler was called for."""
    counter = CallCounter(handler.__code__)
    mgr = Manager(handler, **manager_kwargs)
    listener = mgr.listen("http://127.0.0.1:0")
    port = listener.local_addr[1]  # type: ignore[index]
    stop = threading.Event()

    def loop() -> None:
        sys.setprofile(counter.profile)
        try:
            while not stop.is_set():
                mgr.poll(20)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        with requests.Session() as session:
            for _ in range(requests_count):
                resp = session.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
                assert resp.status_code == 200
                assert resp.content == b"hello"
        time.sleep(0.1)  # the close and a few polls
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
        events = listener.events
        mgr.close()
    return counter.events, events


def test_quick_start_handler_gets_only_its_events() -> None:
    seen, events = serve_counting(quick_start, 5)
    assert events == HTTP
    assert seen == [MG_EV_HTTP_MSG] * 5


def test_handler_with_else_gets_every_event() -> None:
    seen, events = serve_counting(has_else_hello, 5)
    assert events is None
    assert seen.count(MG_EV_HTTP_MSG) == 5
    assert {MG_EV_POLL, MG_EV_READ} <= set(seen)


def test_inference_off_gets_every_event() -> None:
    seen, events = serve_counting(quick_start, 3, infer_events=False)
    assert events is None
    assert seen.count(MG_EV_HTTP_MSG) == 3
    assert {MG_EV_POLL, MG_EV_READ} <= set(seen)


def test_all_events_declared_gets_every_event() -> None:
    seen, events = serve_counting(quick_start, 3, events=ALL_EVENTS)
    assert events is None
    assert {MG_EV_HTTP_MSG, MG_EV_POLL, MG_EV_READ} <= set(seen)


def has_else_hello(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"hello")
    else:
        conn.userdata = ev


def test_websocket_echo_with_an_inferred_handler() -> None:
    counter = CallCounter(echo_chain.__code__)
    mgr = Manager(echo_chain)
    listener = mgr.listen("http://127.0.0.1:0")
    port = listener.local_addr[1]  # type: ignore[index]
    stop = threading.Event()

    def loop() -> None:
        sys.setprofile(counter.profile)
        try:
            while not stop.is_set():
                mgr.poll(20)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=TIMEOUT)
        try:
            for i in range(10):
                ws.send_binary(bytes([i]) * 64)
                assert ws.recv() == bytes([i]) * 64
        finally:
            ws.close()
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
        mgr.close()
    assert listener.events == {MG_EV_HTTP_MSG, MG_EV_WS_MSG}
    assert counter.events == [MG_EV_HTTP_MSG] + [MG_EV_WS_MSG] * 10

"""JSON-RPC 2.0: Rpc.add / process / methods and RpcReq.ok / err, plus the example
serving it over WebSocket (driven with websocket-client) and HTTP POST."""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subprocess_helpers import running

from pymongoose import Rpc, RpcReq

TIMEOUT = 10.0


def make_rpc() -> Rpc:
    rpc = Rpc()

    def add(req: RpcReq) -> None:
        req.ok(json.dumps(sum(req.params)))

    def describe(req: RpcReq) -> None:
        req.ok(json.dumps({"method": req.method, "params": req.params, "id": req.id,
                           "notification": req.is_notification, "frame": req.frame}))

    def fail(req: RpcReq) -> None:
        raise KeyError("boom")

    def refuse(req: RpcReq) -> None:
        req.err(-32602, "bad params: ünïcode")

    rpc.add("sum", add)
    rpc.add("describe", describe)
    rpc.add("fail", fail)
    rpc.add("refuse", refuse)
    rpc.add("silent", lambda req: None)
    return rpc


def call(rpc: Rpc, frame: Any) -> Any:
    response = rpc.process(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
    assert response, "expected a response"
    decoded = json.loads(response)
    for item in decoded if isinstance(decoded, list) else [decoded]:
        assert item["jsonrpc"] == "2.0"
        assert ("result" in item) != ("error" in item)
    return decoded


def error_of(decoded: Any) -> tuple[Any, int]:
    return decoded["id"], decoded["error"]["code"]


def test_a_call_with_positional_params() -> None:
    assert call(make_rpc(), {"jsonrpc": "2.0", "id": 1, "method": "sum", "params": [1, 2, 3]}) \
        == {"jsonrpc": "2.0", "id": 1, "result": 6}


def test_the_handler_sees_method_params_id_and_frame() -> None:
    frame = '{"jsonrpc": "2.0", "id": "x1", "method": "describe", "params": {"a": [1, null]}}'
    result = call(make_rpc(), frame)["result"]
    assert result == {"method": "describe", "params": {"a": [1, None]}, "id": "x1",
                      "notification": False, "frame": frame}
    assert call(make_rpc(), {"id": 2, "method": "describe"})["result"]["params"] is None


@pytest.mark.parametrize("request_id", [0, 1, -7, 2**70, 1.5, -0.25, 1e300, "", "abc",
                                        "ünïcode ☃", "1", None])
def test_ids_of_every_allowed_type_come_back(request_id: Any) -> None:
    decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": request_id, "method": "sum",
                                "params": [2]})
    assert decoded["id"] == request_id and type(decoded["id"]) is type(request_id)
    assert decoded["result"] == 2


@pytest.mark.parametrize("request_id", [True, False, [1], {"a": 1}])
def test_ids_of_other_types_are_invalid_requests(request_id: Any) -> None:
    decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": request_id, "method": "sum",
                                "params": [2]})
    assert error_of(decoded) == (None, -32600)


@pytest.mark.parametrize("frame", ["{", "", "   ", "nul", '{"id": 1, "method": "sum",}',
                                   "NaN", '{"id": Infinity, "method": "sum"}', "[1, 2",
                                   b"\xff\xfe{}", "{'id': 1}"])
def test_parse_errors(frame: Any) -> None:
    assert error_of(call(make_rpc(), frame)) == (None, -32700)


@pytest.mark.parametrize("frame", [5, "text", None, {}, {"id": 3}, {"id": 3, "method": 5},
                                   {"id": 3, "method": "sum", "params": 5},
                                   {"id": 3, "method": "sum", "params": "1,2"},
                                   {"jsonrpc": "1.0", "id": 3, "method": "sum", "params": []},
                                   []])
def test_invalid_requests(frame: Any) -> None:
    decoded = call(make_rpc(), json.dumps(frame))
    request_id = frame.get("id") if isinstance(frame, dict) else None
    assert error_of(decoded) == (request_id, -32600)
    assert decoded["error"]["message"].startswith("Invalid Request")


def test_responses_are_always_utf8_encodable() -> None:
    # A request may escape lone surrogates; they must not make the response unsendable.
    rpc = make_rpc()
    for frame in ('{"id": "\\ud800", "method": "\\udc00x"}',
                  '{"id": "\\ud800", "method": "refuse"}'):
        response = rpc.process(frame)
        response.encode("utf-8")
        assert json.loads(response)["id"] == "\ud800"


def test_method_not_found() -> None:
    decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": 9, "method": "nope"})
    assert error_of(decoded) == (9, -32601)
    assert "nope" in decoded["error"]["message"]


def test_a_handler_that_raises_gives_internal_error_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="pymongoose"):
        decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": 4, "method": "fail"})
    assert error_of(decoded) == (4, -32603)
    assert "boom" not in decoded["error"]["message"]  # no internals to the client
    assert any("fail" in r.getMessage() and r.exc_info for r in caplog.records)


def test_err_sends_the_handlers_code_and_message() -> None:
    decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": 5, "method": "refuse"})
    assert decoded["error"] == {"code": -32602, "message": "bad params: ünïcode"}


def test_a_handler_that_does_not_answer_gives_internal_error() -> None:
    decoded = call(make_rpc(), {"jsonrpc": "2.0", "id": 6, "method": "silent"})
    assert error_of(decoded) == (6, -32603)
    assert "silent" in decoded["error"]["message"]


@pytest.mark.parametrize("method", ["sum", "fail", "refuse", "silent", "nope"])
def test_notifications_get_no_response(method: str) -> None:
    assert make_rpc().process(json.dumps({"jsonrpc": "2.0", "method": method,
                                          "params": [1]})) == ""


def test_notification_handlers_do_run() -> None:
    rpc, seen = Rpc(), []
    rpc.add("log", lambda req: seen.append((req.params, req.is_notification, req.id)))
    assert rpc.process('{"jsonrpc":"2.0","method":"log","params":["hi"]}') == ""
    assert seen == [(["hi"], True, None)]


def test_batches() -> None:
    rpc = make_rpc()
    decoded = call(rpc, [{"jsonrpc": "2.0", "id": 1, "method": "sum", "params": [1, 1]},
                         {"jsonrpc": "2.0", "method": "sum", "params": [5]},
                         {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                         7])
    assert [d.get("result") for d in decoded] == [2, None, None]
    assert [error_of(d) for d in decoded[1:]] == [(2, -32601), (None, -32600)]
    assert rpc.process(json.dumps([{"method": "sum", "params": [1]}] * 3)) == ""
    # A batch element's frame is its own text.
    (only,) = call(rpc, [{"id": 1, "method": "describe"}])
    assert json.loads(only["result"]["frame"]) == {"id": 1, "method": "describe"}


def test_answering_twice_or_late_raises() -> None:
    rpc, kept, problems = Rpc(), [], []

    def twice(req: RpcReq) -> None:
        req.ok("1")
        try:
            req.err(1, "again")
        except RuntimeError as exc:
            problems.append(str(exc))
        kept.append(req)

    rpc.add("twice", twice)
    assert call(rpc, {"id": 1, "method": "twice"})["result"] == 1
    assert problems and "already answered" in problems[0]
    with pytest.raises(RuntimeError, match="answer once, inside the handler"):
        kept[0].ok("2")


def test_ok_checks_its_json() -> None:
    rpc, problems = Rpc(), []

    def bad(req: RpcReq) -> None:
        for value in ("{oops", "NaN", "", 5, b"1"):
            try:
                req.ok(value)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                problems.append(type(exc).__name__)
        for code, message in ((True, "x"), ("1", "x"), (1, None)):
            try:
                req.err(code, message)  # type: ignore[arg-type]
            except TypeError:
                problems.append("TypeError")
        req.ok('{"fine": [true, null]}')

    rpc.add("bad", bad)
    assert call(rpc, {"id": 1, "method": "bad"})["result"] == {"fine": [True, None]}
    assert problems == ["ValueError"] * 3 + ["TypeError"] * 5


def test_glob_patterns_and_methods() -> None:
    rpc = Rpc()
    rpc.add("get/*", lambda req: req.ok('"pattern 1"'))
    rpc.add("get/exact", lambda req: req.ok('"exact"'))
    rpc.add("get/#", lambda req: req.ok('"pattern 2"'))
    rpc.add("get/*", lambda req: req.ok('"pattern 1 again"'))  # replaces, stays first
    assert rpc.methods == ["get/*", "get/exact", "get/#"]
    assert call(rpc, {"id": 1, "method": "get/exact"})["result"] == "exact"
    assert call(rpc, {"id": 1, "method": "get/x"})["result"] == "pattern 1 again"
    assert call(rpc, {"id": 1, "method": "get/x/y"})["result"] == "pattern 2"
    assert error_of(call(rpc, {"id": 1, "method": "put/x"})) == (1, -32601)


def test_responses_go_to_the_empty_method_or_nowhere() -> None:
    rpc = make_rpc()
    assert rpc.process('{"jsonrpc":"2.0","id":1,"result":5}') == ""
    assert rpc.process('{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}') == ""
    seen: list[str] = []
    rpc.add("", lambda req: seen.append(req.frame))
    assert rpc.process('{"id":1,"result":5}') == ""
    assert seen == ['{"id":1,"result":5}']


def test_mongoose_style_frames_without_jsonrpc_are_accepted() -> None:
    assert call(make_rpc(), '{"id":1,"method":"sum","params":[1,2]}')["result"] == 3


def test_oversized_frames_are_refused_unparsed() -> None:
    small = Rpc(max_frame_size=64)
    small.add("sum", lambda req: req.ok("0"))
    fits = json.dumps({"id": 1, "method": "sum", "params": [1] * 8})
    assert len(fits) <= 64 and call(small, fits)["result"] == 0
    decoded = call(small, json.dumps({"id": 1, "method": "sum", "params": [1] * 40}))
    assert error_of(decoded) == (None, -32600)
    assert "limit of 64" in decoded["error"]["message"]
    assert error_of(call(small, "é" * 40)) == (None, -32600)  # 80 bytes in UTF-8
    huge = b'{"id":1,"method":"sum","params":[' + b"1," * (1 << 20) + b"1]}"
    assert error_of(call(make_rpc(), huge)) == (None, -32600)
    with pytest.raises(ValueError):
        Rpc(max_frame_size=0)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    for frame in ("[" * 100_000, "[" * 50_000 + "]" * 50_000,
                  '{"id":1,"method":"sum","params":' + "[" * 50_000 + "]" * 50_000 + "}"):
        decoded = call(make_rpc(), frame)
        items = decoded if isinstance(decoded, list) else [decoded]
        assert all(item["error"]["code"] in (-32700, -32600, -32603) for item in items)


def test_bad_arguments() -> None:
    rpc = Rpc()
    with pytest.raises(TypeError):
        rpc.process(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rpc.add(5, lambda req: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rpc.add("x", "not callable")  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
request_like = st.dictionaries(
    st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "x"]),
    json_values | st.sampled_from(["2.0", "sum", "describe", "fail", "refuse", "silent"]),
    max_size=6,
)


def _check_response(response: str) -> None:
    assert isinstance(response, str)
    response.encode("utf-8")
    if response:
        decoded = json.loads(response)
        for item in decoded if isinstance(decoded, list) else [decoded]:
            assert item["jsonrpc"] == "2.0" and "id" in item


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=st.one_of(st.text(), st.binary(),
                       json_values.map(json.dumps),
                       request_like.map(json.dumps),
                       st.lists(request_like, max_size=5).map(json.dumps)))
def test_generated_frames_never_crash(frame: Any) -> None:
    _check_response(make_rpc().process(frame))


# -- the example: JSON-RPC over WebSocket and HTTP ---------------------------------------

def test_example_serves_json_rpc_over_websocket_and_http() -> None:
    with running("examples/jsonrpc_ws.py", "http://127.0.0.1:0") as child:
        match = child.wait_for(r"JSON-RPC on (ws://\S+) and (http://\S+)")
        ws = websocket.create_connection(match.group(1), timeout=TIMEOUT)
        try:
            ws.send(json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["note"]}))
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sum",
                                "params": [1, 2, 3.5]}))
            # The notification got no answer: the first one is the sum's.
            assert json.loads(ws.recv()) == {"jsonrpc": "2.0", "id": 1, "result": 6.5}
            ws.send(json.dumps({"jsonrpc": "2.0", "id": "b", "method": "sum",
                                "params": ["x"]}))
            assert json.loads(ws.recv())["error"]["code"] == -32602
            ws.send("{not json")
            assert json.loads(ws.recv())["error"]["code"] == -32700
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "rpc.list"}))
            assert json.loads(ws.recv())["result"] == ["sum", "echo", "rpc.list"]
            ws.send(json.dumps([{"jsonrpc": "2.0", "id": 4, "method": "echo", "params": {}},
                                {"jsonrpc": "2.0", "id": 5, "method": "nope"}]))
            batch = json.loads(ws.recv())
            assert [item["id"] for item in batch] == [4, 5]
            assert batch[1]["error"]["code"] == -32601
        finally:
            ws.close()
        response = requests.post(match.group(2), timeout=TIMEOUT,
                                 data=json.dumps({"jsonrpc": "2.0", "id": 7, "method": "echo",
                                                  "params": {"k": "v"}}))
        assert response.json() == {"jsonrpc": "2.0", "id": 7, "result": {"k": "v"}}
        note = requests.post(match.group(2), timeout=TIMEOUT,
                             data='{"jsonrpc": "2.0", "method": "echo"}')
        assert note.status_code == 204
        assert child.stop(signal.SIGINT) == 0

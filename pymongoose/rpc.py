"""JSON-RPC 2.0 dispatch: ``Rpc`` routes request frames to method handlers.

``Rpc.process(frame)`` takes one frame (a WebSocket message, an HTTP body, a line) and
returns the response frame to send back, or ``""`` when there is none (notifications).
Handlers receive an :class:`RpcReq` and answer with ``ok(result_json)`` or
``err(code, message)``. The names and call shapes are those of cymongoose, whose
``Rpc`` wraps Mongoose's ``mg_rpc_*``.

This one is written in Python on purpose: Mongoose's dispatcher is not JSON-RPC 2.0
(its responses carry no ``"jsonrpc"`` member, it has no -32600 Invalid Request, it
answers notifications' errors, and its lenient JSON scanner takes malformed frames
for requests), and a C round trip per frame would buy nothing: Python's ``json``
parses the frame either way, and handlers are Python.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Union

from .utils import match

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Rpc",
    "RpcHandler",
    "RpcReq",
]

_log = logging.getLogger("pymongoose")

#: JSON-RPC 2.0 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: ``handler(req)``: what ``Rpc.add`` registers; it answers with ``req.ok``/``req.err``.
RpcHandler = Callable[["RpcReq"], Any]

Frame = Union[str, bytes, bytearray, memoryview]

_GLOB_CHARS = frozenset("*?#")
_DEFAULT_MAX_FRAME = 1 << 20


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has no such tokens.
    raise ValueError(f"{name} is not JSON")


# Ids and messages are written ASCII-only (non-ASCII as \u escapes): a request may
# carry lone surrogates (\ud800), which no UTF-8 encoder would send back.
def _id_text(request_id: Any) -> str:
    return json.dumps(request_id, separators=(",", ":"))


def _error_frame(id_text: str, code: int, message: str) -> str:
    return (f'{{"jsonrpc":"2.0","id":{id_text},"error":{{"code":{code},'
            f'"message":{json.dumps(message)}}}}}')


def _valid_id(request_id: Any) -> bool:
    return request_id is None or (isinstance(request_id, (str, int, float))
                                  and not isinstance(request_id, bool))


class RpcReq:
    """One JSON-RPC request, handed to the method's handler.

    Answer it once, inside the handler, with :meth:`ok` or :meth:`err`. A notification
    (a request without ``"id"``) gets no response, whatever the handler does.
    """

    __slots__ = ("_frame", "_has_id", "_id_text", "_method", "_open", "_params", "_response")

    def __init__(self, frame: str, method: str, params: Any, has_id: bool,
                 id_text: str) -> None:
        self._frame = frame
        self._method = method
        self._params = params
        self._has_id = has_id
        self._id_text = id_text
        self._response: str = ""
        self._open = True

    @property
    def frame(self) -> str:
        """The request's JSON text (for one request of a batch, that element alone)."""
        return self._frame

    @property
    def method(self) -> str:
        """The method name the request called."""
        return self._method

    @property
    def params(self) -> Any:
        """The request's ``params``, decoded: a list, a dict, or None when absent."""
        return self._params

    @property
    def id(self) -> Any:
        """The request's id, decoded (None also for a notification: see is_notification)."""
        return json.loads(self._id_text) if self._has_id else None

    @property
    def is_notification(self) -> bool:
        """True when the request has no ``"id"``: it gets no response."""
        return not self._has_id

    def _answer(self, response: str) -> None:
        if not self._open:
            raise RuntimeError(f"the {self._method!r} request was already answered (its "
                               "response already sent), or its handler returned: answer "
                               "once, inside the handler")
        self._open = False
        if self._has_id:
            self._response = response

    def ok(self, result_json: str) -> None:
        """Answer with success; ``result_json`` is the result as JSON text.

        ``req.ok(json.dumps(value))``; ``req.ok("null")`` for no result. Text that is
        not JSON raises ValueError.
        """
        if not isinstance(result_json, str):
            raise TypeError("result_json must be JSON text (str), e.g. json.dumps(value), "
                            f"not {type(result_json).__name__}")
        try:
            json.loads(result_json, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"result_json is not JSON text ({exc}); "
                             "pass json.dumps(value)") from None
        self._answer(f'{{"jsonrpc":"2.0","id":{self._id_text},"result":{result_json}}}')

    def err(self, code: int, message: str) -> None:
        """Answer with an error: a JSON-RPC ``code`` (e.g. -32602) and a ``message``."""
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"code must be int, not {type(code).__name__}")
        if not isinstance(message, str):
            raise TypeError(f"message must be str, not {type(message).__name__}")
        self._answer(_error_frame(self._id_text, code, message))

    def __repr__(self) -> str:
        kind = "notification" if not self._has_id else f"id={self._id_text}"
        return f"<RpcReq {self._method!r} {kind}>"


class Rpc:
    """A JSON-RPC 2.0 dispatcher: register methods with :meth:`add`, feed frames to
    :meth:`process`, send back what it returns.

    Method names may be globs (Mongoose's ``*``, ``?`` and ``#``, see ``match``): an
    exact name wins, then the most recently added matching pattern. Batches (JSON
    arrays) are answered with an array. Frames larger than ``max_frame_size`` bytes
    are refused with -32600 without being parsed. A ``"jsonrpc"`` member, if present,
    must be ``"2.0"``; frames without one (Mongoose's own clients) are accepted.
    Responses (frames with ``result`` or ``error`` and no ``method``) go to the handler
    added for ``""``, if any, and are otherwise ignored, so two peers never trade
    errors about each other's answers.
    """

    __slots__ = ("_exact", "_max_frame_size", "_order", "_patterns")

    def __init__(self, *, max_frame_size: int = _DEFAULT_MAX_FRAME) -> None:
        if not isinstance(max_frame_size, int) or isinstance(max_frame_size, bool):
            raise TypeError(f"max_frame_size must be int, not {type(max_frame_size).__name__}")
        if max_frame_size <= 0:
            raise ValueError(f"max_frame_size must be positive, not {max_frame_size}")
        self._max_frame_size = max_frame_size
        self._exact: dict[str, RpcHandler] = {}
        self._patterns: list[tuple[str, RpcHandler]] = []  # newest first
        self._order: list[str] = []

    @property
    def methods(self) -> list[str]:
        """The registered method names and patterns, in the order they were added."""
        return list(self._order)

    @property
    def max_frame_size(self) -> int:
        """The largest frame, in bytes, that process() parses."""
        return self._max_frame_size

    def add(self, method: str, handler: RpcHandler) -> None:
        """Route requests for ``method`` (a name or a glob pattern) to ``handler(req)``.

        Adding a method again replaces its handler.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be str, not {type(method).__name__}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if method not in self._exact:
            self._order.append(method)
        self._exact[method] = handler
        if _GLOB_CHARS.intersection(method):
            self._patterns = [(p, h) for p, h in self._patterns if p != method]
            self._patterns.insert(0, (method, handler))

    def _find(self, method: str) -> Union[RpcHandler, None]:
        handler = self._exact.get(method)
        if handler is not None:
            return handler
        for pattern, candidate in self._patterns:
            if match(method, pattern)[0]:
                return candidate
        return None

    def process(self, frame: Frame) -> str:
        """Dispatch one JSON-RPC frame (str, or UTF-8 bytes) and return the response
        frame, or ``""`` when there is nothing to send back."""
        raw: bytes = b""
        if isinstance(frame, str):
            size = len(frame)  # a lower bound of its UTF-8 length: enough when too long
            if size <= self._max_frame_size:
                size = len(frame.encode("utf-8", "surrogatepass"))
            text: Union[str, None] = frame
        elif isinstance(frame, (bytes, bytearray, memoryview)):
            size = len(frame) if not isinstance(frame, memoryview) else frame.nbytes
            text = None
            if size <= self._max_frame_size:
                raw = bytes(frame)
        else:
            raise TypeError(f"frame must be str or bytes, not {type(frame).__name__}")
        if size > self._max_frame_size:
            return _error_frame("null", INVALID_REQUEST, f"Invalid Request: the frame has "
                                f"{size} bytes, more than the limit of {self._max_frame_size}")
        if text is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return _error_frame("null", PARSE_ERROR, "Parse error: not UTF-8")
        try:
            decoded = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return _error_frame("null", PARSE_ERROR, "Parse error")
        if isinstance(decoded, list):
            return self._batch(decoded)
        return self._one(decoded, text)

    def _batch(self, items: list[Any]) -> str:
        if not items:
            return _error_frame("null", INVALID_REQUEST, "Invalid Request: empty batch")
        responses = []
        for item in items:
            try:
                item_text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            except (ValueError, RecursionError):
                responses.append(_error_frame("null", INVALID_REQUEST,
                                              "Invalid Request: nested too deeply"))
                continue
            response = self._one(item, item_text)
            if response:
                responses.append(response)
        return f"[{','.join(responses)}]" if responses else ""

    def _one(self, request: Any, text: str) -> str:
        if not isinstance(request, dict):
            return _error_frame("null", INVALID_REQUEST,
                                "Invalid Request: expected a JSON object")
        if "method" not in request and ("result" in request or "error" in request):
            return self._response(request, text)
        has_id = "id" in request
        request_id = request.get("id")
        if has_id and not _valid_id(request_id):
            return _error_frame("null", INVALID_REQUEST,
                                "Invalid Request: id must be a string, a number or null")
        id_text = _id_text(request_id) if has_id else "null"

        def refuse(code: int, message: str) -> str:
            return _error_frame(id_text, code, message) if has_id else ""

        if "jsonrpc" in request and request["jsonrpc"] != "2.0":
            return _error_frame(id_text, INVALID_REQUEST,
                                'Invalid Request: "jsonrpc" must be "2.0"')
        method = request.get("method")
        if not isinstance(method, str):
            return _error_frame(id_text, INVALID_REQUEST,
                                "Invalid Request: method must be a string")
        params = request.get("params")
        if "params" in request and not isinstance(params, (list, dict)):
            return _error_frame(id_text, INVALID_REQUEST,
                                "Invalid Request: params must be an array or an object")
        handler = self._find(method)
        if handler is None:
            return refuse(METHOD_NOT_FOUND, f"Method not found: {method}")
        req = RpcReq(text, method, params, has_id, id_text)
        try:
            handler(req)
        except Exception:
            _log.exception("JSON-RPC handler for %r raised", method)
            if req._open:
                req._open = False
                return refuse(INTERNAL_ERROR, "Internal error")
        if req._open:
            req._open = False
            return refuse(INTERNAL_ERROR,
                          f"Internal error: the handler of {method!r} sent no response")
        return req._response

    def _response(self, response: dict[str, Any], text: str) -> str:
        """A response frame that reached us: the "" handler's, or ignored."""
        handler = self._exact.get("")
        if handler is None:
            return ""
        req = RpcReq(text, "", response.get("params"), False, "null")
        try:
            handler(req)
        except Exception:
            _log.exception("JSON-RPC response handler raised")
        req._open = False
        return ""

    def __repr__(self) -> str:
        return f"<Rpc {len(self._order)} methods>"

"""Event interest: which MG_EV_* codes reach a handler, declared or read from its source.

A handler whose whole body (after an optional docstring) is one ``if``/``elif`` chain
that only compares its event parameter with MG_EV_* constants, and has no ``else``,
does nothing for any other event. When no ``events=`` is given, such a handler is
routed only the events its chain names, exactly as if they had been declared, and the
others are dropped in C. Anything this module cannot prove (no source, a lambda, another
statement, an ``else``, a name that is not an MG_EV_* code) routes every event.

The shape of a handler's source is read once per code object; the names in it are
looked up (globals, closure cells, module attributes) each time a route is computed.
"""

from __future__ import annotations
import __future__

import ast
import functools
import inspect
import logging
import operator
import textwrap
import types
from collections.abc import Iterable
from typing import Any, Callable, Optional, Union

from .constants import EVENT_NAMES, MG_EV_USER, event_name

__all__ = ["ALL_EVENTS", "inferred_events", "interest_mask", "mask_events"]

_log = logging.getLogger("pymongoose")

#: Interest mask that routes every event to Python; also accepted as ``events=``.
ALL_EVENTS = (1 << 64) - 1

#: The codes an inferred test may name: Mongoose's events and pymongoose's own.
_KNOWN_CODES = frozenset(EVENT_NAMES) | {MG_EV_USER}

# A reference in a test: a name, or a name followed by module attributes.
_Ref = tuple[str, ...]
# What a handler's source says, independent of what its names are bound to: the
# event parameter's name and every constant its chain compares the parameter with.
_Shape = tuple[str, tuple[_Ref, ...]]

# Per code object; None: the source does not have the shape (or cannot be read).
_SHAPES: dict[types.CodeType, Optional[_Shape]] = {}
_SHAPES_MAX = 4096

_NOT_PLAIN = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
              | inspect.CO_ITERABLE_COROUTINE)
_UNWRAP_DEPTH = 8
_FUTURE_FLAGS = functools.reduce(
    operator.or_,
    (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names), 0)


def interest_mask(handler: Optional[Callable[..., Any]], events: Union[Iterable[int], int, None],
                  *, infer: bool = False) -> int:
    """The C-side interest mask for ``handler`` wanting ``events``.

    ``events`` is an iterable of MG_EV_* codes, or :data:`ALL_EVENTS` for every event.
    ``None`` means every event too, unless ``infer`` is true: then the events read from
    the handler's source (see :func:`inferred_events`) when it has the shape, else every
    event. This is the mask a Manager uses (``infer`` is its ``infer_events``). No
    handler: 0. Bits from 64 up are not in the mask: those events always reach Python.
    """
    if handler is None:
        return 0
    if events is None:
        if not infer:
            return ALL_EVENTS
        found = inferred_events(handler)
        if found is None:
            return ALL_EVENTS
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("pymongoose: %s is routed only %s (inferred from its source; pass "
                       "events=ALL_EVENTS or Manager(infer_events=False) for every event)",
                       _describe(handler),
                       ", ".join(event_name(ev) for ev in sorted(found)) or "no event")
        return _mask_of(found)
    if isinstance(events, int):
        if events == ALL_EVENTS and not isinstance(events, bool):
            return ALL_EVENTS
        raise TypeError("events must be an iterable of MG_EV_* codes, e.g. (MG_EV_HTTP_MSG,), "
                        "or ALL_EVENTS")
    mask = 0
    for ev in events:
        if not isinstance(ev, int) or ev < 0:
            raise ValueError(f"events must hold MG_EV_* codes, not {ev!r}")
        if ev < 64:  # codes from 64 up always reach Python
            mask |= 1 << ev
    return mask


def mask_events(mask: int) -> Optional[frozenset[int]]:
    """The event codes an interest mask routes; None for :data:`ALL_EVENTS` (every event)."""
    if mask == ALL_EVENTS:
        return None
    return frozenset(ev for ev in range(64) if (mask >> ev) & 1)


def _mask_of(events: Iterable[int]) -> int:
    mask = 0
    for ev in events:
        if ev < 64:
            mask |= 1 << ev
    return mask


def _describe(handler: object) -> str:
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def inferred_events(handler: Callable[..., Any]) -> Optional[frozenset[int]]:
    """The events ``handler`` can act on, read from its source; None when unproven.

    The handler's body, after an optional docstring, must be a single ``if``/``elif``
    chain without ``else`` whose tests only compare the event parameter with MG_EV_*
    constants: ``ev == NAME``, ``NAME == ev``, ``ev is NAME``, ``ev in (A, B)`` and
    ``or`` of those. Names may come from the handler's globals or closure, or be
    attributes of a module (``pymongoose.MG_EV_HTTP_MSG``); each must be an int that is
    an MG_EV_* code. Plain functions, bound methods (``self`` skipped), instances with
    a ``__call__`` method and ``functools.partial`` objects are read; anything else
    gives None, and so does a handler that cannot be called as ``handler(conn, ev, data)``.
    """
    try:
        found = _unwrap(handler)
        if found is None:
            return None
        func, ev_param = found
        shape = _shape_of(func.__code__)
        if shape is None or shape[0] != ev_param:
            return None
        codes = set()
        for ref in shape[1]:
            code = _resolve(func, ref)
            if code is None:
                return None
            codes.add(code)
        return frozenset(codes)
    except Exception:  # inference is an optimisation: it never fails a route
        _log.debug("pymongoose: event inference gave up on %r", handler, exc_info=True)
        return None


# -- which function, and which of its parameters is the event ----------------------------


def _unwrap(handler: Callable[..., Any]) -> Optional[tuple[types.FunctionType, str]]:
    """The Python function a call ``handler(conn, ev, data)`` runs, and its event parameter."""
    marker = object()
    try:
        # follow_wrapped=False: a decorator's wrapper is what runs, not what it wraps.
        bound = inspect.signature(handler, follow_wrapped=False).bind(None, marker, None)
    except (TypeError, ValueError):
        return None
    ev_param = next((name for name, value in bound.arguments.items() if value is marker), None)
    if ev_param is None:  # it went into *args
        return None
    target: object = handler
    for _ in range(_UNWRAP_DEPTH):
        if isinstance(target, types.FunctionType):
            return target, ev_param
        if isinstance(target, types.MethodType):
            target = target.__func__
        elif type(target) is functools.partial:
            target = target.func
        elif target is None or isinstance(target, type):
            return None  # a class: calling it makes an instance
        else:
            target = _class_call(type(target))
    return None


def _class_call(cls: type) -> object:
    """The ``__call__`` function an instance of ``cls`` runs (None if not a plain one)."""
    for klass in cls.__mro__:
        attr = vars(klass).get("__call__")
        if attr is not None:
            return attr if isinstance(attr, types.FunctionType) else None
    return None


# -- the shape of the source --------------------------------------------------------------


def _shape_of(code: types.CodeType) -> Optional[_Shape]:
    try:
        return _SHAPES[code]
    except KeyError:
        pass
    try:
        shape = _read_shape(code)
    except (OSError, TypeError, SyntaxError, ValueError, IndexError):
        shape = None
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    _SHAPES[code] = shape
    return shape


def _read_shape(code: types.CodeType) -> Optional[_Shape]:
    if code.co_name == "<lambda>" or code.co_flags & _NOT_PLAIN:
        return None
    lines, _ = inspect.getsourcelines(code)
    source = textwrap.dedent("".join(lines))
    tree = ast.parse(source)
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef) or node.name != code.co_name:
        return None
    body = node.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.If):
        return None
    params = frozenset(a.arg for a in (*node.args.posonlyargs, *node.args.args,
                                       *node.args.kwonlyargs))
    refs: list[_Ref] = []
    branch: ast.If = body[0]
    ev_param = ""
    while True:
        found = _test_refs(branch.test, params)
        if found is None or (ev_param and found[0] != ev_param):
            return None
        ev_param = found[0]
        refs.extend(found[1])
        if not branch.orelse:
            break
        if len(branch.orelse) != 1 or not isinstance(branch.orelse[0], ast.If):
            return None  # an else: it acts on every other event
        branch = branch.orelse[0]
    # Every name must be read from the globals or a closure cell, never a local
    # (one assigned in a branch would make the test raise UnboundLocalError).
    for ref in refs:
        if ref[0] in code.co_varnames or ref[0] in code.co_cellvars:
            return None
    if not _same_code(source, code):
        return None
    return ev_param, tuple(refs)


def _same_code(source: str, code: types.CodeType) -> bool:
    """Whether ``source`` compiles to ``code``: the file may have changed since import."""
    free = [name for name in code.co_freevars if name != "__class__"]
    if code.co_freevars:
        # The free variables need an enclosing function (and __class__ a class) to be
        # compiled as they were; the compiler orders them by name either way.
        inner = textwrap.indent(source, "        ")
        if "__class__" in code.co_freevars:
            inner = "    class _C:\n" + textwrap.indent(inner, "    ")
        else:
            inner = textwrap.indent(source, "    ")
        assign = f"    {' = '.join(free)} = None\n" if free else ""
        source = "def _outer():\n" + assign + inner
    compiled = compile(source, code.co_filename, "exec", flags=code.co_flags & _FUTURE_FLAGS,
                       dont_inherit=True)
    found = _find_code(compiled, code.co_name)
    return found is not None and _fingerprint(found) == _fingerprint(code)


def _find_code(code: types.CodeType, name: str) -> Optional[types.CodeType]:
    """The outermost code object called ``name`` nested in ``code``."""
    level = [code]
    while level:
        nested = [c for parent in level for c in parent.co_consts
                  if isinstance(c, types.CodeType)]
        for candidate in nested:
            if candidate.co_name == name:
                return candidate
        level = nested
    return None


def _fingerprint(code: types.CodeType) -> tuple[object, ...]:
    return (code.co_code, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount,
            tuple(repr(c) for c in code.co_consts if not isinstance(c, types.CodeType)))


def _test_refs(test: ast.expr, params: frozenset[str]) -> Optional[tuple[str, list[_Ref]]]:
    """The parameter a test compares with constants, and those constants."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        param: Optional[str] = None
        refs: list[_Ref] = []
        for value in test.values:
            found = _test_refs(value, params)
            if found is None or (param is not None and found[0] != param):
                return None
            param = found[0]
            refs.extend(found[1])
        return (param, refs) if param is not None else None
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return None
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, (ast.Eq, ast.Is)):
        for param_side, other in ((left, right), (right, left)):
            ref = _ref(other, params)
            if isinstance(param_side, ast.Name) and param_side.id in params and ref is not None:
                return param_side.id, [ref]
        return None
    if (isinstance(op, ast.In) and isinstance(left, ast.Name) and left.id in params
            and isinstance(right, (ast.Tuple, ast.List, ast.Set))):
        refs = []
        for element in right.elts:
            ref = _ref(element, params)
            if ref is None:
                return None
            refs.append(ref)
        return left.id, refs
    return None


def _ref(node: ast.expr, params: frozenset[str]) -> Optional[_Ref]:
    """``NAME`` or ``module.NAME`` (any depth), not a parameter, as a tuple of identifiers."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id in params:
        return None
    return (node.id, *reversed(attrs))


# -- what the names are bound to -----------------------------------------------------------


def _resolve(func: types.FunctionType, ref: _Ref) -> Optional[int]:
    """The MG_EV_* code ``ref`` names in ``func``'s scope, or None."""
    code = func.__code__
    name = ref[0]
    value: object
    if name in code.co_freevars:
        cells = func.__closure__ or ()
        try:
            value = cells[code.co_freevars.index(name)].cell_contents
        except (IndexError, ValueError):  # an empty cell
            return None
    else:
        try:
            value = func.__globals__[name]
        except KeyError:
            return None
    for attr in ref[1:]:
        # Only a module's own dictionary: no __getattr__ or descriptor runs here.
        if not isinstance(value, types.ModuleType):
            return None
        try:
            value = vars(value)[attr]
        except KeyError:
            return None
    # Exactly int: a subclass could compare equal to other events.
    if type(value) is not int or value not in _KNOWN_CODES:
        return None
    return value

"""The README's API reference and the docstrings keep up with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import pymongoose
from pymongoose import (
    Connection,
    HttpMessage,
    Limits,
    Manager,
    MqttBroker,
    MqttMessage,
    Rpc,
    RpcReq,
    Timer,
    TlsOpts,
    WsMessage,
)
from pymongoose.aio import AsyncManager
from pymongoose.asgi import ASGIServer
from pymongoose.wsgi import WSGIServer

ROOT = Path(__file__).resolve().parent.parent
# The README, and the drafts of documentation not yet merged into it (docs/drafts/).
README = "\n".join(path.read_text() for path in [ROOT / "README.md",
                                                 *sorted(ROOT.glob("docs/drafts/*.md"))])
# Every name the README shows as code: `name`, `name(...)`, `obj.name`.
DOCUMENTED = set(re.findall(r"`[^`]*?\b([A-Za-z_][A-Za-z0-9_]*)\b", README)) | set(
    re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\(", README))

CLASSES = [Manager, Connection, HttpMessage, WsMessage, AsyncManager, Timer, TlsOpts, Limits,
           MqttMessage, MqttBroker, Rpc, RpcReq, WSGIServer, ASGIServer]


def public_members(cls: type) -> list[str]:
    return [name for name, _ in inspect.getmembers(cls) if not name.startswith("_")]


@pytest.mark.parametrize("name", sorted(pymongoose.__all__))
def test_every_exported_name_is_in_the_readme(name: str) -> None:
    if name.startswith(("MG_EV_", "MG_LL_", "WEBSOCKET_OP_")):
        family = name.rsplit("_", 1)[0] if name.startswith("WEBSOCKET_OP_") else name[:6]
        assert family in README, f"{name}: its constant family is not documented"
        return
    assert name in DOCUMENTED, f"pymongoose.{name} is exported but not in README.md"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_public_member_is_in_the_readme(cls: type) -> None:
    missing = [name for name in public_members(cls) if name not in DOCUMENTED]
    assert not missing, f"{cls.__name__} members missing from README.md: {missing}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_public_member_has_a_docstring(cls: type) -> None:
    undocumented = []
    for name in public_members(cls):
        member = inspect.getattr_static(cls, name)
        if inspect.ismemberdescriptor(member):  # a __slots__ attribute: the class says it
            if name not in (cls.__doc__ or ""):
                undocumented.append(name)
            continue
        if isinstance(member, property):
            member = member.fget
        doc = getattr(member, "__doc__", None)
        if not doc or not doc.strip():
            undocumented.append(name)
    assert not undocumented, f"{cls.__name__} members without a docstring: {undocumented}"


@pytest.mark.parametrize("name", sorted(pymongoose.__all__))
def test_every_exported_callable_has_a_docstring(name: str) -> None:
    obj = getattr(pymongoose, name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        assert (obj.__doc__ or "").strip(), f"pymongoose.{name} has no docstring"

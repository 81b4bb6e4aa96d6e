"""The package's import graph: dependencies point one way (app servers -> protocols ->
core -> _ffi), so no app server module may sit in an import circle.

Imports under ``if TYPE_CHECKING:`` are left out (they never run); imports inside
functions count, since deferring an import only hides a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pymongoose

#: The package under test: the source tree's, or the installed wheel's when the suite
#: runs against a wheel from outside the tree.
PACKAGE = Path(pymongoose.__file__).resolve().parent

#: App servers: nothing below them may import them back.
APP_SERVERS = ("pymongoose.asgi", "pymongoose.wsgi", "pymongoose.workers", "pymongoose.aio")

#: The core circle STYLE.md describes (Manager and Connection carry every protocol's
#: methods, cymongoose's API): the direction is to shrink it, never to let it grow.
KNOWN_CORE_CIRCLE = frozenset({
    "pymongoose.connection", "pymongoose.dns", "pymongoose.manager", "pymongoose.mqtt",
    "pymongoose.mqtt.broker", "pymongoose.mqtt.client", "pymongoose.ws_deflate",
})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                 for node in ast.walk(block)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pymongoose"):
            found.add(str(node.module))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pymongoose"))
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: runtime_imports(path, name, modules) for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert "pymongoose.asgi.server" in graph["pymongoose.asgi"]
    assert "pymongoose.manager" in graph["pymongoose.asgi.server"]
    assert "pymongoose._ffi" in graph["pymongoose.manager"]


def test_no_app_server_is_in_an_import_circle() -> None:
    for component in circles(import_graph()):
        servers = {m for m in component if m.startswith(APP_SERVERS)}
        assert not servers, f"app server modules in an import circle: {sorted(component)}"


def test_the_only_circle_is_the_known_core_one_and_it_does_not_grow() -> None:
    for component in circles(import_graph()):
        assert component <= KNOWN_CORE_CIRCLE, sorted(component - KNOWN_CORE_CIRCLE)


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []

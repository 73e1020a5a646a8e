"""The package's import graph: no cycles, and the layers import only downwards.

Read statically (``ast``) from every module under ``src/audiototext``, so nothing is imported
and optional dependencies do not matter.

**Every import statement counts**: module-level ones, function-level (lazy) ones and those
under ``if TYPE_CHECKING:``. A lazy or type-only import hides a dependency from the
interpreter, not from the design: two modules that import each other, however late, cannot be
understood, tested or moved apart one at a time. Imports by string (``importlib``) are not
seen.

An edge goes to the module named: ``from audiototext.pkg import name`` points at
``audiototext.pkg.name`` when that is a module, else at ``audiototext.pkg`` (its
``__init__``). The implicit import of parent packages is not an edge: every submodule would
otherwise "cycle" with the ``__init__`` that re-exports it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "audiototext"

# area → the areas it must not import (an area is the first name below audiototext;
# cli.py, cli_*.py and a future cli/ package are all "cli").
FORBIDDEN: dict[str, frozenset[str]] = {
    "audio": frozenset({"rayserve", "streaming", "inference", "server", "client", "cli", "bulk"}),
    "inference": frozenset({"rayserve", "streaming", "server", "client", "cli", "bulk"}),
    "streaming": frozenset({"rayserve", "server", "client", "cli", "bulk"}),
    "client": frozenset({"rayserve", "server", "streaming", "inference", "models", "cli", "bulk"}),
    # The transcript history is read by the CLI without a server or an engine.
    "history": frozenset({"rayserve", "server", "client", "streaming", "inference", "cli", "bulk"}),
    # Shared by client and server, so it may depend on neither, nor on the engine.
    "wire": frozenset(
        {"rayserve", "server", "client", "streaming", "inference", "models", "cli", "bulk"}
    ),
    # Bulk runs on Ray are an adapter beside the CLI: the CLI calls it, never the reverse.
    "bulk": frozenset({"server", "client", "streaming", "cli", "rayserve"}),
    "store": frozenset({"rayserve", "server", "client", "streaming", "cli", "bulk"}),
    "models": frozenset({"rayserve", "server", "client", "streaming", "cli", "bulk"}),
    "server": frozenset({"bulk", "rayserve"}),
    # Ray Serve replicas wrap the server (an adapter over an adapter); the CLI calls them.
    "rayserve": frozenset({"client", "cli", "bulk"}),
    # How both Ray adapters join a cluster: nothing of ours but the error tree.
    "ray_connect": frozenset(
        {"server", "client", "streaming", "inference", "cli", "bulk", "rayserve"}
    ),
}
# Third-party packages only some areas may import (at any level): Ray stays out of the core.
CONFINED: dict[str, frozenset[str]] = {"ray": frozenset({"bulk", "rayserve", "ray_connect"})}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    kind: str  # "module", "function" or "type-checking"

    def __str__(self) -> str:
        return f"{self.source}:{self.line} → {self.target} ({self.kind}-level import)"


def modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package ``__init__``)."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Collector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, str]] = []
        self._function_depth = 0
        self._type_checking_depth = 0

    def _kind(self) -> str:
        if self._type_checking_depth:
            return "type-checking"
        return "function" if self._function_depth else "module"

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking_depth += 1
        for child in node.body:
            self.visit(child)
        self._type_checking_depth -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._kind()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._kind()))


def imports_of(name: str, source: str, is_package: bool, known: Container[str]) -> list[Edge]:
    """The package-internal imports of module ``name`` (whose text is ``source``)."""
    collector = _Collector()
    collector.visit(ast.parse(source))
    edges = []
    for node, kind in collector.found:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                targets.append(submodule if submodule in known else module)
        for target in targets:
            if (target == PACKAGE or target.startswith(PACKAGE + ".")) and target != name:
                edges.append(Edge(name, target, node.lineno, kind))
    return edges


def import_graph(src: Path = SRC) -> list[Edge]:
    found = modules(src)
    edges = []
    for name, (path, is_package) in found.items():
        edges.extend(imports_of(name, path.read_text(), is_package, found))
    return edges


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) for each group of modules that reach each other (Tarjan)."""
    graph: dict[str, list[Edge]] = defaultdict(list)
    for edge in edges:
        graph[edge.source].append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_within(graph, component) for component in components]


def _cycle_within(graph: dict[str, list[Edge]], component: set[str]) -> list[Edge]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in component:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_by[path[0].source])
                    return path
                if edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def area(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return ""
    return "cli" if parts[1] == "cli" or parts[1].startswith("cli_") else parts[1]


# --------------------------------------------------------------------------- the walker itself


def test_imports_of_sees_relative_lazy_and_type_checking_imports() -> None:
    source = """
import audiototext.errors
from . import sibling
from .. import wire
from ..wire import codec, Encoding
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from audiototext.server import app
def later():
    from audiototext.models.registry import resolve
import numpy
"""
    known = {
        "audiototext.errors",
        "audiototext.client.sibling",
        "audiototext.wire",
        "audiototext.wire.codec",
        "audiototext.server.app",
        "audiototext.models.registry",
    }
    edges = imports_of("audiototext.client._stream", source, False, known)
    assert [(e.target, e.kind) for e in edges] == [
        ("audiototext.errors", "module"),
        ("audiototext.client.sibling", "module"),
        ("audiototext.wire", "module"),
        ("audiototext.wire.codec", "module"),
        ("audiototext.wire", "module"),  # Encoding is a name in wire/__init__
        ("audiototext.server.app", "type-checking"),
        ("audiototext.models.registry", "function"),
    ]
    # In a package __init__, "." is the package itself.
    edges = imports_of("audiototext.client", "from ._stream import X", True, {"x"})
    assert [e.target for e in edges] == ["audiototext.client._stream"]


def test_find_cycles_names_the_modules_and_lines() -> None:
    edges = [
        Edge("a", "b", 1, "module"),
        Edge("b", "c", 2, "function"),
        Edge("c", "a", 3, "module"),
        Edge("c", "d", 4, "module"),
    ]
    (cycle,) = find_cycles(edges)
    assert [(e.source, e.target) for e in cycle] == [("a", "b"), ("b", "c"), ("c", "a")]
    assert find_cycles(edges[:2] + edges[3:]) == []


def test_the_walker_finds_the_package() -> None:
    found = modules()
    assert "audiototext.client" in found
    assert "audiototext.wire.codec" in found
    pairs = {(e.source, e.target) for e in import_graph()}
    assert ("audiototext.wire.codec", "audiototext.wire._proto.transcription_pb2") in pairs
    assert ("audiototext.cli", "audiototext.cli_transcribe") in pairs  # a function-level one


# --------------------------------------------------------------------------- the package


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    report = "\n\n".join("\n".join(f"  {edge}" for edge in cycle) for cycle in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s):\n{report}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    bad = [
        edge
        for edge in import_graph()
        if area(edge.source) == layer and area(edge.target) in FORBIDDEN[layer]
    ]
    listing = "\n".join(f"  {edge}" for edge in bad)
    assert not bad, f"{layer}/ must not import {sorted(FORBIDDEN[layer])}:\n{listing}"


@pytest.mark.parametrize("package", sorted(CONFINED))
def test_confined_packages_are_imported_only_where_allowed(package: str) -> None:
    bad = []
    for name, (path, _) in modules().items():
        if area(name) in CONFINED[package]:
            continue
        collector = _Collector()
        collector.visit(ast.parse(path.read_text()))
        for node, kind in collector.found:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if not node.level
                else []
            )
            if any(n == package or n.startswith(package + ".") for n in names):
                bad.append(f"  {name}:{node.lineno} imports {package} ({kind}-level)")
    assert not bad, f"only {sorted(CONFINED[package])} may import {package}:\n" + "\n".join(bad)

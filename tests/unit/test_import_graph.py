"""The package has no import cycles.

Every module under ``src/sessionstore`` is parsed with ``ast``; its imports (at module
level and inside functions: a lazy import is still an edge, it only moves the cycle to run
time) are resolved to module names. Imports under ``if TYPE_CHECKING:`` are left out, as
they never run. Importing ``a.b.c`` runs the parent packages' ``__init__`` first; those
implicit edges are left out too (every module would otherwise be in a cycle with the
package's ``__init__``), but an explicit ``from . import name`` is an edge to the package.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionstore

PACKAGE = "sessionstore"
ROOT = Path(sessionstore.__file__).resolve().parent

# No cycle is allowed anywhere, the CLI included (cli/common.py holds what its commands
# share; app.py only assembles them).
ALLOWED_CYCLE_PACKAGES: tuple[str, ...] = ()

Edge = tuple[str, str]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _nodes(tree: ast.AST, *, with_typing: bool) -> Iterator[ast.AST]:
    """Every node; the bodies of ``if TYPE_CHECKING:`` only ``with_typing``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not with_typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(
    name: str, path: Path, known: set[str], *, with_typing: bool = False
) -> dict[str, int]:
    """The package's modules that ``name`` imports, each with a line number.

    Only those imported at run time, unless ``with_typing`` (then those imported for type
    annotations count too).
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # ``import a.b.c`` may name a module or (for ``from`` imports) a name in one.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    tree = ast.parse(path.read_text(), str(path))
    for node in _nodes(tree, with_typing=with_typing):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in known else source, node.lineno)
    return found


def import_graph(root: Path = ROOT, *, with_typing: bool = False) -> dict[str, dict[str, int]]:
    """Each module's imports of the package's modules (see :func:`imports_of`)."""
    found = modules(root)
    known = set(found)
    return {
        name: imports_of(name, path, known, with_typing=with_typing) for name, path in found.items()
    }


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return out


def _shortest_path(
    graph: dict[str, dict[str, int]], start: str, goal: str, inside: set[str]
) -> list[str] | None:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for child in sorted(graph[node]):
            if child in inside and child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """For every import edge inside a cycle, the shortest cycle through it (deduplicated).

    Together they name every edge that has to go for the package to be free of cycles.
    """
    out: dict[tuple[str, ...], list[str]] = {}
    for component in strongly_connected(graph):
        inside = set(component)
        for source in component:
            for target in graph[source]:
                if target not in inside:
                    continue
                back = _shortest_path(graph, target, source, inside)
                assert back is not None
                cycle = [source, *back]  # source -> target -> ... -> source
                ring = cycle[:-1]
                turn = ring.index(min(ring))
                canonical = tuple(ring[turn:] + ring[:turn])
                out.setdefault(canonical, [*canonical, canonical[0]])
    return sorted(out.values())


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def _allowed(cycle: list[str]) -> bool:
    return all(any(m == p or m.startswith(p + ".") for p in ALLOWED_CYCLE_PACKAGES) for m in cycle)


# --- the checker itself ------------------------------------------------------------------------


def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    root = tmp_path / PACKAGE
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(root)


def test_checker_sees_lazy_relative_and_absolute_imports(tmp_path: Path) -> None:
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .sub.b import thing\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from ..c import g\n",
            "c.py": "import sessionstore.a\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
            "e.py": "from . import a, sub\nfrom .sub import b\n",
        },
    )
    assert graph["sessionstore.a"] == {"sessionstore.sub.b": 1}
    assert graph["sessionstore.sub.b"] == {"sessionstore.c": 2}
    assert graph["sessionstore.c"] == {"sessionstore.a": 1}
    assert graph["sessionstore.d"] == {}
    assert set(graph["sessionstore.e"]) == {
        "sessionstore.a",
        "sessionstore.sub",
        "sessionstore.sub.b",
    }
    a, b, c = "sessionstore.a", "sessionstore.sub.b", "sessionstore.c"
    assert cycles(graph) == [[a, b, c, a]]


def test_checker_lists_every_edge_of_a_tangle(tmp_path: Path) -> None:
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b, c\n",
            "b.py": "from . import a\n",
            "c.py": "from . import a\n",
        },
    )
    assert cycles(graph) == [
        ["sessionstore.a", "sessionstore.b", "sessionstore.a"],
        ["sessionstore.a", "sessionstore.c", "sessionstore.a"],
    ]


# --- the package --------------------------------------------------------------------------------


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "sessionstore.store" in graph  # the walk found the package
    found = [c for c in cycles(graph) if not _allowed(c)]
    if found:
        pytest.fail(
            f"{len(found)} import cycle(s):\n" + "\n".join(describe(graph, c) for c in found)
        )


# Lower layers never import higher ones, not even for type annotations: errors, files, keys,
# entry, layout, config at the bottom; the backends and the transcript engine above them;
# the store and what works on whole stores above those; the command line, the benchmark and
# the package's public face on top. A module may import its own layer or any below.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "args",
        "clock",
        "config",
        "entry",
        "errors",
        "files",
        "keys",
        "layout",
        "lockfile",
        "logs",
        "shielded",
        "storeinfo",
        "version",
    ),
    ("index", "transcripts"),
    (
        "context",
        "doctor",
        "maintenance",
        "migrate",
        "migrate_postgres",
        "openclaw_db",
        "openclaw_import",
        "recover",
        "selection",
        "split",
        "store",
    ),
    ("aio",),
    ("", "__main__", "adapters", "bench", "cli"),
)


def layer_of(module: str) -> int:
    top = module.removeprefix(PACKAGE).removeprefix(".").partition(".")[0]
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_lower_layers_never_import_higher_ones() -> None:
    graph = import_graph(with_typing=True)
    wrong = [
        f"{source} (line {line}) imports {target}"
        for source, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        if layer_of(target) > layer_of(source)
    ]
    assert not wrong, "\n".join(wrong)


def test_maintenance_and_doctor_work_without_the_store() -> None:
    """They take a StoreContext: not even their annotations name ``store.py``."""
    graph = import_graph(with_typing=True)
    for name in ("sessionstore.maintenance", "sessionstore.doctor"):
        assert "sessionstore.store" not in graph[name], name
    assert not {"sessionstore.store", "sessionstore.maintenance", "sessionstore.doctor"} & set(
        graph["sessionstore.context"]
    )

"""Imports among semwh's modules: no import circle, and packages import in one direction.

Every import counts, wherever it is written: at module level, inside a function (a lazy
import), under ``TYPE_CHECKING``, and a string that is exactly a semwh module's dotted name
(``importlib.import_module``). Packages are ranked in ``LAYERS``; a module imports only from
its own rank or below. Packages of one rank may import each other, but never both ways.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import semwh

#: Packages (and top-level modules) from the bottom up. ``""`` is ``semwh/__init__.py``, which
#: loads the whole library for ``semwh.open``, so nothing inside semwh imports it.
LAYERS: tuple[frozenset[str], ...] = (
    # Foundations: settings, errors, names, hashes, provenance, fault points, the files that
    # ship in the package; any layer imports them.
    frozenset(
        {
            "config",
            "custom_code",
            "data",
            "errors",
            "hashing",
            "names",
            "progress",
            "provenance",
            "resources",
            "seeds",
            "testing",
            "validate",
            "version",
        }
    ),
    # Pure statistics, arrays in and results out: they import only the foundations, so that
    # ingest (noise ceilings of RDMs) and text (the concept minimum) may use them.
    frozenset({"analyze"}),
    # The measures: each one module of pure functions of a spec over analyze's statistics.
    frozenset({"measures"}),
    frozenset({"warehouse"}),
    frozenset({"vectors"}),
    frozenset({"ingest", "extract", "text"}),
    frozenset({"runs"}),
    frozenset({"ray", "results"}),
    frozenset({"api", "workflow"}),
    frozenset({"cli"}),
    frozenset({""}),
)

#: Modules ranked as another unit than their folder says.
UNIT_OF_MODULE: dict[str, str] = {
    # Canonical JSON, hashes, seeds and library versions: a foundation (it imports only the
    # version) that ingest and text use too. It lives in runs/ until runs/ is reworked.
    "semwh.runs.provenance": "provenance",
}

#: Import circles tolerated while they are dissolved (none now). Remove an entry when its circle is
#: gone (this test fails on an entry that no longer matches a circle).
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()

Graph = Mapping[str, frozenset[str]]


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package folder ``root``."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: Iterable[str], package: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    names = set(known)

    def owner(name: str) -> str | None:
        """The module that defines ``name``: itself, or the nearest enclosing package."""
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # Module names given by name: arguments of a call (importlib.import_module) or items of
    # a tuple or list of modules to import; a dotted string elsewhere (an entry-point group
    # spelled like the package) names no import.
    by_name_nodes = {
        id(item)
        for node in ast.walk(tree)
        for item in (
            [*node.args, *(k.value for k in node.keywords)]
            if isinstance(node, ast.Call)
            else node.elts
            if isinstance(node, ast.Tuple | ast.List)
            else []
        )
    }
    for node in ast.walk(tree):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [owner(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                # ``from pkg import sub`` imports the submodule; otherwise the name lives in
                # the module itself.
                targets.append(full if full in names else owner(source))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) in by_name_nodes
        ):
            # A dotted name given to importlib; the bare package name is often just a word.
            by_name = "." in node.value and node.value in names
            targets = [node.value if by_name else None]
        found.update(t for t in targets if t and t.split(".")[0] == package)
    found.discard(module)
    return found


def import_graph(root: Path) -> dict[str, frozenset[str]]:
    """Module -> the modules of the same package that it imports (``root``: the package)."""
    files = module_files(root)
    return {m: frozenset(_imported(m, p, files, root.name)) for m, p in files.items()}


def cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(frozenset(component))
    return found


def unit(module: str, overrides: Mapping[str, str] = UNIT_OF_MODULE) -> str:
    """The ranked unit of a module: its first folder or top-level module below the package."""
    if module in overrides:
        return overrides[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def unit_graph(graph: Graph, overrides: Mapping[str, str] = UNIT_OF_MODULE) -> Graph:
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        units[unit(module, overrides)].update(unit(t, overrides) for t in targets)
    return {u: frozenset(t - {u}) for u, t in units.items()}


def upward_imports(
    graph: Graph,
    layers: tuple[frozenset[str], ...] = LAYERS,
    overrides: Mapping[str, str] = UNIT_OF_MODULE,
) -> list[str]:
    """Imports of a higher rank by a lower one, and modules of units no rank names."""
    rank = {name: i for i, names in enumerate(layers) for name in names}
    problems = []
    for module in sorted(graph):
        here = unit(module, overrides)
        if here not in rank:
            problems.append(f"{module}: its unit {here!r} has no rank in LAYERS")
            continue
        for target in sorted(graph[module]):
            there = unit(target, overrides)
            if there in rank and rank[there] > rank[here]:
                problems.append(f"{module} ({here}) imports {target} ({there}), a higher rank")
    return problems


def _describe(graph: Graph, cycle: frozenset[str]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(cycle) for b in sorted(graph[a] & cycle)]
    return "{" + ", ".join(sorted(cycle)) + "}: " + "; ".join(edges)


# -- semwh itself ------------------------------------------------------------------------------

SEMWH = Path(semwh.__file__).resolve().parent


@functools.cache
def semwh_graph() -> Graph:
    return import_graph(SEMWH)


def test_no_import_circle_among_semwh_modules() -> None:
    graph = semwh_graph()
    found = cycles(graph)
    new = [_describe(graph, c) for c in found if c not in KNOWN_CYCLES]
    assert not new, "import circles:\n" + "\n".join(new)
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"KNOWN_CYCLES lists circles that are gone: remove {gone}"


def test_semwh_packages_import_in_one_direction() -> None:
    graph = semwh_graph()
    assert not upward_imports(graph), "\n".join(upward_imports(graph))
    units = unit_graph(graph)
    both_ways = [_describe(units, c) for c in cycles(units)]
    assert not both_ways, "packages importing each other:\n" + "\n".join(both_ways)


# -- the checks find what they look for --------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relpath, text in {"__init__.py": "", **files}.items():
        path = package / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return package


def test_a_lazy_import_inside_a_function_closes_a_circle(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "low/a.py": "from pkg.low.b import thing\n",
            "low/b.py": "def thing():\n    from pkg.low import a\n    return a\n",
            "low/c.py": "import pkg.low.a\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.low.b"] == {"pkg.low.a"}
    assert cycles(graph) == [frozenset({"pkg.low.a", "pkg.low.b"})]


def test_relative_type_checking_and_by_name_imports_count(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "low/a.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..high import b\n"
            ),
            "high/b.py": "import importlib\nimportlib.import_module('pkg.low.a')\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.low.a"] == {"pkg.high.b"}
    assert graph["pkg.high.b"] == {"pkg.low.a"}


def test_an_upward_import_and_peers_both_ways_are_found(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "low/a.py": "from pkg.high.b import x\n",
            "high/b.py": "x = 1\n",
            "peer1/c.py": "import pkg.peer2.d\n",
            "peer2/d.py": "def f():\n    import pkg.peer1.c\n",
            "extra.py": "",
        },
    )
    graph = import_graph(package)
    layers = (frozenset({"low"}), frozenset({"high", "peer1", "peer2"}), frozenset({""}))
    assert upward_imports(graph, layers, {}) == [
        "pkg.extra: its unit 'extra' has no rank in LAYERS",
        "pkg.low.a (low) imports pkg.high.b (high), a higher rank",
    ]
    assert cycles(unit_graph(graph, {})) == [frozenset({"peer1", "peer2"})]
    # A module ranked by UNIT_OF_MODULE leaves its folder's rank.
    moved = {"pkg.high.b": "low"}
    assert not [p for p in upward_imports(graph, layers, moved) if "higher rank" in p]

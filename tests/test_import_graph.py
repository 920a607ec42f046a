"""The package's import graph has no cycle, and ``import securefl`` stays light.

The graph is built statically: every module under ``securefl/`` is parsed with
``ast``; each ``import securefl.x``, ``from securefl.x import y`` and relative
import becomes an edge to the module it names (``from p import m`` to the
submodule ``p.m`` when there is one, else to ``p``, or to the module a name
of ``p`` is lazily loaded from, per ``p``'s ``_EXPORTS`` table, as for
``from securefl import SecAgg``), and so does
``importlib.import_module("securefl.x")`` with a literal name. Imports inside
functions and methods count, since they run too; only imports under
``if TYPE_CHECKING:`` are ignored. Parent packages a dotted import also runs
are not edges: a package that imports its own submodules is the usual layout,
not a cycle.
"""

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "securefl"
HEAVY = ("torch", "flwr", "phe", "scipy", "matplotlib")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_names(package_dir):
    """``{module name: (path, is_package)}`` for every ``.py`` file under ``package_dir``."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree):
    """Every import node of ``tree`` at any depth, except those under ``if TYPE_CHECKING:`` (its ``else`` counts)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Call) and _is_import_module(node):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _is_import_module(call):
    function = call.func
    named = (isinstance(function, ast.Attribute) and function.attr == "import_module") or (
        isinstance(function, ast.Name) and function.id == "import_module"
    )
    return (
        named
        and len(call.args) == 1
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
        and not call.args[0].value.startswith(".")
    )


def _known_prefix(name, modules):
    """The longest prefix of the dotted ``name`` that is a module of the package, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _resolve_from(module, is_package, node):
    """The absolute module a ``from ... import`` names (relative ones resolved against ``module``)."""
    if node.level == 0:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def lazy_exports(modules):
    """``{package: {name: module}}`` from each package's literal ``_EXPORTS`` table (PEP 562 lazy names)."""
    tables = {}
    for module, (path, is_package) in modules.items():
        if not is_package:
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign):
                target = node.target
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            else:
                continue
            if isinstance(target, ast.Name) and target.id == "_EXPORTS" and node.value is not None:
                tables[module] = ast.literal_eval(node.value)
    return tables


def import_edges(modules):
    """The edges of the import graph of ``modules`` (from :func:`module_names`)."""
    lazy = lazy_exports(modules)
    edges = []
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_known_prefix(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.Call):
                targets = [_known_prefix(node.args[0].value, modules)]
            else:
                base = _resolve_from(module, is_package, node)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        targets.append(submodule)
                    elif alias.name in lazy.get(base, {}):
                        targets.append(_known_prefix(lazy[base][alias.name], modules))
                    else:
                        targets.append(_known_prefix(base, modules))
            edges += [Edge(module, target, node.lineno) for target in targets if target is not None]
    return edges


def find_cycles(edges):
    """One cycle, as ``[m0, m1, ..., m0]``, for each strongly connected component that has one."""
    graph = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def strongconnect(node):  # Tarjan (1972)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                strongconnect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return sorted((_cycle_in(component, graph) for component in components), key=lambda cycle: cycle[0])


def _cycle_in(component, graph):
    """A shortest cycle through the smallest module of a strongly connected ``component`` (breadth first)."""
    start = min(component)
    parents = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if successor not in parents:
                    parents[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _describe(cycle, edges):
    lines = {(edge.source, edge.target): edge.line for edge in sorted(edges, key=lambda edge: edge.line)}
    hops = [f"{source} (line {lines[source, target]})" for source, target in zip(cycle, cycle[1:])]
    return " -> ".join([*hops, cycle[-1]])


# --- the package -------------------------------------------------------------------------


def test_the_package_import_graph_has_no_cycle():
    modules = module_names(ROOT / PACKAGE)
    edges = import_edges(modules)
    assert len(modules) > 50 and len(edges) > 100  # the whole package was read

    cycles = find_cycles(edges)

    assert cycles == [], "import cycles:\n" + "\n".join(
        f"  {cycle}\n    {_describe(cycle, edges)}" for cycle in cycles
    )


def test_import_securefl_imports_no_heavy_dependency():
    script = (
        "import json, sys\n"
        "import securefl\n"
        "dir(securefl)\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )

    assert json.loads(completed.stdout) == []


# --- the checker itself, on a package made for it ----------------------------------------


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return module_names(root / "pkg")


def test_checker_counts_function_level_and_relative_imports_and_ignores_type_checking(tmp_path):
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
            "pkg/b.py": "def late():\n    from . import c\n",
            "pkg/c.py": "import importlib\ndef lazy():\n    importlib.import_module('pkg.sub.d')\n",
            "pkg/sub/__init__.py": "from .d import value\n",
            "pkg/sub/d.py": "from ..a import x\nvalue = 1\n",
        },
    )

    edges = {(edge.source, edge.target) for edge in import_edges(modules)}

    assert edges == {("pkg.b", "pkg.c"), ("pkg.c", "pkg.sub.d"), ("pkg.sub", "pkg.sub.d"), ("pkg.sub.d", "pkg.a")}
    assert find_cycles(import_edges(modules)) == []


def test_checker_reports_a_cycle_as_a_list_of_modules(tmp_path):
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "def f():\n    from pkg.c import g\n",
            "pkg/c.py": "from pkg import a\n",
            "pkg/d.py": "from pkg import d\n",
        },
    )

    cycles = find_cycles(import_edges(modules))

    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.d", "pkg.d"]]


def test_checker_follows_a_lazily_exported_name_to_its_module(tmp_path):
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "_EXPORTS: dict[str, str] = {'Thing': 'pkg.things'}\n",
            "pkg/things.py": "from pkg.helpers import help\n",
            "pkg/helpers.py": "from pkg import Thing\n",
        },
    )

    cycles = find_cycles(import_edges(modules))

    assert cycles == [["pkg.helpers", "pkg.things", "pkg.helpers"]]

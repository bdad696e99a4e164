"""The package's import graph, read from the source: no cycles, no private names across packages.

Every ``import`` counts, at module level or inside a function (an import deferred to keep start-up
light is still a dependency). A module's parent packages are not edges of their own: importing
``purenoise.data.registry`` runs ``purenoise/data/__init__.py``, but the graph follows what each
file names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "purenoise"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def _imports(path: Path, name: str, modules: dict[str, Path]):
    """``(target module, imported names)`` of every import of a purenoise module in ``path``."""
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # "from purenoise.data import cifar": the submodule itself
                    yield sub, []
                else:
                    yield base, [alias.name]


def _graph():
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for name, path in modules.items():
        for target, names in _imports(path, name, modules):
            if target not in modules or target == name:
                continue
            edges[name].add(target)
            pkg_of = lambda m: m if modules[m].name == "__init__.py" else m.rpartition(".")[0]  # noqa: E731
            for n in names:
                if n.startswith("_") and pkg_of(target) != pkg_of(name):
                    private.append(f"{name} imports {n} from {target}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _is_ancestor_edge(a: str, b: str) -> bool:
    return a.startswith(b + ".")


def test_the_import_graph_has_no_cycles():
    edges, _ = _graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of the code's design.
    edges = {m: {t for t in ts if not _is_ancestor_edge(m, t)} for m, ts in edges.items()}
    assert _cycles(edges) == []


def test_no_private_name_is_imported_from_another_package():
    _, private = _graph()
    assert private == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def _reach(edges: dict[str, set[str]], module: str) -> set[str]:
    """Every module ``module`` imports, directly or through others (its parent packages aside)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        for t in edges[m]:
            if t not in seen and not _is_ancestor_edge(m, t):
                seen.add(t)
                todo.append(t)
    return seen


def _in(package: str, modules: set[str]) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


@pytest.mark.parametrize("module", ["purenoise.noise", "purenoise.open", "purenoise.schemes", "purenoise.fileio",
                                    "purenoise.errors", "purenoise.config", "purenoise.run_paths"])
def test_the_method_and_the_ground_floor_import_no_engine_data_or_models(module):
    edges, _ = _graph()
    seen = _reach(edges, module)
    assert not {m for m in seen if m.split(".")[1:2] in (["engine"], ["data"], ["models"], ["reporting"])}


def test_the_engine_and_reporting_meet_only_below_both():
    """The engine writes run folders and reporting reads them; the layout both use sits below both."""
    edges, _ = _graph()
    engine = {m for m in edges if m.startswith("purenoise.engine")}
    reporting = {m for m in edges if m.startswith("purenoise.reporting")}
    assert reporting and engine
    for m in engine:
        assert not _in("purenoise.reporting", _reach(edges, m)), m
    for m in reporting:
        assert not _in("purenoise.engine", _reach(edges, m)), m
    assert "purenoise.run_paths" in _reach(edges, "purenoise.engine.run_folder")
    assert "purenoise.run_paths" in _reach(edges, "purenoise.reporting.runs")


def _benchmark_edges() -> dict[str, set[str]]:
    """The benchmark scripts' imports of each other (they import siblings by bare module name)."""
    root = SRC.parent / "benchmarks"
    files = {p.stem: p for p in root.rglob("*.py")}
    assert len(files) == len(list(root.rglob("*.py"))), "two benchmark modules share a name"
    edges: dict[str, set[str]] = {m: set() for m in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            edges[name] |= {n.split(".")[0] for n in names if n.split(".")[0] in files} - {name}
    return edges


def test_the_benchmarks_import_graph_has_no_cycles():
    edges = _benchmark_edges()
    assert {"results", "evidence_verdicts", "evidence_results"} <= set(edges)  # the graph is read
    assert "evidence_results" in edges["evidence_verdicts"]
    assert _cycles(edges) == []

"""The import graph of ``src/anira``: no module imports itself back through others (a cycle),
and the analyses and figures read data and run models through library modules only, never
through a stage's entry point. Every ``import`` counts, those inside functions included: a lazy
import that dodges a cycle is still one. In ``tests/``, no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = {"anira.cli", "anira.generate", "anira.train", "anira.evaluate"}
LAYERS_ABOVE_STAGES = ("anira.analysis", "anira.figures")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph(root: Path, package: str = "anira") -> nx.DiGraph:
    """module → the modules of ``package`` it imports; ``from a.b import c`` points at ``a.b.c``
    when that is a module, else at ``a.b``."""
    graph = nx.DiGraph()
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(path, root)
        graph.add_node(name)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [
                    f"{node.module}.{alias.name}"
                    if is_module(f"{node.module}.{alias.name}", root)
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            graph.add_edges_from(
                (name, target)
                for target in targets
                if target.split(".")[0] == package and target != name
            )
    return graph


def test_no_import_cycle_in_the_package():
    cycles = sorted(nx.simple_cycles(import_graph(SRC)), key=len)
    assert not cycles, f"{len(cycles)} import cycles, e.g. {' → '.join(cycles[0] + cycles[0][:1])}"


def test_analyses_and_figures_import_no_stage():
    graph = import_graph(SRC)
    offending = [
        (module, target)
        for module, target in graph.edges
        if module.startswith(LAYERS_ABOVE_STAGES) and target in STAGES
    ]
    assert not offending, offending


def test_test_modules_share_helpers_only_through_factories_and_references():
    """What several test modules use lives in tests/factories.py (what tests build) or
    tests/references.py (the independent references they compare against)."""
    graph = import_graph(SRC.parent, package="tests")
    offending = [(m, t) for m, t in graph.edges if t.rsplit(".", 1)[-1].startswith("test_")]
    assert not offending, offending


def write(root: Path, name: str, text: str) -> None:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "__init__.py").touch()
    path.write_text(text)


@pytest.mark.parametrize(
    "importer",
    [
        "from anira.b import helper\n",
        "import anira.b\n",
        "def lazy():\n    from anira.b import helper\n",  # inside a function: still an edge
        "from anira import b\n",  # a module named through its package
    ],
)
def test_a_planted_cycle_is_found(tmp_path, importer):
    write(tmp_path, "anira.a", importer)
    write(tmp_path, "anira.b", "from anira.a import thing\n\nhelper = 1\n")
    assert sorted(map(sorted, nx.simple_cycles(import_graph(tmp_path)))) == [["anira.a", "anira.b"]]


def test_importing_a_name_of_a_module_is_no_edge_to_its_package(tmp_path):
    write(tmp_path, "anira.pkg.__init__", "from anira.pkg.impl import thing\n")
    write(tmp_path, "anira.pkg.impl", "from anira.pkg.base import Base\n\nthing = Base\n")
    write(tmp_path, "anira.pkg.base", "class Base: ...\n")
    assert list(nx.simple_cycles(import_graph(tmp_path))) == []

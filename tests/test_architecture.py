"""The package's imports follow docs/ARCHITECTURE.md (issue 23): no circle between modules,
no arrow up the layer table (which this test reads from the document itself), no library
module importing a command. Module-level and function-level imports both count."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nfsd_gs"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def module_names(package: Path) -> Dict[str, Tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return names


def imported_modules(name: str, is_package: bool, node: ast.AST, known: Set[str],
                     top: str) -> List[str]:
    """The package's modules one import statement names (``from pkg import module`` is the
    module; ``from pkg import name`` is pkg)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                   for alias in node.names]
    found = []
    for target in targets:
        if target != top and not target.startswith(top + "."):
            continue
        while target not in known:  # nfsd_gs.x.function -> nfsd_gs.x
            target = target.rsplit(".", 1)[0]
        found.append(target)
    return found


def import_graph(package: Path = PACKAGE) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports anywhere in its file."""
    modules = module_names(package)
    top = package.name
    graph = {}
    for name, (path, is_package) in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(imported_modules(name, is_package, node, set(modules), top))
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_table(doc: Path = DOC) -> Dict[str, int]:
    """``{module pattern: layer}`` from the table between the ``layers`` markers."""
    text = doc.read_text(encoding="utf-8")
    block = re.search(r"<!-- layers:.*?-->(.*?)<!-- /layers -->", text, re.S)
    assert block, f"{doc} has no layer table between <!-- layers: --> and <!-- /layers -->"
    table = {}
    for row in block.group(1).splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for pattern in re.findall(r"`([^`]+)`", cells[2]):
                assert pattern not in table, f"{pattern} is in two rows"
                table[pattern] = int(cells[0])
    return table


def layer_of(module: str, table: Dict[str, int]) -> int:
    """The row of ``module``: ``*.__main__`` for a command, else its longest matching name."""
    if module.endswith(".__main__") and "*.__main__" in table:
        return table["*.__main__"]
    matches = [p for p in table if module == p or module.startswith(p + ".")]
    if not matches:
        raise KeyError(module)
    return table[max(matches, key=len)]


# ----------------------------------------------------------------------------- the tests


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer_and_every_import_points_down():
    table = layer_table()
    graph = import_graph()
    unplaced = [m for m in graph if not any(m == p or m.startswith(p + ".") for p in table)
                and not m.endswith(".__main__")]
    assert not unplaced, f"add these modules to the layer table of {DOC.name}: {unplaced}"
    upward = [f"{source} (layer {layer_of(source, table)}) imports {target} "
              f"(layer {layer_of(target, table)})"
              for source in sorted(graph) for target in sorted(graph[source])
              if layer_of(target, table) > layer_of(source, table)]
    assert not upward, "\n".join(upward)


def test_no_module_imports_a_command():
    imports = [f"{source} imports {target}" for source, targets in import_graph().items()
               for target in targets if target.endswith(".__main__")]
    assert not imports, "\n".join(imports)


def test_the_checks_find_what_they_look_for(tmp_path):
    """A circle through a function-level import and an upward import are both caught."""
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from . import base\n")
    (package / "low" / "base.py").write_text("def f():\n    from ..high import g\n")
    (package / "high.py").write_text("from .low.base import f\n")
    graph = import_graph(package)
    assert graph["pkg.low.base"] == {"pkg.high"} and graph["pkg.low"] == {"pkg.low.base"}
    assert cycles(graph) == [["pkg.high", "pkg.low.base"]]
    table = {"pkg": 0, "pkg.low": 1, "pkg.high": 2, "*.__main__": 3}
    assert layer_of("pkg.low.base", table) == 1 and layer_of("pkg.x.__main__", table) == 3
    with pytest.raises(KeyError):
        layer_of("other", table)


def test_the_layer_table_names_real_packages():
    graph = import_graph()
    for pattern in layer_table():
        if pattern != "*.__main__":
            assert pattern in graph, f"{DOC.name} names {pattern}, which is not a module"

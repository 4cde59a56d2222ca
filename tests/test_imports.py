"""The package's import graph: no cycles (at module level or inside a function), and layers that point down."""

from __future__ import annotations

import ast
from pathlib import Path

import nnrun

PACKAGE = Path(nnrun.__file__).parent
# What the data layer may import from nnrun outside itself: only the bottom layer.
DATA_MAY_IMPORT = {"nnrun.errors", "nnrun.registry"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source (top level or inside functions)."""
    package = root.name
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg.data import images` imports the submodule pkg.data.images when there is one.
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                           for a in node.names]
            else:
                continue
            found |= {t for t in targets if t == package or t.startswith(f"{package}.")}
        graph[name] = {t for t in found if t in paths and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_nnrun_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 20  # every module was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_data_layer_imports_nothing_above_it():
    graph = import_graph(PACKAGE)
    upward = {(module, target) for module, targets in graph.items() if module.startswith("nnrun.data")
              for target in targets if not target.startswith("nnrun.data") and target not in DATA_MAY_IMPORT}
    assert not upward, f"nnrun.data reaches up: {sorted(upward)}"


def test_a_cycle_hidden_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.b", "pkg.a"]

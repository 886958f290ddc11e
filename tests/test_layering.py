"""generator/ has no import circle: every import, at the top, inside a function or for types
only, read from the source with Python's own parser."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "generator"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """The modules of the package that ``path`` imports, wherever the import stands."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            # "from . import escape" imports a module; "from .spec import X" imports .spec
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    paths = [p for p in paths if "compiled" not in p.relative_to(PACKAGE).parts[:1]]
    known = {module_name(p) for p in paths}
    return {module_name(p): imports(p, known) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_generator_has_no_import_circle():
    graph = import_graph()
    assert {"generator.render", "generator.check", "generator.sign", "generator.environment.build"} <= set(graph)
    assert "generator.bundle_format" in graph["generator.render"]  # the walk sees imports
    assert "generator.check" in graph["generator.sign"]
    assert circles(graph) == []


def test_the_circle_check_can_fail(tmp_path):
    graph = import_graph()
    graph["generator.check"] = graph["generator.check"] | {"generator.sign"}  # the circle of 0.2.0's first form
    assert circles(graph) == [["generator.check", "generator.sign"]]
    # An import inside a function counts as well.
    path = tmp_path / "generator" / "a.py"
    path.parent.mkdir()
    path.write_text("def f():\n    from .b import x\n")
    (tmp_path / "generator" / "b.py").write_text("from . import a\n")
    known = {"generator.a", "generator.b"}
    graph = {name: imports(tmp_path / "generator" / f"{name[10:]}.py", known, tmp_path) for name in known}
    assert graph == {"generator.a": {"generator.b"}, "generator.b": {"generator.a"}}
    assert circles(graph) == [["generator.a", "generator.b"]]

"""The package's layout: data flows one way (no import cycles between modules, lazy imports included), and a module
longer than ~250 lines says why in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_vocabtrim"
MAX_LINES = 260


def _imports(path: Path) -> set[str]:
    """Sibling modules a module imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("hf_vocabtrim."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("hf_vocabtrim."))
    return found


def test_no_import_cycles():
    modules = {path.stem: path for path in PACKAGE.glob("*.py")}
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}
    assert graph["cli"] and graph["planning"] and "planning" not in graph["acceptance"]  # the graph is real
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for child in sorted(graph[name]):
            if state.get(child) == 1:
                cycles.append([*stack[stack.index(child) :], child])
            elif child not in state:
                visit(child, [*stack, child])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_remote_code_files_import_only_each_other():
    for name in ("configuration_trimmed_draft", "modeling_trimmed_draft", "specials"):
        assert _imports(PACKAGE / f"{name}.py") <= {"configuration_trimmed_draft", "specials"}, name


def test_long_modules_say_why():
    for path in PACKAGE.glob("*.py"):
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "long" in doc.lower(), f"{path.name} has {lines} lines and its docstring gives no reason"

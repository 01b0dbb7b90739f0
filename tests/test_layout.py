"""The package's layout reads as its pipeline: sub-packages by stage, imports flowing one way (data -> selection ->
model -> measure / engines -> hub, commands on top; no cycle, lazy imports included), the code that travels with a
checkpoint importing only its siblings, one module per command, and long modules or functions saying why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_vocabtrim"
MAX_LINES = 260
MAX_FUNCTION_LINES = 80
STAGES = ("data", "selection", "model", "measure", "engines", "commands")
# a module may import from its own rank and below; loose modules at the top of the package sit where they read
RANK = {"loaders": 0, "tiny": 0, "data": 1, "selection": 2, "model": 3, "measure": 4, "engines": 4, "hub": 5}
RANK |= {"hardware": 0, "demo": 6, "commands": 7, "__init__": 8, "__main__": 8}
TRAVELLING = {"model.configuration_trimmed_draft", "model.modeling_trimmed_draft", "model.trimmed_head"}


def _name(path: Path) -> str:
    """``data.counting``, ``loaders``: a module's name inside the package."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    return {_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, names: set[str]) -> set[str]:
    """Package modules that a module imports anywhere (top level, inside functions or ``try``)."""
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("hf_vocabtrim"):
                prefix = node.module.removeprefix("hf_vocabtrim").lstrip(".")
            else:
                continue
            targets = [f"{prefix}.{alias.name}".lstrip(".") for alias in node.names] + [prefix]
        elif isinstance(node, ast.Import):
            targets = [a.name.removeprefix("hf_vocabtrim.") for a in node.names if a.name.startswith("hf_vocabtrim.")]
        for target in targets:
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != _name(path):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _rank(module: str) -> int:
    return RANK[module.split(".")[0]]


def test_stages_are_sub_packages_and_few_modules_are_loose():
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert set(STAGES) <= subpackages
    loose = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__"))
    assert len(loose) <= 6, loose
    for stage in STAGES:  # each stage says what it holds and which module to open first
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())) or ""
        assert "first" in doc or stage == "commands", stage


def test_no_import_cycles():
    graph = _graph()
    assert "selection.planning" in graph["commands.optimize"] and "data.counts" in graph["selection.keep_plan"]
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


def test_imports_flow_one_way_through_the_stages():
    graph = _graph()
    upward = [
        (module, imported)
        for module, imports in graph.items()
        for imported in imports
        if _rank(imported) > _rank(module)
        or (_rank(imported) == _rank(module) and imported.split(".")[0] != module.split(".")[0] and "." in module)
    ]
    assert not upward, f"imports from a later stage (or a sibling stage): {upward}"


def test_remote_code_files_import_only_each_other():
    graph = _graph()
    for name in TRAVELLING:
        assert graph[name] <= TRAVELLING | {"data.specials"}, (name, graph[name])
        for node in ast.walk(ast.parse((PACKAGE / f"{name.replace('.', '/')}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:  # siblings only: the files are copied flat
                assert node.level == 1, (name, node.module)


def test_one_module_per_command_none_long():
    from hf_vocabtrim.commands import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(name.rstrip("_") for name in COMMANDS)
    for name in COMMANDS:
        lines = len((PACKAGE / "commands" / f"{name}.py").read_text().splitlines())
        assert lines <= 150, (name, lines)


def test_long_modules_and_functions_say_why():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            doc = ast.get_docstring(tree) or ""
            assert "long" in doc.lower(), f"{path.name} has {lines} lines and its docstring gives no reason"
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                doc = ast.get_docstring(node) or ""
                assert "long" in doc.lower(), f"{path.name}:{node.name} is long and its docstring gives no reason"

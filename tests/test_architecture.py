"""The package's shape (README, "Architecture"): imports go one way, down the layers, with no cycle;
no module imports the package façade or another module's private names; commands stay thin."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ast_cli"
LAYERS = {  # higher numbers may import lower ones (and their own layer, without cycles)
    "commands": ("cli", "params", "process", "completions", "__main__"),
    "jobs": ("tagging", "batch", "distributed", "sinks", "embedding", "listen", "stats", "training", "probe", "data", "evaluation", "metrics", "plots", "export", "labels"),
    "engine": ("inference", "windows", "records"),
    "model": ("checkpoints", "devices", "model", "features", "frontend", "augment", "audio", "cuts", "wavheader",
              "allocator", "threads"),
    "foundation": ("options", "config", "hub", "inputs", "output", "progress", "files", "errors", "version"),
}
LEVEL = {module: len(LAYERS) - i for i, modules in enumerate(LAYERS.values()) for module in modules}
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) of every relative import in a module, the ones inside functions too."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [alias.name for alias in node.names]
            if node.module:
                found.append((node.module.split(".")[0], names, node.lineno))
            else:  # from . import x: modules of the package, or names of its __init__
                found += [(name, [], node.lineno) for name in names]
    return found


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LEVEL), "add new modules to LAYERS here and to README's architecture table"


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_and_never_through_the_facade(module):
    for target, names, line in imports(module):
        assert target in LEVEL, f"{module}.py:{line} imports {target!r} from the package __init__, not a module"
        assert LEVEL[target] <= LEVEL[module], f"{module}.py:{line} imports {target} from a higher layer"
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        assert not private, f"{module}.py:{line} imports private names {private} of {target}"


def test_no_import_cycle():
    graph = {module: {target for target, _, _ in imports(module)} for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in graph.get(module, ()):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_no_private_attribute_of_another_module():
    """``other._name`` for a module imported as ``from . import other``."""
    for module in MODULES:
        text = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        aliases = {target for target, names, _ in imports(module) if not names}
        for alias in aliases:
            assert not re.search(rf"\b{alias}\._[a-z]", text), f"{module}.py reads a private name of {alias}"


def test_commands_are_thin():
    """cli.py under 450 lines, no command function over ~40 lines (signature and docstring included),
    and no option object built positionally anywhere."""
    text = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 450
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno - node.lineno + 1 <= 45, f"cli.{node.name} is {node.end_lineno - node.lineno + 1} lines"
    options = ("TagOptions", "BatchOptions", "StatsOptions", "ExportOptions", "FinetuneOptions", "InputSpec", "WindowSpec")
    for module in MODULES:
        for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in options:
                assert not node.args, f"{module}.py:{node.lineno} builds an options object positionally"

"""The package's shape (README, "Architecture"): imports go one way, down the layers, with no cycle;
no module imports the package façade or another module's private names; commands stay thin."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ast_cli"
LAYERS = {  # higher numbers may import lower ones (and their own layer, without cycles)
    "commands": ("cli", "commands", "__main__"),  # commands/: one module a command; only cli imports it
    "interface": ("params", "process", "completions"),
    "jobs": (
        "tagging",
        "batch",
        "pipeline",
        "workers",
        "distributed",
        "outputs",
        "sinks",
        "embedding",
        "clips",
        "listen",
        "stats",
        "clipreader",
        "training",
        "preparation",
        "trainer",
        "runfolder",
        "probe",
        "data",
        "evaluation",
        "detection",
        "metrics",
        "plots",
        "export",
        "labels",
    ),
    "engine": ("inference", "windows", "records"),
    "model": (
        "checkpoints",
        "authors",
        "evidence",
        "weights",
        "layouts",
        "devices",
        "model",
        "features",
        "frontend",
        "augment",
        "audio",
        "decoders",
        "cuts",
        "wavheader",
        "livesources",
        "allocator",
        "threads",
    ),
    "foundation": (
        "options",
        "finetune_options",
        "spec",
        "recipes",
        "recipe_text",
        "config",
        "jsonfiles",
        "hub",
        "inputs",
        "targets",
        "output",
        "writers",
        "thresholds",
        "readback",
        "detections",
        "progress",
        "chatter",
        "files",
        "errors",
        "version",
    ),
}
LEVEL = {module: len(LAYERS) - i for i, modules in enumerate(LAYERS.values()) for module in modules}
SUBPACKAGES = ("commands", "params")  # a folder of modules that counts as one module of its layer
MODULES = sorted([p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"] + list(SUBPACKAGES))


def sources(module: str) -> list[Path]:
    """The files of a module: ``module.py``, or every file of a sub-package."""
    if module in SUBPACKAGES:
        return sorted((PACKAGE / module).glob("*.py"))
    return [PACKAGE / f"{module}.py"]


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) of every import of another module of the package, the ones inside
    functions too (in a sub-package: its imports from the package, ``from ..x``; not those among its files)."""
    level = 2 if module in SUBPACKAGES else 1
    found = []
    for path in sources(module):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == level:
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


def test_only_cli_imports_the_commands():
    importers = [module for module in MODULES if any(target == "commands" for target, _, _ in imports(module))]
    assert importers == ["cli"], f"commands/ is imported by {importers}"


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
        text = "\n".join(path.read_text(encoding="utf-8") for path in sources(module))
        aliases = {target for target, names, _ in imports(module) if not names}
        for alias in aliases:
            assert not re.search(rf"\b{alias}\._[a-z]", text), f"{module}.py reads a private name of {alias}"


def test_commands_are_thin():
    """cli.py and each command module under 450 lines, no command function over ~40 lines of code (its
    signature, one flag a line as ruff formats it, and its docstring, the command's --help page, are not
    counted), and no option object built positionally anywhere."""
    for path in [PACKAGE / "cli.py", *sources("commands")]:
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) < 450
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                code = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
                length = node.end_lineno - code[0].lineno + 1
                assert length <= 45, f"{path.stem}.{node.name} is {length} lines"
    options = (
        "TagOptions",
        "BatchOptions",
        "StatsOptions",
        "ExportOptions",
        "FinetuneOptions",
        "InputSpec",
        "WindowSpec",
    )
    for path in [p for module in MODULES for p in sources(module)]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in options:
                assert not node.args, f"{path.name}:{node.lineno} builds an options object positionally"


MODULE_LINES = 400  # a module is one job a reader holds in mind at once
FUNCTION_LINES = 60  # a function's body, from its docstring to its last line (the signature not counted)


def test_modules_and_functions_stay_small():
    """Every module of the package within MODULE_LINES lines and every function body within FUNCTION_LINES:
    a module or function that outgrows them is split by job, not stretched."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.body[0].lineno + 1
                if length > FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_the_size_check_finds_what_it_looks_for(tmp_path, monkeypatch):
    """The check above fails on a long function (a check that cannot fail proves nothing)."""
    package = tmp_path / "ast_cli"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES + 1))
    (package / "long.py").write_text(f"def f():\n{body}\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    with pytest.raises(AssertionError, match="long.py:1 f: 61 lines"):
        test_modules_and_functions_stay_small()


def test_the_readme_names_every_module():
    """README's architecture picture and table name every module and sub-package, so a newcomer can find
    where a job lives (and a new module is placed there when it is made)."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1]
    missing = [module for module in MODULES if module != "__main__" and not re.search(rf"\b{module}\b", section)]
    assert not missing, f"README's architecture section does not name {missing}"

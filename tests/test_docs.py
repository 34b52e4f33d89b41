"""The documentation stays true to the CLI: every ``ast ...`` command shown in a code block of README.md
and docs/*.md names an existing command and only options that command has; the cheap ones (help,
``ast tag``/``embed``/``labels``/``stats`` on the shipped example, ``ast models``) are run for real,
in-process, offline, with the tiny test model in place of any ``-m``; and the links between the files
point at files and headings that exist."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main

from ast_cli.cli import app, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI = typer.main.get_command(app)
SHELL_FENCES = {"", "bash", "sh", "shell", "console", "zsh"}  # fenced blocks read as shell; python, text: not
OPERATORS = set("();<>|&")


# -- finding the commands ----------------------------------------------------------------------------
@dataclass
class DocCommand:
    where: str  # file:line
    text: str  # the code line as written
    argv: list[str]  # what follows 'ast' (or 'python -m ast_cli')
    env: dict[str, str] = field(default_factory=dict)  # NAME=value prefixes
    synopsis: bool = False  # written with [optional] parts: checked, never run

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of each line of the shell code blocks: fenced ones (no language, or a shell)
    and indented ones; a line ending in a backslash is joined with the next."""
    found: list[tuple[int, str]] = []
    fence, shell, in_block, previous_blank, pending = None, False, False, True, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
                continue
            code = shell
        elif m := re.match(r"\s*(```|~~~)\s*(\S*)", line):
            fence, shell = m.group(1), m.group(2).lower() in SHELL_FENCES
            continue
        else:
            code = bool(stripped) and line.startswith("    ") and (in_block or previous_blank)
            in_block = code or (in_block and not stripped)
            previous_blank = not stripped
        if not code:
            continue
        stripped = stripped.removeprefix("$ ")
        if pending is not None:
            number, stripped = pending[0], pending[1] + " " + stripped
        if stripped.endswith("\\"):
            pending = (number, stripped[:-1].rstrip())
            continue
        pending = None
        found.append((number, stripped))
    return found


def commands_in_line(line: str, where: str = "?") -> list[DocCommand]:
    """The ``ast`` commands of one shell line: at its start, after a pipe or ``&&``/``;``, after
    ``NAME=value`` prefixes, or as ``python -m ast_cli``/``torchrun ... -m ast_cli``. Redirections and
    comments end a command; inside ``[...]`` (a synopsis) a ``|`` separates alternatives."""
    if not re.search(r"(?<![\w./-])ast(\s|$)|-m\s+ast_cli(\s|$)", line):
        return []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)  # a ValueError (an open quote) fails the test: the docs show a broken command
    segments: list[list[str]] = [[]]
    depth, redirected = 0, False
    for token in tokens:
        if token and set(token) <= OPERATORS:
            if depth and token == "|":  # [--resume | --force]
                continue
            if token in ("|", "||", "&&", ";", "&", "(", ")"):
                segments.append([])
                redirected = False
            else:  # > >> < 2>: the rest of this segment is where the output goes
                redirected = True
            continue
        if not redirected:
            segments[-1].append(token)
            depth += token.count("[") - token.count("]")
    found = []
    for segment in segments:
        env = {}
        while segment and re.fullmatch(r"[A-Za-z_]\w*=.*", segment[0]):
            name, _, value = segment.pop(0).partition("=")
            env[name] = value
        if segment[:1] == ["ast"]:
            rest = segment[1:]
        elif "ast_cli" in segment and segment[segment.index("ast_cli") - 1] == "-m":
            rest = segment[segment.index("ast_cli") + 1 :]
        else:
            continue
        argv = [re.sub(r"^\[+|\]+$", "", token) for token in rest]
        synopsis = argv != rest
        found.append(DocCommand(where, line, [a for a in argv if a], env, synopsis))
    return found


def documented_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        for number, line in code_lines(path.read_text(encoding="utf-8")):
            found += commands_in_line(line, f"{path.relative_to(ROOT)}:{number}")
    return found


COMMANDS = documented_commands()


# -- checking them against the CLI ---------------------------------------------------------------------
def is_group(command) -> bool:
    return hasattr(command, "commands")  # Typer's own Click classes: no isinstance on click's


def is_option(token: str) -> bool:
    return re.match(r"--?[A-Za-z]", token) is not None  # not '-' (stdin) nor '-1'


@dataclass
class Parsed:
    path: tuple[str, ...] = ()
    options: list[tuple[str, str | None]] = field(default_factory=list)  # (option as written, value)
    positionals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Parsed:
    """Walk argv down the real command tree: each word where a group expects a command must be one of
    its commands, and each option must be one of the reached command's options (or its help)."""
    parsed = Parsed()
    command = CLI
    context = CLI.context_class(CLI, info_name="ast", **CLI.context_settings)
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            parsed.positionals += argv[i + 1 :]
            break
        if is_option(token):
            if token.startswith("--"):
                name, eq, attached = token.partition("=")
                attached = attached if eq else None
            else:
                name, attached = token[:2], token[2:] or None
            param = next(
                (p for p in command.params if p.param_type_name == "option" and name in (*p.opts, *p.secondary_opts)),
                None,
            )
            help_option = command.get_help_option(context)
            if param is None and not (help_option and name in help_option.opts):
                parsed.problems.append(f"{name} is not an option of '{' '.join(('ast', *parsed.path))}'")
            value = attached
            takes_value = param is not None and not param.is_flag and not param.count
            if takes_value and attached is None and i + 1 < len(argv) and not is_option(argv[i + 1]):
                i += 1
                value = argv[i]
            parsed.options.append((name, value))
        elif is_group(command) and not parsed.positionals:
            sub = command.commands.get(token)
            if sub is None:
                parsed.problems.append(f"'{' '.join(('ast', *parsed.path, token))}' is not a command")
                parsed.positionals.append(token)
            else:
                command = sub
                context = sub.context_class(sub, info_name=token, parent=context, **sub.context_settings)
                parsed.path += (token,)
        else:
            parsed.positionals.append(token)
        i += 1
    return parsed


def all_command_paths(group=CLI, prefix=()) -> set[tuple[str, ...]]:
    paths = set()
    for name, command in group.commands.items():
        paths.add(prefix + (name,))
        if is_group(command):
            paths |= all_command_paths(command, prefix + (name,))
    return paths


def test_the_docs_show_many_commands_and_every_one_of_the_cli():
    assert len(COMMANDS) >= 40, [str(c) for c in COMMANDS]
    shown = {parse(c.argv).path for c in COMMANDS}
    assert all_command_paths() - shown == set(), "commands without an example in README.md or docs/"
    in_readme = {parse(c.argv).path[:1] for c in COMMANDS if c.where.startswith("README.md")}
    assert {(name,) for name in CLI.commands} <= in_readme, "every command needs an example in README.md"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_and_option_exists(command):
    assert parse(command.argv).problems == [], str(command)


def test_the_checker_catches_what_it_should():
    """Made-up flags and commands are caught, real ones pass; the code-block reader finds commands in
    pipelines, after env prefixes, under torchrun, across backslashes and in synopses, and not in prose."""
    assert parse(["tag", "a.wav", "--no-such-flag"]).problems
    assert parse(["tag", "a.wav", "-z"]).problems
    assert parse(["no-such-command", "a.wav"]).problems
    assert parse(["models", "frobnicate"]).problems
    assert parse(["stats", "data/", "--top", "5"]).problems  # an option of another command
    ok = parse(["models", "--format", "json", "list", "--all"])
    assert ok.problems == [] and ok.path == ("models", "list")
    ok = parse(["tag", "a.wav", "-k5", "--format=csv", "-m", "M", "--help"])
    assert ok.problems == [] and ok.positionals == ["a.wav"] and ("-m", "M") in ok.options
    assert parse(["export", "M", "-o", "x.onnx", "--no-verify"]).problems == []

    text = """Prose mentioning ast tag --bogus is not code.

    find . -name '*.wav' | ast batch --files-from - -o - | jq .path   # a comment --bogus
    HF_HUB_OFFLINE=1 ast tag a.wav \\
        --top 3 > out.jsonl && ast labels dog
    ast: error: an output line, not a command

```bash
torchrun --nproc-per-node 2 -m ast_cli finetune sounds/ -o m
$ ast finetune D -o O [--resume | --force] [--norm-stats auto|base|MEAN,STD]
```
```python
tagger.tag('x')  # the record of ast tag --bogus
```
"""
    found = [c for number, line in code_lines(text) for c in commands_in_line(line, str(number))]
    assert [c.argv for c in found] == [
        ["batch", "--files-from", "-", "-o", "-"],
        ["tag", "a.wav", "--top", "3"],
        ["labels", "dog"],
        ["finetune", "sounds/", "-o", "m"],
        ["finetune", "D", "-o", "O", "--resume", "--force", "--norm-stats", "auto", "base", "MEAN,STD"],
    ]
    assert found[1].env == {"HF_HUB_OFFLINE": "1"} and found[1].where == "4"
    assert [c.synopsis for c in found] == [False, False, False, False, True]
    assert all(parse(c.argv).problems == [] for c in found)


# -- running the cheap ones ----------------------------------------------------------------------------
RUNNABLE = {(), ("tag",), ("embed",), ("labels",), ("stats",), ("batch",), ("models",), ("models", "list")}
EXPECTED = {("labels",): {0, 1}}  # 1: the pattern matched nothing (documented)
MODEL_OPTIONS = ("-m", "--model")
INPUT_OPTIONS = ("--labels", "--files-from", "--write", "--base", "--val")  # must exist to run


def available(path: str) -> bool:
    """Inputs a run can have: the shipped examples (linked into the run's empty working folder)."""
    return Path(path).parts[:1] == ("examples",) and (ROOT / path).exists()


def run_argv(command: DocCommand, model: str) -> list[str] | None:
    """The argv to run for a documented command, its model replaced by ``model``; None when it cannot
    run here: a synopsis, a command that downloads, exports or trains, or inputs the docs only name."""
    parsed = parse(command.argv)
    if parsed.problems or command.synopsis:
        return None
    if any(name in ("-h", "--help") for name, _ in parsed.options):
        return list(command.argv)
    if parsed.path not in RUNNABLE:
        return None
    if parsed.path != ("labels",):  # its PATTERN is not a path
        if parsed.path != () and parsed.path[0] in ("tag", "embed", "stats", "batch") and not parsed.positionals:
            return None
        if not all(available(p) for p in parsed.positionals):
            return None
    argv, i, has_model = [], 0, False
    while i < len(command.argv):
        token = command.argv[i]
        argv.append(token)
        if token in MODEL_OPTIONS:
            argv.append(model)
            has_model, i = True, i + 2
            continue
        following = command.argv[i + 1] if i + 1 < len(command.argv) else ""
        if token in INPUT_OPTIONS and not available(following):
            return None
        if token in ("-o", "--output") and Path(following).is_absolute():
            return None
        i += 1
    takes_model = any(p.param_type_name == "option" and "-m" in p.opts for p in command_of(parsed.path).params)
    if takes_model and not has_model:
        argv += ["-m", model]
    return argv


def command_of(path: tuple[str, ...]):
    command = CLI
    for name in path:
        command = command.commands[name]
    return command


RUNS = [c for c in COMMANDS if run_argv(c, "MODEL") is not None]


def test_enough_documented_commands_run():
    """The documented examples on examples/ and the help really run (not all left out as 'not here')."""
    paths = {parse(c.argv).path for c in RUNS}
    assert {(), ("tag",), ("embed",), ("labels",), ("stats",), ("models",)} <= paths, [str(c) for c in RUNS]
    assert any(c.where.startswith("README.md") and c.argv[:2] == ["tag", "examples/siren.wav"] for c in RUNS)
    assert run_argv(commands_in_line("ast tag song.wav")[0], "M") is None  # a file the docs only name
    assert run_argv(commands_in_line("ast tag examples/siren.wav -m X")[0], "M") == [
        "tag",
        "examples/siren.wav",
        "-m",
        "M",
    ]
    assert run_argv(commands_in_line("ast labels dog")[0], "M") == ["labels", "dog", "-m", "M"]


@pytest.mark.parametrize("command", RUNS, ids=lambda c: c.where)
def test_cheap_documented_commands_run(command, tiny_model_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)  # outputs (-o) land here
    for name, value in command.env.items():
        monkeypatch.setenv(name, value)
    argv = run_argv(command, str(tiny_model_dir))
    code = main(argv)
    out, err = capsys.readouterr()
    path = parse(command.argv).path
    assert code in EXPECTED.get(path, {0}), f"{command}\nran: ast {shlex.join(argv)}\nexit {code}\n{err[-2000:]}"
    if code == 0 and path[:1] != ("models",):
        assert out.strip(), f"{command}: nothing on stdout"


# -- links ---------------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.MULTILINE)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_the_docs_resolve(path):
    text = path.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: link to missing {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{path.name}: no heading #{anchor} in {file.name}"


def test_readme_is_a_front_page_with_the_ci_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 320, "README.md is the front page: details go to docs/"
    commands = re.findall(r"^    \$ (python -m pytest.*)$", readme, re.MULTILINE)
    assert commands[:1] == ["python -m pytest -q tests"]  # what .ci/run extracts
    assert "## Architecture" in readme
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme, f"README.md does not link {doc.name}"

"""Every command, sub-commands included, takes --quiet and --debug and shows an example in --help."""

from __future__ import annotations

import inspect
import re
import typing
from enum import Enum

import pytest
import typer.main

from ast_cli.cli import app, main


def command_paths(group=None, prefix=()) -> list[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    paths = []
    for name, cmd in group.commands.items():
        paths.append(prefix + (name,))
        if hasattr(cmd, "commands"):  # a sub-app (Typer's own Click classes: no isinstance on click's)
            paths += command_paths(cmd, prefix + (name,))
    return paths


COMMANDS = command_paths()


def test_the_commands_are_found():
    assert {("tag",), ("stats",), ("embed",), ("labels",), ("models",), ("models", "rm")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_quiet_debug_and_an_example(capsys, path):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quiet" in out and "--debug" in out, out
    assert "Example" in out and f"ast {' '.join(path)}" in out.split("Example", 1)[1], out
    assert "\x1b[" not in out  # not a terminal: plain text


def help_text(capsys, path) -> str:
    assert main([*path, "--help"]) == 0
    return capsys.readouterr().out


def option_entries(text: str) -> list[str]:
    """The entries of the Options section: an entry starts at '  -' and runs until the next one."""
    section = text.split("\nOptions:\n", 1)[1]
    entries: list[str] = []
    for line in section.splitlines():
        if line.startswith("  -"):
            entries.append(line.strip())
        elif entries and line.startswith("    "):
            entries[-1] += " " + line.strip()
    return entries


def enum_parameters(path) -> dict[str, type[Enum]]:
    """Parameter name -> its choice Enum, from the command function's own type hints."""
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name] if hasattr(cmd, "commands") and name in cmd.commands else cmd
    hints = typing.get_type_hints(inspect.unwrap(cmd.callback))
    found = {}
    for name, hint in hints.items():
        for candidate in (hint, *typing.get_args(hint)):
            if isinstance(candidate, type) and issubclass(candidate, Enum):
                found[name] = candidate
    return found


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_shows_types_choices_and_one_default(capsys, path):
    """No '<bool>' or bare type names among the options (each has its metavar: FILE, DIR, MODEL, N),
    every choice with its values, no option with two defaults."""
    text = help_text(capsys, path)
    options = text.split("\nOptions:\n", 1)[1]
    for bare in ("<bool>", "<str>", "<int", "<float>"):
        assert bare not in options, f"{bare} in 'ast {' '.join(path)} --help'"
    for name, choice in enum_parameters(path).items():
        values = "<" + "|".join(member.value for member in choice) + ">"
        assert values in text, f"--help of ast {' '.join(path)} does not list {name}'s values {values}"
    for entry in option_entries(text):
        stated = re.search(r"\(default: ", entry)
        shown = re.search(r"\[[^\]]*default: ", entry)
        assert not (stated and shown), f"two defaults in: {entry}"


def test_the_help_check_finds_what_it_looks_for():
    """The checks above would fail on what they forbid (a check that cannot fail proves nothing)."""
    text = (
        "Usage: x\n\nOptions:\n  --batch-size N  Windows (default: 1 on the CPU).\n                  "
        "[default: 16]\n  --quiet\n"
    )
    entries = option_entries(text)
    assert entries[0] == "--batch-size N  Windows (default: 1 on the CPU). [default: 16]"
    assert re.search(r"\(default: ", entries[0]) and re.search(r"\[[^\]]*default: ", entries[0])
    assert set(enum_parameters(("tag",))) == {"aggregate", "activation", "fmt", "device", "precision", "frontend"}

"""Every command, sub-commands included, takes --quiet and --debug and shows an example in --help."""

from __future__ import annotations

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

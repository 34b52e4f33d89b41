"""Shell completion: the scripts in completions/ are what the app generates now, and the app answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ast_cli import completions

ROOT = Path(__file__).resolve().parents[1]


def test_completion_scripts_are_up_to_date(tmp_path):
    fresh = completions.write(tmp_path)
    assert [p.name for p in fresh] == ["ast.bash", "_ast", "ast.fish"]
    for path in fresh:
        committed = ROOT / "completions" / path.name
        assert committed.is_file(), f"missing {committed}: run 'python -m ast_cli.completions'"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run 'python -m ast_cli.completions'"
    assert completions.main(["--check", str(ROOT / "completions")]) == 0
    (tmp_path / "_ast").write_text("# edited by hand\n")
    assert completions.stale(tmp_path) == [tmp_path / "_ast"]
    assert completions.main(["--check", str(tmp_path)]) == 1


def _complete(env: dict[str, str]) -> tuple[str, bool]:
    """What ``ast`` answers a shell asking for completions, and whether it imported torch to do so."""
    code = "import sys; from ast_cli.cli import main; main(); print('torch' in sys.modules, file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    return proc.stdout, proc.stderr.strip().splitlines()[-1] == "True"


def test_the_app_answers_completions_without_importing_torch():
    out, torch_imported = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast ta", "COMP_CWORD": "1"})
    assert out.split() == ["tag"] and not torch_imported
    out, _ = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast tag --form", "COMP_CWORD": "2"})
    assert out.split() == ["--format"]
    out, _ = _complete({"_AST_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "get-args", "_TYPER_COMPLETE_ARGS": "ast e"})
    assert [line.split("\t")[0] for line in out.splitlines()] == ["export", "eval", "embed"]
    out, _ = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast models ", "COMP_CWORD": "2"})
    assert set(out.split()) >= {"list", "download", "rm"}

"""Shell completion: the scripts in completions/ are what the app generates now, and the app answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT
    )
    return proc.stdout, proc.stderr.strip().splitlines()[-1] == "True"


def test_the_app_answers_completions_without_importing_torch():
    out, torch_imported = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast ta", "COMP_CWORD": "1"})
    assert out.split() == ["tag"] and not torch_imported
    out, _ = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast tag --form", "COMP_CWORD": "2"})
    assert out.split() == ["--format"]
    out, _ = _complete(
        {"_AST_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "get-args", "_TYPER_COMPLETE_ARGS": "ast e"}
    )
    assert [line.split("\t")[0] for line in out.splitlines()] == ["export", "eval", "embed"]
    out, _ = _complete({"_AST_COMPLETE": "complete_bash", "COMP_WORDS": "ast models ", "COMP_CWORD": "2"})
    assert set(out.split()) >= {"list", "download", "rm"}


FORMATS = ["table", "json", "jsonl", "csv", "tsv"]


def test_bash_completes_choice_values_through_its_function():
    """The committed bash script's function, called as bash calls it at a TAB: the --format values, not file names."""
    script = ROOT / "completions" / "ast.bash"
    call = (
        f'source "{script}"; COMP_WORDS=(ast tag --format ""); COMP_CWORD=3; _ast_completion ast; '
        f'printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", call], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.split() == FORMATS
    call = call.replace("--format", "--aggregate")
    assert subprocess.run(["bash", "-c", call], env=env, capture_output=True, text=True, cwd=ROOT).stdout.split() == [
        "max",
        "mean",
    ]


def test_zsh_and_fish_complete_choice_values():
    """What the committed zsh and fish scripts ask ``ast`` at a TAB (their own command lines)."""
    out, _ = _complete({"_AST_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "ast tag --format "})
    assert all(f'"{value}"' in out for value in FORMATS) and out.startswith("_arguments")
    out, _ = _complete(
        {
            "_AST_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            "_TYPER_COMPLETE_ARGS": "ast export x --format ",
        }
    )
    assert out.split() == ["onnx", "torchscript", "hub"]
    assert "_TYPER_COMPLETE_ARGS" in (ROOT / "completions" / "_ast").read_text()  # the protocol the calls above use
    assert "_TYPER_COMPLETE_FISH_ACTION=get-args" in (ROOT / "completions" / "ast.fish").read_text()


def test_fish_completes_choice_values_through_its_script():
    import shutil

    if not shutil.which("fish"):
        pytest.skip("fish is not installed (apt-get install fish): the protocol test above covers what its script asks")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    call = f'source {ROOT / "completions" / "ast.fish"}; complete --do-complete "ast tag --format "'
    proc = subprocess.run(["fish", "-c", call], env=env, capture_output=True, text=True)
    assert sorted(line.split("\t")[0] for line in proc.stdout.splitlines()) == sorted(FORMATS)  # fish sorts them

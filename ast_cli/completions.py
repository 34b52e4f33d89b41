"""Shell completion scripts for ``ast``, generated from the app by Typer's completion machinery.

    python -m ast_cli.completions            # (re)write completions/ in the current folder
    python -m ast_cli.completions --check    # exit 1 when the files there are stale

Each script is what ``_AST_COMPLETE=source_SHELL ast`` prints (Typer keeps Click 7's
``source_bash`` order). The scripts are small: at each TAB they run ``ast`` again, which answers from
the app as it is then, so a new command or flag completes without regenerating them; the files change
only with Typer's script templates. No torch here: completion stays instant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = {"bash": "ast.bash", "zsh": "_ast", "fish": "ast.fish"}  # zsh looks up _ast on $fpath
COMPLETE_VAR = "_AST_COMPLETE"


def script(shell: str) -> str:
    """The completion script for ``shell``, from a fresh ``ast`` process as a user's shell would run it."""
    env = {**os.environ, COMPLETE_VAR: f"source_{shell}"}
    proc = subprocess.run(
        [sys.executable, "-c", "from ast_cli.cli import main; raise SystemExit(main())"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"no {shell} completion script from ast: {proc.stderr.strip()}")
    return proc.stdout


def write(directory: str | os.PathLike = "completions") -> list[Path]:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in SCRIPTS.items():
        path = folder / name
        path.write_text(script(shell), encoding="utf-8")
        written.append(path)
    return written


def stale(directory: str | os.PathLike = "completions") -> list[Path]:
    """The scripts in ``directory`` that are missing or differ from what the app generates now."""
    folder = Path(directory)
    return [
        folder / name
        for shell, name in SCRIPTS.items()
        if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != script(shell)
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    if any(a.startswith("-") for a in rest) or len(rest) > 1:
        print("usage: python -m ast_cli.completions [--check] [DIR]  (DIR: completions)", file=sys.stderr)
        return 2
    directory = rest[0] if rest else "completions"
    if check:
        old = stale(directory)
        for path in old:
            print(f"stale: {path} (run: python -m ast_cli.completions {directory})", file=sys.stderr)
        return 1 if old else 0
    for path in write(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

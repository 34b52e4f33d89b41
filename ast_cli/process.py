"""The ``ast`` process around the commands: the one exit point, what every command does before it
runs, and the fast end.

- ``main`` runs the Typer app and maps every outcome to an exit status (``errors.py``): a typed
  error or a bad flag is one line on stderr (``ast: error: ...``), a traceback only with --debug.
- ``guard`` wraps each command: --quiet and --debug take effect, the core's log records (its one
  message channel) and third-party warnings become one line each on stderr, torch is imported with
  the garbage collector frozen after it, Ctrl-C and a closed stdout pipe become their exit statuses.
- Run as the program, the process ends with ``os._exit`` once the output is flushed (``_end``).

Importing this module does not import torch.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import gc
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import typer
import typer.main

from .chatter import one_line, one_line_warnings
from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ASTError,
    Interrupted,
    InvalidValue,
    Terminated,
)
from .files import os_error_of

# OSErrors that come from the machine, not from ast: each with what to do; the first ones mean the
# output's place is unusable, so nothing could start (exit 2); the others stop a run partway (exit 1)
ENVIRONMENT_ERRORS = {
    errno.EROFS: "a read-only file system: write somewhere else",
    errno.EACCES: "no permission: write somewhere else, or fix the folder's permissions",
    errno.ENAMETOOLONG: "the name is too long for this file system",
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "over the disk quota: free some space and run the command again",
    errno.EIO: "the disk reported an input/output error",
    errno.EFBIG: "the file is larger than this file system allows: write somewhere else",
}
CANNOT_START = {errno.EROFS, errno.EACCES, errno.ENAMETOOLONG}
_debug = False  # --debug of the command that runs: tracebacks with the one-line errors
_args: list[str] = []  # the arguments of the command that runs (command_line)
_exit_status = EXIT_FAILED  # what _end exits with when main() did not return (an uncaught error)


# -- before a command ---------------------------------------------------------------------------------
def guard(fn: Callable, *, needs_torch: bool = True) -> Callable:
    """Wrap a command that takes ``quiet`` and ``debug`` (and ``threads`` where it runs torch): set
    them up, then run it with Ctrl-C and a closed stdout pipe mapped to our exits (click would print
    'Aborted!' or a traceback)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        global _debug
        _debug, quiet = bool(kwargs.get("debug")), bool(kwargs.get("quiet"))
        prepare(quiet=quiet, needs_torch=needs_torch)
        try:
            with _log_to_stderr(quiet=quiet, debug=_debug):
                # the one thread policy (threads.py): --threads, else OMP_NUM_THREADS, else the CPUs we may use
                if needs_torch:
                    from . import threads

                    threads.configure(kwargs.get("threads"))
                return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None

    return run


def prepare(*, quiet: bool, needs_torch: bool) -> None:
    """Progress bars and warnings go to stderr; --quiet keeps warnings but drops bars. Then torch."""
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

    one_line_warnings()
    if needs_torch:
        _import_torch()


def _import_torch() -> None:
    """Import torch with the garbage collector off, then freeze what the import made: those objects
    live as long as the process, and every full collection would walk them again (a large share of a
    short ``ast tag``, benchmarks/startup.py). glibc's malloc thresholds (``allocator``) and the
    OpenMP wait policy (``threads``) are set first, before torch allocates or starts threads."""
    from . import allocator, threads

    allocator.tune()
    threads.openmp_environment()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


class _Prefix(logging.Formatter):
    """One line a record: ``ast: message`` (info), ``ast: warning: message``, ``ast: error: message``;
    ``ast: debug: message`` (tracebacks included) with --debug."""

    LEVELS = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno <= logging.DEBUG:
            return "ast: debug: " + super().format(record)
        return "ast: " + self.LEVELS.get(record.levelno, "") + one_line(super().format(record))


@contextlib.contextmanager
def _log_to_stderr(*, quiet: bool, debug: bool):
    """The one channel of the core's messages (``logging.getLogger(__name__)`` in every module, under
    ``ast_cli``) on stderr: info (what it chose on its own: which architecture a .pth was read as) not
    with --quiet, warnings always; with --debug also the tracebacks of the files that failed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Prefix("%(message)s"))
    logger = logging.getLogger("ast_cli")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- messages -------------------------------------------------------------------------------------
def error(message: str) -> None:
    """``ast: error: message`` on stderr, one line."""
    print(f"ast: error: {one_line(message)}", file=sys.stderr, flush=True)


def status(message: str) -> None:
    """``ast: message`` on stderr: what a long step is doing."""
    print(f"ast: {one_line(message)}", file=sys.stderr, flush=True)


def usage_message(exc: typer.TyperException) -> str:
    """A bad flag or argument as one line: '--format must be one of table, json, ..., got 'xml''
    for a choice, Typer's own message otherwise, with where to look."""
    param = getattr(exc, "param", None)
    choice = re.fullmatch(r"(?:Value error, )?('.*?'|\".*?\") is not one of (.*?)\.?", exc.message, re.DOTALL)
    if isinstance(exc, typer.BadParameter) and param is not None and param.opts and choice:
        values = ", ".join(v.strip("'\"") for v in re.findall(r"'[^']*'|\"[^\"]*\"", choice.group(2)))
        return f"{max(param.opts, key=len)} must be one of {values}, got {choice.group(1)}"
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return exc.format_message() + where


# -- the exit point -------------------------------------------------------------------------------
def main(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the Typer ``app`` on ``argv`` and return the exit status.

    Called as the program (no ``argv``), the process then ends as soon as the exit handlers have run
    (``_end``); called with ``argv`` (tests, embedding) it only returns."""
    global _exit_status
    if argv is None:
        atexit.register(_end)
        signal.signal(signal.SIGTERM, _terminated)  # whatever runs: exit 143 with what was written kept valid
    _exit_status = _run(app, sys.argv[1:] if argv is None else argv)
    if argv is None:  # the work is over and its outputs closed: a late SIGTERM only ends the process
        signal.signal(signal.SIGTERM, _terminated_late)
    return _exit_status


def command_line() -> list[str]:
    """The running command as a user would type it again: the program (``ast``, ``python -m ast_cli`` or
    ``torchrun ... -m ast_cli``) and the arguments it was given."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun
        program = ["torchrun", "--nproc-per-node", os.environ.get("LOCAL_WORLD_SIZE", "1"), "-m", "ast_cli"]
    elif sys.argv[0].endswith(os.path.join("ast_cli", "__main__.py")):
        program = [os.path.basename(sys.executable), "-m", "ast_cli"]
    else:
        program = ["ast"]
    return [*program, *_args]


@runtime_checkable
class _Shown(Protocol):
    """A Typer usage error (one that carries its command's context): ``show`` prints it as Typer does.
    Typer's public API names only the base, ``TyperException``, which has no ``show``."""

    def show(self) -> None: ...


def _run(app: typer.Typer, args: list[str]) -> int:
    global _debug, _args
    _debug = False
    _args = list(args)
    _keep_undecodable_names()
    try:
        code = typer.main.get_command(app).main(args=args, prog_name="ast", standalone_mode=False)
        return code if isinstance(code, int) else EXIT_OK
    except SystemExit as exc:  # shell completion answers and exits
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILED)
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and exc.message == ctx.get_help() and isinstance(exc, _Shown):
            exc.show()  # 'ast tag' alone: its help (no_args_is_help), as Typer prints it
        else:
            error(usage_message(exc))
        return exc.exit_code
    except ASTError as exc:
        if _debug:
            traceback.print_exc()
        if isinstance(exc, (Interrupted, Terminated)):
            print(f"ast: {exc}", file=sys.stderr)
        else:
            error(message_of(exc))
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("ast: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        cause = os_error_of(exc)  # an OSError, or a library's error that wraps one (torch, safetensors)
        if cause is None or cause.errno not in ENVIRONMENT_ERRORS:
            return _bug(exc)
        if _debug:  # the environment, not a bug: what happened where, and what to do
            traceback.print_exc()
        what = ENVIRONMENT_ERRORS[cause.errno]
        error(f"{cause.filename or 'a file'}: {cause.strerror} ({what}; nothing half-written is left)")
        return EXIT_USAGE if cause.errno in CANNOT_START else EXIT_FAILED


# A core object names the field it refuses (errors.InvalidValue); the command line names the flag.
# Fields are spelled as their flags with '_' for '-', but for these.
FIELD_FLAGS = {"fmt": "--format", "out": "--output", "source": "--model", "val_dir": "--val", "labels_csv": "--labels"}


def flag_of(field: str) -> str:
    """The flag that sets a core field: ``norm_stats`` -> ``--norm-stats``."""
    return FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))


def message_of(exc: ASTError) -> str:
    """The one line an error prints: an ``InvalidValue`` speaks of the flag its field comes from."""
    if isinstance(exc, InvalidValue):
        message = f"{flag_of(exc.field)} {exc.problem}"
        return f"{message} ({exc.hint})" if exc.hint else message
    return str(exc)


def _bug(exc: Exception) -> int:
    """A bug, not a user error: still one line; the traceback with --debug."""
    if _debug:
        traceback.print_exc()
    report = "a bug in ast: please report it with the output of the same command with --debug"
    error(f"unexpected {type(exc).__name__}: {exc} ({report})")
    return EXIT_FAILED


def _terminated(signum, frame) -> None:
    """The first SIGTERM unwinds the command (outputs are closed on the way); one arriving while that
    unwinding or the exit handlers run ends the process at once instead of raising into them. So does
    one that arrives during an import (torch's, at start or lazily later): an exception raised there
    can cross C++ (pybind11), which aborts the process instead of unwinding it. What a run had
    written is whole either way (atomic files; ``--resume`` drops a torn last record)."""
    signal.signal(signal.SIGTERM, _terminated_late)
    if importing(frame):
        _terminated_late(signum, frame)
    raise Terminated("terminated")


def importing(frame) -> bool:
    """Whether ``frame`` runs inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _terminated_late(signum, frame) -> None:
    global _exit_status
    _exit_status = EXIT_TERMINATED
    _end()


def _keep_undecodable_names() -> None:
    """Write file names that are not valid UTF-8 back as their bytes (as Python does in the C locale)
    rather than failing on them; JSON escapes them itself (output.to_json)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # a TextIOWrapper's; a replaced stdout may lack it
    if reconfigure is None:
        return
    try:
        reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError, OSError):
        pass


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _end() -> None:
    """End the process without the interpreter's teardown, which frees torch's objects one by one
    (most of a second after ``import torch``, benchmarks/startup.py). Registered before any other
    exit handler, so it runs after all of them (atexit is LIFO)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the status already says what happened
            pass
    os._exit(_exit_status)

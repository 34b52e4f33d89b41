"""Typed errors and exit statuses.

Every error a user can cause is one of these; ``process.main`` is the one place that turns them into a
one-line message and an exit status (a traceback only with ``--debug``). No torch here.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # some input failed; the rest was still processed
EXIT_USAGE = 2  # bad arguments, a model that cannot be loaded, an output that would be overwritten
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what shells report for a writer whose reader went away
EXIT_TERMINATED = 143  # 128 + SIGTERM


class ASTError(Exception):
    """Base of all errors a user can cause. ``hint`` says what to do about it."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ASTError):
    """Arguments that cannot work together or make no sense."""

    exit_code = EXIT_USAGE


class AudioError(ASTError):
    """One input could not be read or decoded. Batch runs record it and go on."""

    exit_code = EXIT_FAILED


class ModelError(ASTError):
    """A model could not be found, downloaded, validated or loaded."""

    exit_code = EXIT_USAGE


class OfflineError(ModelError):
    """The model is not cached and the Hub cannot be reached (or HF_HUB_OFFLINE is set)."""


class UnsafeCheckpointError(ModelError):
    """A pickle that would run code on load; refused by ``torch.load(weights_only=True)``."""


class Interrupted(ASTError):
    """Ctrl-C: the message says how far the run got."""

    exit_code = EXIT_INTERRUPTED


class OutputError(ASTError):
    """The environment stopped a write: a full disk, a read-only or vanished folder, a quota. Exit 1
    when results were written before (they stay valid), 2 when nothing could start."""


class ClusterError(ASTError):
    """A Ray cluster that cannot be reached, or a Ray job that failed past its retries (``ast batch
    --engine ray``); what was written stays valid and ``--resume`` continues."""


class Terminated(ASTError):
    """SIGTERM during a run (``ast batch`` turns it into this, so outputs are closed cleanly)."""

    exit_code = EXIT_TERMINATED


class OutputExistsError(UsageError):
    """An output file exists and neither ``--force`` nor ``--resume`` was given."""


class InvalidValue(UsageError, ValueError):
    """A core object's field holds a value it cannot take. ``field`` names the field (``top``,
    ``norm_stats``); ``problem`` completes the sentence ("must be 0 or more, got -1"). The core speaks
    of fields only: the command line maps a field to its flag (``--top``) when it prints the message.
    A usage error: exit 2, and ``except UsageError`` catches it."""

    def __init__(self, field: str, problem: str, hint: str | None = None):
        super().__init__(f"{field} {problem}", hint=hint)
        self.field = field
        self.problem = problem

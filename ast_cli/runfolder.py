"""The output folder of ``ast finetune`` while a run writes it, and what lets ``--resume`` continue it.

Beside the model (the best epoch so far, ``checkpoints.save``) a run keeps ``recipe.json``,
``metrics.jsonl`` (one line per finished epoch), ``norm_stats.json`` (``--norm-stats auto``, cached),
``.incomplete`` (until the run's last write: its model is only the best epoch so far) and
``.train_state/state.pt``: model, optimizer, scheduler, scaler, RNG and the run's progress after the
last finished epoch, plain containers of tensors that ``torch.load(weights_only=True)`` reads. A
finished run removes the state (``--keep-state`` keeps it) and the marker.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from . import hub, plots
from .config import write_json
from .errors import EXIT_USAGE, OutputError, OutputExistsError, UsageError
from .files import AtomicPath, atomic_open, remove_stale_temporaries, write_atomic
from .finetune_options import FinetuneOptions

STATE_DIR = ".train_state"  # what --resume needs, apart from the model: removed when the run finishes
STATE_FILE = f"{STATE_DIR}/state.pt"
MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "preprocessor_config.json")
NORM_STATS_FILE = "norm_stats.json"  # --norm-stats auto, cached
METRICS_FILE = "metrics.jsonl"
RECIPE_FILE = "recipe.json"  # the recipe the run chose and every value it trained with
OLD_STATE_FILE = ".train_state.pt"  # where earlier versions kept the state
# what a run stopped before its first epoch leaves: such a folder counts as empty
LEFTOVERS = {STATE_DIR, NORM_STATS_FILE, RECIPE_FILE, hub.INCOMPLETE_FILE}
PICTURES = (plots.TRAINING_PNG, plots.CONFUSION_PNG, plots.AP_PNG)  # with matplotlib (the plot extra)
# what a resumed run must share with the interrupted one (``epochs`` may change: a cosine schedule
# then spreads what is left of its decay over the new number)
RESUME_FIELDS = (
    "base",
    "val_dir",
    "val_split",
    "seed",
    "target_length",
    "freeze_backbone",
    "lr",
    "batch_size",
    "mixup",
    "freqm",
    "timem",
    "warmup",
    "weight_decay",
    "labels_csv",
    "norm_stats",
)


class TrainState(TypedDict):
    """``.train_state/state.pt``: every value a tensor, a number, a string or a container of them."""

    config: dict[str, Any]  # ASTConfig.to_dict()
    preprocessor: dict[str, Any]  # PreprocessorConfig.to_dict()
    model: dict[str, torch.Tensor]  # the weights; a probe's head only (head_only)
    head_only: bool
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None  # None: no fp16 loss scaling
    rng: dict[str, Any]  # rng_state()
    run: dict[str, Any]  # the run's progress (trainer.RunState.to_dict())
    settings: dict[str, Any]  # resume_settings()


# -- before the run -------------------------------------------------------------------------------
def state_path(out: Path) -> Path | None:
    """The interrupted run's state in ``out`` (or where earlier versions kept it), or None."""
    return next((path for path in (out / STATE_FILE, out / OLD_STATE_FILE) if path.is_file()), None)


def unstarted(out: Path) -> bool:
    """Whether ``out`` holds only what a run stopped before its first saved state leaves (or nothing).
    Marked ``.incomplete`` and without ``metrics.jsonl`` (written after the state), a run saved no
    state: its model, if any, is one that no ``--resume`` can continue (a disk that filled, or a kill,
    between the model and the state)."""
    if not out.is_dir() or state_path(out):
        return False
    names = {entry.name for entry in out.iterdir() if ".tmp" not in entry.name}
    if hub.INCOMPLETE_FILE in names and METRICS_FILE not in names:
        return names <= LEFTOVERS | set(MODEL_FILES) | set(PICTURES)
    return names <= LEFTOVERS


def check_out_dir(out: Path, *, resume: bool, force: bool) -> bool:
    """Whether the run continues a saved state (``resume``); refuses a folder it must not write into.
    A folder left by a run stopped before its first epoch counts as empty (``resume`` starts it afresh)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if resume:
        if state_path(out):
            return True
        if unstarted(out) and any(out.iterdir()):
            return False
        finished = (out / "config.json").is_file() and not (out / hub.INCOMPLETE_FILE).exists()
        hint = "start the run without --resume"
        if finished:
            hint += " (--force to replace it); --keep-state keeps what --resume needs"
        why = "the run finished" if finished else "no saved epoch"
        raise UsageError(f"{out}: nothing to resume ({why})", hint=hint)
    if out.exists() and any(out.iterdir()) and not force and not unstarted(out):
        raise OutputExistsError(
            f"{out}: output folder is not empty",
            hint="choose a new folder, --resume an interrupted run, or --force to overwrite",
        )
    return False


def resume_settings(options: FinetuneOptions, processes: int) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (``RESUME_FIELDS``, the recipe and the
    number of processes)."""
    values = {name: getattr(options, name) for name in RESUME_FIELDS}
    return {**values, "recipe": str(options.recipe), "processes": processes}  # plain str: weights_only


def check_same_settings(before: dict[str, Any], now: dict[str, Any]) -> None:
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise UsageError(
            f"--resume with other settings than the interrupted run: {', '.join(changed)}",
            hint="it ran with " + ", ".join(f"{k}={before.get(k)!r}" for k in changed),
        )


def start_afresh(out: Path, recipe: dict[str, Any]) -> None:
    """A new run in ``out``: nothing of an earlier run survives (--force), its model least of all (a
    kill in the first epoch would leave it beside this run's files, looking like this run's result);
    then ``recipe.json``."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (OLD_STATE_FILE, METRICS_FILE, *MODEL_FILES, *PICTURES):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    write_json(out / RECIPE_FILE, recipe)


def open_state_dir(out: Path) -> None:
    """``.train_state/`` made, and the half-written files of a killed run removed."""
    (out / STATE_DIR).mkdir(exist_ok=True)
    remove_stale_temporaries(out / STATE_DIR)
    remove_stale_temporaries(out)


def mark_incomplete(out: Path, epoch: int, epochs: int) -> None:
    """``.incomplete``: until the last write of the run, its model is only the best epoch so far."""
    write_atomic(out / hub.INCOMPLETE_FILE, f"ast finetune: epoch {epoch} of {epochs} done; --resume finishes it\n")


# -- state ----------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every generator a run draws from (torch, CUDA, numpy, Python), as tensors and numbers."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # the global generator is MT19937: its legacy state is a tuple
    python = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(python[1]) + [python[0], python[2]],
    }


def set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    *internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_state(out: Path, state: TrainState) -> None:
    """``state`` into ``.train_state/state.pt``, written atomically."""
    with AtomicPath(out / STATE_FILE) as target:  # a full disk: the last saved state stays
        target.write_with(lambda f: torch.save(state, f))


def load_state(path: Path) -> TrainState:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file fails in many ways inside the unpickler
        raise UsageError(
            f"{path}: cannot read the training state ({type(exc).__name__}: {exc})", hint="start again with --force"
        ) from None


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one line per finished epoch (written after the state: once it shows an epoch,
    --resume continues after it)."""
    with atomic_open(out / METRICS_FILE, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in history)


def finish(out: Path, *, keep_state: bool) -> None:
    """The run's last writes: the state removed (unless ``keep_state``), then the ``.incomplete``
    marker: the folder is complete."""
    if not keep_state:
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
        (out / OLD_STATE_FILE).unlink(missing_ok=True)
    (out / hub.INCOMPLETE_FILE).unlink(missing_ok=True)


# -- after Ctrl-C ---------------------------------------------------------------------------------
def interrupted_summary(out: Path, epochs: int, command: list[str] | None = None) -> str:
    """What Ctrl-C leaves, and the command that goes on from there (``command`` without --force, which
    would start again, and with --resume after a saved epoch). metrics.jsonl lists the epochs whose state
    was saved (it is written after the state)."""
    done = saved_epochs(out)
    if not done:
        again = f"; to start again: {shlex.join(continue_command(command, resume=False))}" if command else ""
        return f"interrupted before the first of {epochs} epoch(s) finished; nothing to resume from{again}"
    if not command:
        return f"interrupted after {done} of {epochs} epoch(s); the same command with --resume continues from there"
    return f"interrupted after {done} of {epochs} epoch(s); to continue: {shlex.join(continue_command(command))}"


def saved_epochs(out: Path) -> int:
    """The epochs whose state was saved: metrics.jsonl's lines (it is written after the state)."""
    try:
        return sum(1 for line in (out / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return 0


def stopped_by_the_disk(exc: OSError, out: Path, epochs: int, command: list[str] | None = None) -> OutputError:
    """A full disk (or quota) stopped the run: the file it could not write, and the command that goes on
    once there is room: --resume after a saved epoch (its state is whole: states are written
    atomically), else the same command, which starts the folder afresh (``unstarted``)."""
    what = f"{exc.filename or out}: {exc.strerror or os.strerror(exc.errno or 0)}"
    done = saved_epochs(out) if state_path(out) else 0
    if done:
        again = shlex.join(continue_command(command)) if command else "the same command with --resume"
        return OutputError(
            f"{what} after {done} of {epochs} epoch(s) were saved", hint=f"free some space, then: {again}"
        )
    again = shlex.join(continue_command(command, resume=False)) if command else "the same command"
    return OutputError(
        f"{what} before the first of {epochs} epoch(s) was saved",
        hint=f"free some space, then start again with: {again}",
        exit_code=EXIT_USAGE,
    )


def continue_command(command: list[str], resume: bool = True) -> list[str]:
    """``command`` (argv) without --force and --resume, then --resume when there is a saved epoch."""
    kept = [arg for arg in command if arg not in ("--force", "--resume")]
    return [*kept, "--resume"] if resume else kept

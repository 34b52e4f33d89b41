"""``ast finetune``: the training loop of the authors' fine-tuning recipes (``src/traintest.py``), and
of the from-scratch recipe for bases that have not learned AudioSet.

The base is loaded first (a bad ``--base`` fails before the data is read), and decides what ``--recipe
default`` means (``recipe_for_base``): the authors' recipe (Adam, betas 0.95/0.999, weight decay 5e-7,
MultiStepLR(range(start, 1000, step), gamma) stepped once per epoch) for an AudioSet-trained base,
``scratch`` (AdamW, warm-up then cosine, no masking) for any other (``options.RECIPES``, ``lr_factor``).
Autocast, validation every epoch with the best epoch kept. Not the authors': weight averaging over
epochs (their AudioSet runs' ``wa``) and the balanced sampler of their full AudioSet run. After every
epoch the training state (model, optimizer, scheduler, RNG, history) goes to ``OUT_DIR/.train_state/``
so ``--resume`` continues exactly where a killed run left off; a finished run removes it (``--keep-state``
keeps it). ``--freeze-backbone`` trains the head on cached embeddings (``probe``). Under ``torchrun`` the
same code runs DistributedDataParallel: one process per device, a DistributedSampler, metrics reduced
across processes, and only rank 0 writing files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import checkpoints, hub, plots, probe, threads
from . import data as D
from .config import MULTI_LABEL, SINGLE_LABEL, ASTConfig, PreprocessorConfig, write_json
from .devices import autocast, resolve_device, resolve_precision
from .errors import Interrupted, ModelError, OutputExistsError, UsageError
from .evaluation import model_forward, predict, score
from .files import AtomicPath, atomic_open, remove_stale_temporaries, write_atomic
from .metrics import format_report, main_metric
from .model import AST
from .options import (  # FinetuneOptions is also importable from here
    ADAMW, AUDIOSET_LABELS, SCHEDULE_COSINE, WARMUP_LINEAR, FinetuneOptions, RecipeValues, parse_norm_stats,
)
from .progress import bar as progress_bar

STATE_DIR = ".train_state"  # what --resume needs, apart from the model: removed when the run finishes (--keep-state keeps it)
STATE_FILE = f"{STATE_DIR}/state.pt"
MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "preprocessor_config.json")
NORM_STATS_FILE = "norm_stats.json"  # --norm-stats auto, cached
METRICS_FILE = "metrics.jsonl"
RECIPE_FILE = "recipe.json"  # the recipe the run chose and every value it trained with
OLD_STATE_FILE = ".train_state.pt"  # where earlier versions kept the state
# what a run stopped before its first epoch leaves: such a folder counts as empty
LEFTOVERS = {STATE_DIR, NORM_STATS_FILE, RECIPE_FILE, hub.INCOMPLETE_FILE}
PICTURES = (plots.TRAINING_PNG, plots.CONFUSION_PNG, plots.AP_PNG)  # with matplotlib (the plot extra)
BETAS = (0.95, 0.999)  # the authors' Adam (traintest.py)
ADAMW_BETAS = (0.9, 0.999)  # AdamW's usual ones (the from-scratch recipe)
MAX_WARMUP = 1000  # steps: the authors' warm-up, and the default recipe's at most
WARMUP_EVERY = 50  # steps: the authors' warm-up sets the rate at every 50th step (traintest.py)
MILESTONES_END = 1000  # MultiStepLR(range(start, 1000, step)): the last decay is after epoch 999
HEAD = ("fc_norm.", "head.")  # the classifier (the authors' mlp_head): all --freeze-backbone trains


# -- processes ---------------------------------------------------------------------------------
@dataclass
class World:
    """This process's place under torchrun (rank 0 of 1 without it)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        if self.size > 1:
            dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


# -- setup -------------------------------------------------------------------------------------
def state_path(out: Path) -> Path | None:
    """The interrupted run's state in ``out`` (or where earlier versions kept it), or None."""
    return next((path for path in (out / STATE_FILE, out / OLD_STATE_FILE) if path.is_file()), None)


def unstarted(out: Path) -> bool:
    """Whether ``out`` holds only what a run stopped before its first epoch leaves (or nothing)."""
    if not out.is_dir() or state_path(out):
        return False
    return all(entry.name in LEFTOVERS or ".tmp" in entry.name for entry in out.iterdir())


def check_out_dir(out: Path, options: FinetuneOptions) -> bool:
    """Whether the run continues a saved state (``--resume``); refuses a folder it must not write into.
    A folder left by a run stopped before its first epoch counts as empty (``--resume`` starts it afresh)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if options.resume:
        if state_path(out):
            return True
        if unstarted(out) and any(out.iterdir()):
            return False
        finished = (out / "config.json").is_file() and not (out / hub.INCOMPLETE_FILE).exists()
        raise UsageError(f"{out}: nothing to resume ({'the run finished' if finished else 'no saved epoch'})",
                         hint="start the run without --resume" + (" (--force to replace it); --keep-state keeps what --resume needs" if finished else ""))  # fmt: skip
    if out.exists() and any(out.iterdir()) and not options.force and not unstarted(out):
        raise OutputExistsError(
            f"{out}: output folder is not empty", hint="choose a new folder, --resume an interrupted run, or --force to overwrite"
        )
    return False


def load_base(options: FinetuneOptions) -> checkpoints.Checkpoint:
    """The base model, before any data is read: a missing or unreachable base fails at once."""
    try:
        return checkpoints.load(options.base, max_length=options.target_length, fstride=options.fstride, tstride=options.tstride,
                                input_tdim=options.input_tdim)  # fmt: skip
    except ModelError as exc:  # the hints of the model loaders name ast tag's -m
        hint = exc.hint.replace("(-m; --base for finetune)", "(--base)") if exc.hint else exc.hint
        raise type(exc)(f"--base {exc.message}", hint=hint) from None


def recipe_for_base(spec: str, config: ASTConfig) -> tuple[bool, str]:
    """Whether the base learned AudioSet (the authors' fine-tuning recipe suits it), and why it is
    taken to: its 527 outputs, one of the authors' Hub ids, or the authors' .pth."""
    if config.num_labels == AUDIOSET_LABELS:
        return True, f"{AUDIOSET_LABELS} AudioSet labels"
    if spec.startswith("MIT/ast-finetuned"):
        return True, "one of the authors' models"
    if spec.endswith(".pth"):
        return True, "the authors' checkpoint"
    return False, f"not AudioSet-trained: {config.num_labels} labels, {config.hidden_size} wide"


def load_data(data_dir: str, options: FinetuneOptions, keep_fbanks: bool, progress: bool | None = None,
              known: probe.FrameCache | None = None) -> tuple[D.LabelledSet, list, list, D.LabelledSet, list]:  # fmt: skip
    """Training and validation sets (unreadable clips dropped), with cached fbanks and training clip
    lengths; ``known``: clips whose frames a cache holds are not decoded again (the cached probe)."""
    found, fbanks, frames = D.scan(D.discover(data_dir, options.labels_csv), keep=keep_fbanks, progress=progress, known=known)
    if options.val_dir:
        val = D.folder_classes(options.val_dir)
        val, val_fbanks, _ = D.scan(D.relabel(val, found.labels, "the training set"), keep=keep_fbanks, progress=progress, known=known)
        return found, fbanks, frames, val, val_fbanks
    train, val = D.stratified_split(found, options.val_split, options.seed)
    position = {clip.path: i for i, clip in enumerate(found.clips)}
    pick = lambda values, part: [values[position[c.path]] for c in part.clips]  # noqa: E731
    train.skipped = found.skipped
    return train, pick(fbanks, train), pick(frames, train), val, pick(fbanks, val)


def initial_model(base: checkpoints.Checkpoint, options: FinetuneOptions, train: D.LabelledSet, frames: list[int], out: Path,
                  progress: bool | None = None) -> tuple[AST, PreprocessorConfig]:  # fmt: skip
    """The base model at the target length with a fresh head of one output per class."""
    model, config = base.model, base.model.config
    target = options.target_length or D.default_target_length(frames, config.max_length)
    if target != config.max_length:  # the default length is known only once the base is loaded
        model = checkpoints.build_model(config.replace(max_length=target), model.state_dict(), options.base, saved_grid=config.grid)
    torch.manual_seed(options.seed)  # the new head's initialisation
    model.reset_classifier(len(train.labels))
    model.config = model.config.replace(
        id2label=dict(enumerate(train.labels)), problem_type=MULTI_LABEL if train.multi_label else SINGLE_LABEL
    )
    stats = parse_norm_stats(options.norm_stats)
    if stats == "base":
        mean, std = base.preprocessor.mean, base.preprocessor.std
    elif stats == "auto":
        mean, std = dataset_norm_stats([c.path for c in train.clips], target, model.config.num_mel_bins, out, progress)
    else:
        mean, std = stats
    return model, PreprocessorConfig(max_length=target, num_mel_bins=model.config.num_mel_bins, mean=mean, std=std)


def dataset_norm_stats(paths: list[str], target_length: int, num_mel_bins: int, out: Path, progress: bool | None = None) -> tuple[float, float]:
    """``--norm-stats auto``: what ``ast stats --method exact --target-length T`` gives for the
    training clips (the pooled statistics: deterministic, unlike the authors' augmented estimate),
    cached in OUT_DIR so a second run on the same clips does not compute them again."""
    from .stats import compute_stats

    key = {
        "method": "exact",
        "target_length": target_length,
        "num_mel_bins": num_mel_bins,
        "files_sha256": hashlib.sha256("\n".join(sorted(paths)).encode("utf-8", "surrogateescape")).hexdigest(),
    }
    cache = out / NORM_STATS_FILE
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return float(cached["mean"]), float(cached["std"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is recomputed
    stats = compute_stats(paths, "exact", target_length=target_length, num_mel_bins=num_mel_bins, progress=progress)  # None: a bar at a terminal
    out.mkdir(parents=True, exist_ok=True)
    write_json(cache, {"key": key, "mean": stats.mean, "std": stats.std, "files": stats.files})
    return stats.mean, stats.std


def resume_settings(options: FinetuneOptions, world: World) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (``epochs`` may change: a cosine schedule
    then spreads what is left of its decay over the new number)."""
    keep = ("base", "val_dir", "val_split", "seed", "target_length", "freeze_backbone", "lr", "batch_size", "mixup",
            "freqm", "timem", "warmup", "weight_decay", "labels_csv", "norm_stats")  # fmt: skip
    values = asdict(options)
    return {**{k: values[k] for k in keep}, "recipe": str(options.recipe), "processes": world.size}  # plain str: weights_only


def lr_factor(step: int, steps_per_epoch: int, values: RecipeValues) -> float:
    """The learning rate of optimizer step ``step`` (from 0) over the peak, in a run of ``values``.

    Decay: traintest.py's ``MultiStepLR(range(start, 1000, step), gamma=decay)`` stepped after each
    epoch, so epoch E (counted from 1) runs at decay ** (number of milestones below E).
    Warm-up (``values.warmup`` steps; None: 1000 or one epoch if shorter):
    linear (the default recipe): (step + 1) / warmup, up to 1, times the decay;
    authors (traintest.py): at every 50th step up to ``warmup`` (and at ``warmup``) the rate is set to
    step / warmup of the peak, which holds until the next such step or the next decay. A decay before
    the last setting is overwritten by it, as in their loop (it matters when the warm-up spans epochs).
    Cosine (the scratch recipe): the linear warm-up, then 0.5 * (1 + cos(pi * p)) with p going from 0
    after the warm-up to 1 at the end of ``values.epochs`` epochs.
    """
    warmup = warmup_steps(values, steps_per_epoch)
    if values.schedule == SCHEDULE_COSINE:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, values.epochs * steps_per_epoch - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    epoch = step // steps_per_epoch  # epochs finished: the scheduler stepped after each of them
    warm, since = 1.0, -1  # the decays after epoch `since` count
    if warmup and values.warmup_rule == WARMUP_LINEAR:
        warm = min(1.0, (step + 1) / warmup)
    elif warmup:
        last_set = warmup if step >= warmup else step - step % WARMUP_EVERY
        warm, since = last_set / warmup, last_set // steps_per_epoch
    milestones = lambda up_to: len(range(values.decay_start, min(up_to, MILESTONES_END - 1) + 1, values.decay_step))  # noqa: E731
    return warm * values.decay ** (milestones(epoch) - milestones(since))


def warmup_steps(values: RecipeValues, steps_per_epoch: int) -> int:
    """The recipe's warm-up steps; None: 1000, or one epoch if it is shorter."""
    return values.warmup if values.warmup is not None else min(MAX_WARMUP, steps_per_epoch)


def loss_name(values: RecipeValues, multi_label: bool) -> str:
    """CE or BCE: the recipe's, or for ``auto`` CE on single-label data and BCE on multi-label."""
    return values.loss if values.loss != "auto" else ("BCE" if multi_label else "CE")


def describe(options: FinetuneOptions, values: RecipeValues, why: str = "") -> str:
    """One line, the run's first: the recipe it chose (and ``why``), and what it trains with after the
    flags. What the data decides (the frames, the warm-up of one epoch) is said as a rule."""
    frames = values.target_length or "the longest clip's"
    timem = values.timem if values.timem is not None else "20% of the frames"
    loss = values.loss if values.loss != "auto" else ("BCE" if options.labels_csv else "CE")
    if values.warmup is None:
        warm = "warm-up: one epoch, at most 1000 steps"
    else:
        warm = f"{values.warmup} steps of {'linear' if values.warmup_rule == WARMUP_LINEAR else 'the authors'} warm-up" if values.warmup else "no warm-up"
    if values.schedule == SCHEDULE_COSINE:
        decay = "cosine to 0"
    else:
        every = "epoch" if values.decay_step == 1 else f"{values.decay_step} epochs"
        decay = f"x{values.decay:g} every {every} from epoch {values.decay_start + 1}"
    optimizer = f"{'AdamW' if values.optimizer == ADAMW else 'Adam'} (weight decay {values.weight_decay:g})"
    probe = ", head only on cached embeddings (no augmentation)" if options.freeze_backbone else ""
    return (
        f"recipe {options.recipe}{f' ({why})' if why else ''}: lr {values.lr:g}, epochs {values.epochs}, batch {values.batch_size}, "
        f"frames {frames}, freqm {values.freqm}, timem {timem}, mixup {values.mixup:g}, {loss}, {optimizer}, {warm}, "
        f"{decay}{', noise and roll' if values.noise else ''}{probe}"
    )


# -- the run -----------------------------------------------------------------------------------
def finetune(data_dir: str, out_dir: str, options: FinetuneOptions, log: Callable[[str], None] | None = None,
             progress: bool = True, command: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Fine-tune ``options.base`` on ``data_dir`` into ``out_dir``; returns the best epoch's summary.
    ``progress``: bars at a terminal; ``command``: the command line of this run (argv, the program
    first), for the command that continues it after Ctrl-C."""
    options.validate()  # flags that exclude each other (each value was checked when the options were made)
    world = World.from_env()
    say = (log or _stderr) if world.main else (lambda _: None)
    bars = None if progress and world.main else False  # None: tqdm's own test, a bar at a terminal only
    out = Path(out_dir)
    resuming = check_out_dir(out, options)
    device = resolve_device(options.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    dtype = resolve_precision(options.precision, device)
    state = _load_state(state_path(out)) if resuming else None
    base = load_base(options)  # before the data is read: a base that cannot be loaded fails at once
    pretrained, why = recipe_for_base(options.base, base.model.config)
    options = options.for_base(pretrained, base.model.config.hidden_size).resolved()  # target_length, timem, warmup may stay None
    recipe = {"recipe": str(options.recipe), "because": why, "line": describe(options, options.values(), why), "values": asdict(options.values())}
    if options.resume and not resuming:
        recipe["note"] = f"{out}: no epoch of the interrupted run was saved; starting afresh"
    world.start(device)
    try:
        with warnings.catch_warnings():
            if not world.main:  # one copy of each warning, not one per process
                warnings.simplefilter("ignore")
            return _run(data_dir, out, options, world, device, dtype, state, base, recipe, say, bars)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_summary(out, options.epochs, command)) from None
    finally:
        world.stop()


def interrupted_summary(out: Path, epochs: int, command: list[str] | None = None) -> str:
    """What Ctrl-C leaves, and the command that goes on from there (``command`` without --force, which
    would start again, and with --resume after a saved epoch). metrics.jsonl lists the epochs whose state
    was saved (it is written after the state)."""
    try:
        done = sum(1 for line in (out / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        done = 0
    if not done:
        again = f"; to start again: {shlex.join(continue_command(command, resume=False))}" if command else ""
        return f"interrupted before the first of {epochs} epoch(s) finished; nothing to resume from{again}"
    if not command:
        return f"interrupted after {done} of {epochs} epoch(s); the same command with --resume continues from there"
    return f"interrupted after {done} of {epochs} epoch(s); to continue: {shlex.join(continue_command(command))}"


def continue_command(command: list[str], resume: bool = True) -> list[str]:
    """``command`` (argv) without --force and --resume, then --resume when there is a saved epoch."""
    kept = [arg for arg in command if arg not in ("--force", "--resume")]
    return [*kept, "--resume"] if resume else kept


def _run(data_dir, out: Path, options: FinetuneOptions, world: World, device, dtype, state, base, recipe, say, bars) -> dict[str, Any]:
    frames_cache = probe.FrameCache() if options.freeze_backbone else None  # a cached probe reads no clip twice
    train, fbanks, frames, val, val_fbanks = load_data(data_dir, options, keep_fbanks=options.mixup == 0, progress=bars, known=frames_cache)
    say(recipe["line"])  # the first line, once the data is known to be usable (bad data: one error line alone)
    if recipe.get("note"):
        say(recipe.pop("note"))
    if train.skipped:
        say(f"skipped {len(train.skipped)} unreadable file(s)")
    if state is None:
        model, pre = initial_model(base, options, train, frames, out, bars)
    else:
        model, pre = _resumed_model(state, train, data_dir, base)
    del base
    T = model.config.max_length
    if options.timem is None:
        options = replace(options, timem=T // 5)
    run_settings = resume_settings(options, world)
    if state is not None:
        _check_same_settings(state["settings"], run_settings)
    values = options.values()
    loss = loss_name(values, train.multi_label)
    scored = model  # what maps a training item to logits: the model, or the head alone of a cached probe
    if options.freeze_backbone:
        if world.main:
            say(f"linear probe: the backbone's embedding of each clip is computed once and cached in {probe.cache_dir()}; "
                "augmentation (--mixup, --freqm, --timem) does not apply")  # fmt: skip
        key = probe.model_key(options, model.config, pre, dtype)
        model.to(device)
        train_set, val_set = (
            probe.EmbeddingSet(model, part, feats, pre, key, device, dtype, 2 * options.batch_size, bars)
            for part, feats in ((train, fbanks), (val, val_fbanks))
        )
        scored = probe.Head(model)
    else:
        augment = D.Augment.of(values, T)
        train_set = D.ClipDataset(train, T, pre.mean, pre.std, augment, fbanks, options.seed, model.config.num_mel_bins)
        val_set = D.ClipDataset(val, T, pre.mean, pre.std, fbanks=val_fbanks, num_mel_bins=model.config.num_mel_bins)
    sampler = D.EpochSampler(
        torch.utils.data.DistributedSampler(train_set, world.size, world.rank, shuffle=True, seed=options.seed)
    )
    pin = device.type == "cuda"  # page-locked batches: the non_blocking copies to the GPU are then asynchronous
    if options.freeze_backbone:  # rows of a tensor in memory: worker processes would cost more than they save
        options = replace(options, workers=0)
    loader = torch.utils.data.DataLoader(train_set, options.batch_size, sampler=sampler, num_workers=options.workers, pin_memory=pin)
    val_loader = torch.utils.data.DataLoader(  # each process scores every world.size-th clip; validation batch 2x (authors)
        torch.utils.data.Subset(val_set, range(world.rank, len(val_set), world.size)),
        2 * options.batch_size,
        num_workers=options.workers,
        pin_memory=pin,
    )
    # the model keeps the CPUs: DataLoader workers (one thread each) wait for most of a step, which
    # they fill in a few ms a clip; torchrun processes on a CPU share them (docs/performance.md)
    threads.for_model(workers=0, processes=world.size)
    if options.freeze_backbone and device.type == "cpu" and not threads.explicit():
        torch.set_num_threads(1)  # a head on cached vectors: tiny matrices, where threads only wait on each other (0.07 s an epoch of 2,000, 3 s with 2)

    if options.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(HEAD))
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(scored) if world.size > 1 else scored
    optimizer = make_optimizer(model, values)
    steps = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps, values))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    run = {"epoch": 0, "best": -float("inf"), "best_epoch": 0, "best_report": None, "stale": 0, "stopped": False, "history": []}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"]) if state.get("scaler") else None
        _set_rng(state["rng"])
        run = state["run"]
        say(f"resuming after epoch {run['epoch']} of {options.epochs}")
    elif world.main:
        out.mkdir(parents=True, exist_ok=True)
        # --force: nothing of an earlier run may survive, its model least of all (a kill in the first
        # epoch would leave it beside this run's files, looking like this run's result)
        for stale in (OLD_STATE_FILE, METRICS_FILE, *MODEL_FILES, *PICTURES):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
        write_json(out / RECIPE_FILE, recipe)
    if world.main:
        (out / STATE_DIR).mkdir(exist_ok=True)
        remove_stale_temporaries(out / STATE_DIR)  # a killed run's half-written state files
        remove_stale_temporaries(out)
    if world.main:  # until the last write of the run: its model is only the best epoch so far
        write_atomic(out / hub.INCOMPLETE_FILE, f"ast finetune: epoch {run['epoch']} of {options.epochs} done; --resume finishes it\n")

    say(
        f"{len(train.labels)} classes, {len(train.clips)} training / {len(val.clips)} validation clips, {T} frames, "
        f"mean {pre.mean:.4f} std {pre.std:.4f}, {world.size} process(es) on {device.type}"
    )
    if options.freeze_backbone:
        say(f"embeddings: {train_set.cached + val_set.cached} of {len(train_set) + len(val_set)} clips from the cache")
    while run["epoch"] < options.epochs and not run["stopped"]:
        epoch = run["epoch"]
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        loss_sum, seen = _train_epoch(net, loader, optimizer, scheduler, scaler, device, dtype, loss, world, f"epoch {epoch + 1}/{options.epochs}")
        loss_sum, seen = world.sum(loss_sum, seen)
        seconds = time.perf_counter() - started
        logits, targets = _predict_all(scored, val_loader, device, dtype, world, len(val_set))
        report = score(logits, targets, train.labels, train.multi_label)
        name, value = main_metric(report)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": _loss(logits, targets, loss).item(),
            **{f"val_{k}": report[k] for k in ("accuracy", "macro_f1", "mAP", "mAUC", "d_prime") if k in report},
            "lr": scheduler.base_lrs[0] * lr_factor((epoch + 1) * steps - 1, steps, values),  # this epoch's last step's
            "clips_per_s": round(seen / seconds, 2),
            "seconds": round(seconds, 2),
        }
        run["epoch"] = epoch + 1
        if value > run["best"]:
            run.update(best=value, best_epoch=epoch + 1, best_report=report, stale=0)
            if options.freeze_backbone:  # a probe's epoch takes milliseconds: its model is written once, at the end
                run["best_head"] = probe.head_state(model)
            elif world.main:
                checkpoints.save(model, pre, out)
        else:
            run["stale"] += 1
        run["stopped"] = bool(options.patience and run["stale"] >= options.patience)
        run["history"].append(record)
        say(
            f"epoch {epoch + 1}/{options.epochs}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
            f"val {name} {value:.4f}{' (best)' if run['best_epoch'] == epoch + 1 else ''}, {record['clips_per_s']} clips/s"
        )
        if world.main:  # the state first: once metrics.jsonl shows an epoch, --resume continues after it
            _save_state(out / STATE_FILE, model, optimizer, scheduler, scaler, run, run_settings, pre, head_only=options.freeze_backbone)
            _write_history(out / METRICS_FILE, run["history"])
            if run["epoch"] < options.epochs and not run["stopped"]:
                write_atomic(out / hub.INCOMPLETE_FILE, f"ast finetune: epoch {run['epoch']} of {options.epochs} done; --resume finishes it\n")
        world.barrier()
    if run["stopped"]:
        say(f"stopped early: no better val {main_metric(run['best_report'])[0]} for {options.patience} epoch(s)")
    if world.main:
        _finish(out, model, pre, run, options, say)
    report = run["best_report"]
    say(f"best epoch {run['best_epoch']}: val {main_metric(report)[0]} {run['best']:.4f}; model in {out}\n{format_report(report)}")
    return {"out_dir": str(out), "best_epoch": run["best_epoch"], "epochs": run["epoch"], **report}


def _finish(out: Path, model: AST, pre: PreprocessorConfig, run: dict[str, Any], options: FinetuneOptions, say) -> None:
    """The run's last writes: a probe's best head, the pictures, the state removed (unless --keep-state),
    and last the .incomplete marker removed: the folder is complete."""
    if options.freeze_backbone:
        model.load_state_dict(run["best_head"], strict=False)
        checkpoints.save(model, pre, out)
    if plots.available():
        plots.training_curves(run["history"], "val_" + main_metric(run["best_report"])[0], out / plots.TRAINING_PNG)
        if "confusion_matrix" in run["best_report"]:
            plots.confusion(run["best_report"], out / plots.CONFUSION_PNG, title=f"confusion matrix, epoch {run['best_epoch']}")
        else:
            plots.ap_bars(run["best_report"], out / plots.AP_PNG)
    if not options.keep_state:
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
        (out / OLD_STATE_FILE).unlink(missing_ok=True)
    else:
        say(f"training state kept in {out / STATE_DIR} (--keep-state): not part of the model; delete it before sharing")
    (out / hub.INCOMPLETE_FILE).unlink(missing_ok=True)


def make_optimizer(model: AST, values: RecipeValues) -> torch.optim.Optimizer:
    """The recipe's optimizer over the parameters that train: the authors' Adam (weight decay on every
    parameter, as theirs), or AdamW with decay on the weight matrices only (not on biases, LayerNorms,
    the cls/distillation tokens or the position table: the usual rule for transformers)."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if values.optimizer != ADAMW:
        return torch.optim.Adam([p for _, p in params], values.lr, betas=BETAS, weight_decay=values.weight_decay)
    decayed = lambda name, p: p.ndim >= 2 and name not in ("cls_token", "dist_token", "pos_embed")  # noqa: E731
    groups = [
        {"params": [p for name, p in params if decayed(name, p)], "weight_decay": values.weight_decay},
        {"params": [p for name, p in params if not decayed(name, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], values.lr, betas=ADAMW_BETAS)


def _resumed_model(state: dict[str, Any], train: D.LabelledSet, data_dir: str, base: checkpoints.Checkpoint) -> tuple[AST, PreprocessorConfig]:
    """The interrupted run's model: its saved weights, or for a probe (which saves its head only) the base
    at the run's input length with that head."""
    config = ASTConfig.from_dict(state["config"])
    if state.get("head_only"):
        model = checkpoints.build_model(config, {**base.model.state_dict(), **state["model"]}, "the interrupted run", saved_grid=base.model.config.grid)
    else:
        model = AST(config)
        model.load_state_dict(state["model"])
    if model.config.labels != train.labels:
        raise UsageError(f"{data_dir}: the classes differ from the interrupted run's ({', '.join(model.config.labels)})")
    return model, PreprocessorConfig.from_dict(state["preprocessor"])


def _check_same_settings(before: dict[str, Any], now: dict[str, Any]) -> None:
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise UsageError(
            f"--resume with other settings than the interrupted run: {', '.join(changed)}",
            hint="it ran with " + ", ".join(f"{k}={before.get(k)!r}" for k in changed),
        )


def _train_epoch(net, loader, optimizer, scheduler, scaler, device, dtype, loss_kind: str, world: World, desc: str) -> tuple[float, int]:
    net.train()
    loss_sum, seen = 0.0, 0
    bar = progress_bar(loader, desc=desc, unit="batch", enabled=None if world.main else False)
    started = time.perf_counter()
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = net(x)
        loss = _loss(logits.float(), y, loss_kind)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.item() * len(x)
        seen += len(x)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", clips_s=f"{seen * world.size / (time.perf_counter() - started):.1f}")
    return loss_sum, seen


def _loss(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """BCE on logits (the targets one-hot for single-label data, as the authors'), or cross-entropy on
    the targets: the class for one-hot ones (the authors' argmax), the mixture after mixup (their
    ``argmax(labels.long())`` truncates a mixture to zeros, so class 0; no run of theirs mixes with CE)."""
    if loss == "BCE":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


def _predict_all(model, loader, device, dtype, world: World, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation logits of every clip in order: each process scored clips rank, rank + size, ..."""
    logits, targets = predict(model_forward(model, device, dtype), loader)
    if world.size == 1:
        return logits, targets
    parts = world.gather((logits, targets))
    order = torch.cat([torch.arange(r, total, world.size) for r in range(world.size)]).argsort()
    return torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order]


# -- state -------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
    }


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    *internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _save_state(path: Path, model, optimizer, scheduler, scaler, run, run_settings, pre: PreprocessorConfig, head_only: bool = False) -> None:
    """Plain containers of tensors only (``torch.load(weights_only=True)`` reads it), written atomically.
    ``head_only`` (a probe): the classifier's weights only; the rest is the base's."""
    state = {
        "config": model.config.to_dict(),
        "preprocessor": pre.to_dict(),
        "model": probe.head_state(model) if head_only else model.state_dict(),
        "head_only": head_only,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": _rng_state(),
        "run": run,
        "settings": run_settings,
    }
    with AtomicPath(path) as target:
        torch.save(state, target.tmp)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (a damaged or foreign file fails in many ways inside the unpickler)
        raise UsageError(f"{path}: cannot read the training state ({type(exc).__name__}: {exc})",
                         hint="start again with --force") from None


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_open(path, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in history)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

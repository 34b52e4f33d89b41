"""``ast finetune``: the training loop of the authors' fine-tuning recipes (``src/traintest.py``), and
of the from-scratch recipe for bases that have not learned AudioSet.

The base is loaded first (a bad ``--base`` fails before the data is read), and decides what ``--recipe
default`` means (``recipes.choose``): the authors' recipe (Adam, betas 0.95/0.999, weight decay 5e-7,
MultiStepLR(range(start, 1000, step), gamma) stepped once per epoch) for an AudioSet-trained base,
``scratch`` (AdamW, warm-up then cosine, no masking) for any other (``recipes.RECIPES``, ``lr_factor``).
Autocast, validation every epoch with the best epoch kept. Not the authors': weight averaging over
epochs (their AudioSet runs' ``wa``) and the balanced sampler of their full AudioSet run. After every
epoch the training state goes to ``OUT_DIR/.train_state/`` (``runfolder``) so ``--resume`` continues
exactly where a killed run left off. ``--freeze-backbone`` trains the head on cached embeddings
(``probe``). Under ``torchrun`` the same code runs DistributedDataParallel (``trainer.World``): one
process per device, a DistributedSampler, metrics reduced across processes, and only rank 0 writing files.

This module drives a run: what it starts from (``preparation``), its datasets, loaders and run folder,
then the ``Trainer`` through its epochs; messages go to the ``log`` callback, or to the
``ast_cli.training`` logger at INFO.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from . import chatter, checkpoints, plots, probe, threads
from . import data as D
from . import runfolder as folder
from .config import PreprocessorConfig
from .devices import resolve_device, resolve_precision
from .errors import Interrupted
from .evaluation import score, scored
from .files import FULL
from .finetune_options import FinetuneOptions
from .metrics import format_report, main_metric, standard_error
from .model import AST
from .preparation import NEW, Clips, initial_model, load_base, load_data, recipe_for_base, resumed_model
from .recipe_text import describe
from .recipes import RecipeValues, loss_name
from .targets import SAVED_FILES, model_files, refuse_overlap
from .trainer import HEAD, RunState, Trainer, World

_log = logging.getLogger(__name__)
ItemSet = Any  # D.ClipDataset (fbanks), or probe.EmbeddingSet (a probe's cached embeddings)


@dataclass
class Context:
    """What every step of one run reads: its options (the recipe resolved), where it writes, this
    process's place, the device and precision, and where its messages and bars go."""

    options: FinetuneOptions
    values: RecipeValues  # the recipe with the flags over it: what the run trains with
    out: Path
    world: World
    device: torch.device
    dtype: torch.dtype
    say: Callable[[str], None]
    bars: bool | None  # None: tqdm's own test, a bar at a terminal only
    on_epoch: Callable[[AST, PreprocessorConfig, dict[str, Any]], None] | None = None  # finetune's


@dataclass
class Batches:
    """The run's data as the Trainer reads it."""

    sampler: D.EpochSampler
    train: DataLoader
    val: DataLoader
    val_size: int  # validation clips over every process


# -- the run -----------------------------------------------------------------------------------
def finetune(
    data_dir: str,
    out_dir: str,
    options: FinetuneOptions,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    command: list[str] | None = None,
    on_epoch: Callable[[AST, PreprocessorConfig, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``options.base`` on ``data_dir`` into ``out_dir``; returns the kept epoch's summary.
    ``log``: where the run's messages go (None: the ``ast_cli.training`` logger, at INFO); ``progress``:
    bars at a terminal; ``command``: the command line of this run (argv, the program first), for the
    command that continues it after Ctrl-C; ``on_epoch``: called by the main process after each epoch
    with the model (in eval mode, as validation left it; the next epoch sets training mode), its feature
    normalisation and the epoch's metrics.jsonl record, e.g. to score every epoch on other clips."""
    options.validate()  # flags that exclude each other (each value was checked when the options were made)
    world = World.from_env()
    out = Path(out_dir)
    resuming = folder.check_out_dir(out, resume=options.resume, force=options.force)
    refuse_overlap([out / name for name in SAVED_FILES], model_files(options.base))  # never over the base
    device = resolve_device(options.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    dtype = resolve_precision(options.precision, device)
    saved = folder.state_path(out) if resuming else None
    state = folder.load_state(saved) if saved else None
    base = load_base(options)  # before the data is read: a base that cannot be loaded fails at once
    pretrained, why = recipe_for_base(options.base, base.model.config)
    # the recipe's values in the flags left to it; target_length, timem and warmup may stay None (from the data)
    options = options.for_base(pretrained, base.model.config.hidden_size).resolved()
    values = options.values()
    line = describe(
        options.recipe, values, why=why, multi_label=bool(options.labels_csv), probe=options.freeze_backbone
    )
    recipe = {"recipe": str(options.recipe), "because": why, "line": line, "values": asdict(values)}
    if options.resume and not resuming:
        recipe["note"] = f"{out}: no epoch of the interrupted run was saved; starting afresh"
    say = (log or _log.info) if world.main else _silent
    bars = None if progress and world.main else False
    ctx = Context(options, values, out, world, device, dtype, say, bars, on_epoch if world.main else None)
    world.start(device)
    try:
        with warnings.catch_warnings():
            if not world.main:  # one copy of each warning, not one per process
                warnings.simplefilter("ignore")
            return _run(ctx, data_dir, state, base, recipe)
    except KeyboardInterrupt:
        raise Interrupted(folder.interrupted_summary(out, values.epochs, command)) from None
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise folder.stopped_by_the_disk(exc, out, values.epochs, command) from exc
    finally:
        world.stop()


def _silent(_: str) -> None:
    """The messages of a process other than rank 0: rank 0 says them."""


def _run(
    ctx: Context, data_dir: str, state: folder.TrainState | None, base: checkpoints.Checkpoint, recipe: dict[str, Any]
) -> dict[str, Any]:
    """Data, model, run folder, then the epochs; returns the best epoch's summary."""
    clips, model, pre, settings = _prepare(ctx, data_dir, state, base, recipe)
    options, values = ctx.options, ctx.values  # timem filled in from the frames
    train_set, val_set, scored = _datasets(ctx, model, pre, values, clips)
    batches = _batches(ctx, train_set, val_set)
    if options.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(HEAD))
    model.to(ctx.device)
    loss = loss_name(values, clips.train.multi_label)
    trainer = Trainer(
        model,
        values,
        loss=loss,
        steps_per_epoch=len(batches.train),
        device=ctx.device,
        dtype=ctx.dtype,
        world=ctx.world,
        scored=scored,
    )
    _open_folder(ctx, trainer, state, recipe)
    ctx.say(
        f"{len(clips.train.labels)} classes, {len(clips.train.clips)} training / {len(clips.val.clips)} validation "
        f"clips, {model.config.max_length} frames, mean {pre.mean:.4f} std {pre.std:.4f}, {ctx.world.size} process(es) "
        f"on {ctx.device.type}"
    )
    if options.freeze_backbone:
        cached, total = train_set.cached + val_set.cached, len(train_set) + len(val_set)
        ctx.say(f"embeddings: {cached} of {total} clips from the cache")
    _train(ctx, trainer, batches, clips.train, pre, settings)
    run = trainer.run
    if run.stopped:
        ctx.say(f"stopped early: no better val {main_metric(run.report)[0]} for {options.patience} epoch(s)")
    if ctx.world.main:
        _finish(ctx, trainer, pre)
    report = run.report
    ctx.say(f"{kept_line(run)}; model in {ctx.out}\n{format_report(report)}")
    return {"out_dir": str(ctx.out), "best_epoch": run.best_epoch, "epochs": run.epoch, **report}


def _prepare(
    ctx: Context, data_dir: str, state: folder.TrainState | None, base: checkpoints.Checkpoint, recipe: dict[str, Any]
) -> tuple[Clips, AST, PreprocessorConfig, dict[str, Any]]:
    """The clips, the model (the base with a new head, or the interrupted run's) and the settings a
    resumed run must share; the recipe's line first, once the data is known to be usable (bad data:
    one error line alone). Fills in ``ctx.options.timem`` from the model's frames."""
    options = ctx.options
    frames_cache = probe.FrameCache() if options.freeze_backbone else None  # a cached probe reads no clip twice
    clips = load_data(data_dir, options, keep_fbanks=options.mixup == 0, progress=ctx.bars, known=frames_cache)
    ctx.say(recipe["line"])
    if recipe.get("note"):
        ctx.say(recipe.pop("note"))
    if clips.train.skipped:
        ctx.say(f"skipped {len(clips.train.skipped)} unreadable file(s)")
    if state is None:
        model, pre = initial_model(base, options, clips.train, clips.frames, ctx.out, ctx.bars)
    else:
        model, pre = resumed_model(state, clips.train, data_dir, base)
    if options.timem is None:
        ctx.options = options = replace(options, timem=model.config.max_length // 5)
        ctx.values = options.values()
    settings = folder.resume_settings(options, ctx.world.size)
    if state is not None:
        folder.check_same_settings(state["settings"], settings)
    return clips, model, pre, settings


def _datasets(
    ctx: Context, model: AST, pre: PreprocessorConfig, values: RecipeValues, clips: Clips
) -> tuple[ItemSet, ItemSet, torch.nn.Module]:
    """The training and validation sets, and what maps one of their items to logits: the model on
    (augmented) fbanks, or for a probe the head alone on each clip's cached embedding."""
    options, frames, bins = ctx.options, model.config.max_length, model.config.num_mel_bins
    if not options.freeze_backbone:
        augment = D.Augment.of(values, frames)
        train = D.ClipDataset(clips.train, frames, pre.mean, pre.std, augment, clips.fbanks, options.seed, bins)
        val = D.ClipDataset(clips.val, frames, pre.mean, pre.std, fbanks=clips.val_fbanks, num_mel_bins=bins)
        return train, val, model
    if ctx.world.main:
        ctx.say(
            f"linear probe: the backbone's embedding of each clip is computed once and cached in "
            f"{probe.cache_dir()}; augmentation (--mixup, --freqm, --timem) does not apply"
        )
    # a new base (new:SIZE) is its name and the seed that drew it: no file tells one draw from another
    keyed = replace(options, base=f"{options.base} seed {options.seed}") if options.base.startswith(NEW) else options
    key = probe.model_key(keyed, model.config, pre, ctx.dtype)
    model.to(ctx.device)
    train_set, val_set = (
        probe.EmbeddingSet(model, part, feats, pre, key, ctx.device, ctx.dtype, 2 * ctx.values.batch_size, ctx.bars)
        for part, feats in ((clips.train, clips.fbanks), (clips.val, clips.val_fbanks))
    )
    return train_set, val_set, probe.Head(model)


def _batches(ctx: Context, train_set: ItemSet, val_set: ItemSet) -> Batches:
    """The loaders: each process trains on its shard of every epoch and scores every world.size-th
    validation clip, in batches twice the training ones (the authors')."""
    options, world = ctx.options, ctx.world
    sampler = D.EpochSampler(DistributedSampler(train_set, world.size, world.rank, shuffle=True, seed=options.seed))
    pin = ctx.device.type == "cuda"  # page-locked batches: the non_blocking copies to the GPU are then asynchronous
    # a probe's items are rows of a tensor in memory: worker processes would cost more than they save
    workers = 0 if options.freeze_backbone else options.workers
    # a worker ends without a word when this process is killed (no ConnectionResetError traceback)
    quiet = functools.partial(chatter.die_with_parent, os.getpid())
    loader = DataLoader(
        train_set, ctx.values.batch_size, sampler=sampler, num_workers=workers, pin_memory=pin, worker_init_fn=quiet
    )
    val_part = Subset(val_set, range(world.rank, len(val_set), world.size))
    val_loader = DataLoader(
        val_part, 2 * ctx.values.batch_size, num_workers=workers, pin_memory=pin, worker_init_fn=quiet
    )
    # the model keeps the CPUs: DataLoader workers (one thread each) wait for most of a step, which
    # they fill in a few ms a clip; torchrun processes on a CPU share them (docs/performance.md)
    threads.for_model(workers=0, processes=world.size)
    if options.freeze_backbone and ctx.device.type == "cpu" and not threads.explicit():
        torch.set_num_threads(1)  # a head on cached vectors: tiny matrices, where threads only wait on each other
    return Batches(sampler, loader, val_loader, len(val_set))


def _open_folder(ctx: Context, trainer: Trainer, state: folder.TrainState | None, recipe: dict[str, Any]) -> None:
    """The interrupted run's state restored, or the folder started afresh; then ``.incomplete``."""
    if state is not None:
        trainer.restore(state)
        ctx.say(f"resuming after epoch {trainer.run.epoch} of {ctx.values.epochs}")
    elif ctx.world.main:
        folder.start_afresh(ctx.out, recipe)
    if ctx.world.main:
        folder.open_state_dir(ctx.out)
        folder.mark_incomplete(ctx.out, trainer.run.epoch, ctx.values.epochs)


def _train(
    ctx: Context,
    trainer: Trainer,
    batches: Batches,
    train: D.LabelledSet,
    pre: PreprocessorConfig,
    settings: dict[str, Any],
) -> None:
    """The epochs left, each followed by the state, then metrics.jsonl (once it shows an epoch,
    ``--resume`` continues after it)."""
    epochs = ctx.values.epochs
    while trainer.run.epoch < epochs and not trainer.run.stopped:
        _epoch(ctx, trainer, batches, train, pre)
        if ctx.world.main:
            trainer.save(ctx.out, pre=pre, settings=settings, head_only=ctx.options.freeze_backbone)
            folder.write_history(ctx.out, trainer.run.history)
            if trainer.run.epoch < epochs and not trainer.run.stopped:
                folder.mark_incomplete(ctx.out, trainer.run.epoch, epochs)
        ctx.world.barrier()


def _epoch(ctx: Context, trainer: Trainer, batches: Batches, train: D.LabelledSet, pre: PreprocessorConfig) -> None:
    """One epoch: train, validate, record; the model written when it is the best so far (a probe's head
    is kept in memory: its model is written once, at the end)."""
    epoch, epochs = trainer.run.epoch, ctx.values.epochs
    batches.sampler.set_epoch(epoch)
    started = time.perf_counter()
    loss_sum, seen = trainer.train_epoch(batches.train, f"epoch {epoch + 1}/{epochs}")
    seconds = time.perf_counter() - started
    logits, targets, val_loss = trainer.validate(batches.val, batches.val_size)
    report = score(logits, targets, train.labels, train.multi_label)
    name, value = main_metric(report)
    highest = value > trainer.run.best  # its standard error sets how far a later epoch may trail it
    error = standard_error(*scored(logits, targets, train.multi_label), train.multi_label) if highest else 0.0
    record = {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "val_loss": val_loss,
        **{f"val_{k}": report[k] for k in ("accuracy", "macro_f1", "mAP", "mAUC", "d_prime") if k in report},
        "lr": trainer.lr,
        "clips_per_s": round(seen / seconds, 2),
        "seconds": round(seconds, 2),
    }
    if trainer.run.record(record, value, report, ctx.options.patience, error):
        if ctx.options.freeze_backbone:
            trainer.run.best_head = probe.head_state(trainer.model)
        elif ctx.world.main:
            checkpoints.save(trainer.model, pre, ctx.out)
    if ctx.on_epoch is not None:
        ctx.on_epoch(trainer.model, pre, record)
    best = " (kept)" if trainer.run.best_epoch == epoch + 1 else ""
    ctx.say(
        f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
        f"val {name} {value:.4f}{best}, {record['clips_per_s']} clips/s"
    )


def kept_line(run: RunState) -> str:
    """Which epoch was kept and why: the highest validation score, or a later epoch within one standard
    error of it (``RunState.record``)."""
    name, value = main_metric(run.report)
    if run.best_epoch == run.best_at:
        return f"best epoch {run.best_epoch}: val {name} {value:.4f}"
    return (
        f"kept epoch {run.best_epoch}: val {name} {value:.4f}, within one standard error ({run.margin:.4f}) "
        f"of the highest, {run.best:.4f} at epoch {run.best_at}"
    )


def _finish(ctx: Context, trainer: Trainer, pre: PreprocessorConfig) -> None:
    """The run's last writes: a probe's best head, the pictures, the state removed (unless --keep-state),
    and last the .incomplete marker removed: the folder is complete."""
    run, out, report = trainer.run, ctx.out, trainer.run.report
    if ctx.options.freeze_backbone and run.best_head is not None:
        trainer.model.load_state_dict(run.best_head, strict=False)
        checkpoints.save(trainer.model, pre, out)
    if plots.available():
        plots.training_curves(run.history, "val_" + main_metric(report)[0], out / plots.TRAINING_PNG, run.best_epoch)
        if "confusion_matrix" in report:
            plots.confusion(report, out / plots.CONFUSION_PNG, title=f"confusion matrix, epoch {run.best_epoch}")
        else:
            plots.ap_bars(report, out / plots.AP_PNG)
    if ctx.options.keep_state:
        ctx.say(
            f"training state kept in {out / folder.STATE_DIR} (--keep-state): not part of the model; "
            "delete it before sharing"
        )
    folder.finish(out, keep_state=ctx.options.keep_state)

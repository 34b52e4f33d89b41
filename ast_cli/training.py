"""``ast finetune``: the training loop of the authors' fine-tuning recipes (``src/traintest.py``).

Adam (betas 0.95/0.999, weight decay 5e-7), the recipe's warm-up, loss and augmentation, and its
MultiStepLR(range(start, 1000, step), gamma) decay stepped once per epoch (``options.RECIPES``,
``lr_factor``), autocast, validation every epoch with the best epoch kept. Not the authors': weight
averaging over epochs (their AudioSet runs' ``wa``) and the balanced sampler of their full AudioSet run.
After every epoch the training state (model, optimizer, scheduler, RNG, history) goes to
``OUT_DIR/.train_state.pt`` so ``--resume`` continues exactly where a killed run left off. Under
``torchrun`` the same code runs DistributedDataParallel: one process per device, a DistributedSampler,
metrics reduced across processes, and only rank 0 writing files.
"""

from __future__ import annotations

import hashlib
import json
import os
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

from . import checkpoints, hub
from . import data as D
from .config import MULTI_LABEL, SINGLE_LABEL, ASTConfig, PreprocessorConfig, write_json
from .devices import autocast, resolve_device, resolve_precision
from .errors import Interrupted, OutputExistsError, UsageError
from .evaluation import model_forward, predict, score
from .files import AtomicPath, atomic_open, remove_stale_temporaries, write_atomic
from .metrics import format_report, main_metric
from .model import AST
from .options import WARMUP_LINEAR, FinetuneOptions, RecipeValues, parse_norm_stats  # FinetuneOptions is also importable from here
from .progress import bar as progress_bar

STATE_FILE = ".train_state.pt"
MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "preprocessor_config.json")
NORM_STATS_FILE = "norm_stats.json"  # --norm-stats auto, cached
METRICS_FILE = "metrics.jsonl"
BETAS = (0.95, 0.999)  # the authors' Adam (traintest.py)
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
def check_out_dir(out: Path, options: FinetuneOptions) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if options.resume:
        if not (out / STATE_FILE).is_file():
            raise UsageError(f"{out}: nothing to resume (no {STATE_FILE})", hint="start the run without --resume")
    elif out.exists() and any(out.iterdir()) and not options.force:
        raise OutputExistsError(
            f"{out}: output folder is not empty", hint="choose a new folder, --resume an interrupted run, or --force to overwrite"
        )


def load_data(data_dir: str, options: FinetuneOptions, keep_fbanks: bool) -> tuple[D.LabelledSet, list, list, D.LabelledSet, list]:
    """Training and validation sets (unreadable clips dropped), with cached fbanks and training clip lengths."""
    found, fbanks, frames = D.scan(D.discover(data_dir, options.labels_csv), keep=keep_fbanks)
    if options.val_dir:
        val = D.folder_classes(options.val_dir)
        val, val_fbanks, _ = D.scan(D.relabel(val, found.labels, "the training set"))
        return found, fbanks, frames, val, val_fbanks
    train, val = D.stratified_split(found, options.val_split, options.seed)
    position = {clip.path: i for i, clip in enumerate(found.clips)}
    pick = lambda values, part: [values[position[c.path]] for c in part.clips]  # noqa: E731
    train.skipped = found.skipped
    return train, pick(fbanks, train), pick(frames, train), val, pick(fbanks, val)


def initial_model(options: FinetuneOptions, train: D.LabelledSet, frames: list[int], out: Path) -> tuple[AST, PreprocessorConfig]:
    """The base model at the target length with a fresh head of one output per class."""
    base = checkpoints.load(options.base, max_length=options.target_length, fstride=options.fstride, tstride=options.tstride,
                            input_tdim=options.input_tdim)  # fmt: skip
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
        mean, std = dataset_norm_stats([c.path for c in train.clips], target, model.config.num_mel_bins, out)
    else:
        mean, std = stats
    return model, PreprocessorConfig(max_length=target, num_mel_bins=model.config.num_mel_bins, mean=mean, std=std)


def dataset_norm_stats(paths: list[str], target_length: int, num_mel_bins: int, out: Path) -> tuple[float, float]:
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
    stats = compute_stats(paths, "exact", target_length=target_length, num_mel_bins=num_mel_bins)
    out.mkdir(parents=True, exist_ok=True)
    write_json(cache, {"key": key, "mean": stats.mean, "std": stats.std, "files": stats.files})
    return stats.mean, stats.std


def resume_settings(options: FinetuneOptions, world: World) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
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
    """
    warmup = warmup_steps(values, steps_per_epoch)
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


def describe(options: FinetuneOptions, values: RecipeValues, frames: int, loss: str, steps_per_epoch: int) -> str:
    """One line: what the run does, after the recipe and the flags."""
    warmup = warmup_steps(values, steps_per_epoch)
    rule = "linear" if values.warmup_rule == WARMUP_LINEAR else "the authors'"
    warm = f"{warmup} steps of {rule} warm-up" if warmup else "no warm-up"
    every = "epoch" if values.decay_step == 1 else f"{values.decay_step} epochs"
    return (
        f"recipe {options.recipe}: lr {values.lr:g}, epochs {values.epochs}, batch {values.batch_size}, frames {frames}, "
        f"freqm {values.freqm}, timem {values.timem}, mixup {values.mixup:g}, {loss}, {warm}, "
        f"x{values.decay:g} every {every} from epoch {values.decay_start + 1}{', noise and roll' if values.noise else ''}"
    )


# -- the run -----------------------------------------------------------------------------------
def finetune(data_dir: str, out_dir: str, options: FinetuneOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``options.base`` on ``data_dir`` into ``out_dir``; returns the best epoch's summary."""
    options.validate()  # flags that exclude each other (each value was checked when the options were made)
    options = options.resolved()  # the recipe's values in the fields it sets (target_length, timem, warmup may stay None)
    world = World.from_env()
    say = (log or _stderr) if world.main else (lambda _: None)
    out = Path(out_dir)
    check_out_dir(out, options)
    device = resolve_device(options.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    dtype = resolve_precision(options.precision, device)
    state = _load_state(out / STATE_FILE) if options.resume else None
    world.start(device)
    try:
        with warnings.catch_warnings():
            if not world.main:  # one copy of each warning, not one per process
                warnings.simplefilter("ignore")
            return _run(data_dir, out, options, world, device, dtype, state, say)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_summary(out, options.epochs)) from None
    finally:
        world.stop()


def interrupted_summary(out: Path, epochs: int) -> str:
    """What Ctrl-C leaves: metrics.jsonl lists the epochs whose state was saved (it is written after the state)."""
    try:
        done = sum(1 for line in (out / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        done = 0
    if not done:
        return f"interrupted before the first of {epochs} epoch(s) finished; nothing to resume from"
    return f"interrupted after {done} of {epochs} epoch(s); the same command with --resume continues from there"


def _run(data_dir, out: Path, options: FinetuneOptions, world: World, device, dtype, state, say) -> dict[str, Any]:
    train, fbanks, frames, val, val_fbanks = load_data(data_dir, options, keep_fbanks=options.mixup == 0)
    if train.skipped:
        say(f"skipped {len(train.skipped)} unreadable file(s)")
    if state is None:
        model, pre = initial_model(options, train, frames, out)
    else:
        model, pre = _resumed_model(state, train, data_dir)
    T = model.config.max_length
    if options.timem is None:
        options = replace(options, timem=T // 5)
    run_settings = resume_settings(options, world)
    if state is not None:
        _check_same_settings(state["settings"], run_settings)
    values = options.values()
    loss = loss_name(values, train.multi_label)
    augment = D.Augment.of(values, T)
    train_set = D.ClipDataset(train, T, pre.mean, pre.std, augment, fbanks, options.seed, model.config.num_mel_bins)
    val_set = D.ClipDataset(val, T, pre.mean, pre.std, fbanks=val_fbanks, num_mel_bins=model.config.num_mel_bins)
    sampler = D.EpochSampler(
        torch.utils.data.DistributedSampler(train_set, world.size, world.rank, shuffle=True, seed=options.seed)
    )
    pin = device.type == "cuda"  # page-locked batches: the non_blocking copies to the GPU are then asynchronous
    loader = torch.utils.data.DataLoader(train_set, options.batch_size, sampler=sampler, num_workers=options.workers, pin_memory=pin)
    val_loader = torch.utils.data.DataLoader(  # each process scores every world.size-th clip; validation batch 2x (authors)
        torch.utils.data.Subset(val_set, range(world.rank, len(val_set), world.size)),
        2 * options.batch_size,
        num_workers=options.workers,
        pin_memory=pin,
    )

    if options.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(HEAD))
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world.size > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, options.lr, betas=BETAS, weight_decay=options.weight_decay)
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
        for stale in (STATE_FILE, METRICS_FILE, *MODEL_FILES):
            (out / stale).unlink(missing_ok=True)
    if world.main:
        remove_stale_temporaries(out)  # a killed run's half-written state files
    if world.main:  # until the last write of the run: its model is only the best epoch so far
        write_atomic(out / hub.INCOMPLETE_FILE, f"ast finetune: epoch {run['epoch']} of {options.epochs} done; --resume finishes it\n")

    say(
        f"{len(train.labels)} classes, {len(train.clips)} training / {len(val.clips)} validation clips, {T} frames, "
        f"mean {pre.mean:.4f} std {pre.std:.4f}, {world.size} process(es) on {device.type}"
    )
    say(describe(options, values, T, loss, steps))
    while run["epoch"] < options.epochs and not run["stopped"]:
        epoch = run["epoch"]
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        loss_sum, seen = _train_epoch(net, loader, optimizer, scheduler, scaler, device, dtype, loss, world, f"epoch {epoch + 1}/{options.epochs}")
        loss_sum, seen = world.sum(loss_sum, seen)
        seconds = time.perf_counter() - started
        logits, targets = _predict_all(model, val_loader, device, dtype, world, len(val_set))
        report = score(logits, targets, train.labels, train.multi_label)
        name, value = main_metric(report)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": _loss(logits, targets, loss).item(),
            **{f"val_{k}": report[k] for k in ("accuracy", "macro_f1", "mAP", "mAUC", "d_prime") if k in report},
            "lr": optimizer.param_groups[0]["lr"],
            "clips_per_s": round(seen / seconds, 2),
            "seconds": round(seconds, 2),
        }
        run["epoch"] = epoch + 1
        if value > run["best"]:
            run.update(best=value, best_epoch=epoch + 1, best_report=report, stale=0)
            if world.main:
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
            _save_state(out / STATE_FILE, model, optimizer, scheduler, scaler, run, run_settings, pre)
            _write_history(out / METRICS_FILE, run["history"])
            if run["epoch"] < options.epochs and not run["stopped"]:
                write_atomic(out / hub.INCOMPLETE_FILE, f"ast finetune: epoch {run['epoch']} of {options.epochs} done; --resume finishes it\n")
        world.barrier()
    if run["stopped"]:
        say(f"stopped early: no better val {main_metric(run['best_report'])[0]} for {options.patience} epoch(s)")
    if world.main:
        (out / hub.INCOMPLETE_FILE).unlink(missing_ok=True)  # the run's last write: the folder is complete
    report = run["best_report"]
    say(f"best epoch {run['best_epoch']}: val {main_metric(report)[0]} {run['best']:.4f}; model in {out}\n{format_report(report)}")
    return {"out_dir": str(out), "best_epoch": run["best_epoch"], "epochs": run["epoch"], **report}


def _resumed_model(state: dict[str, Any], train: D.LabelledSet, data_dir: str) -> tuple[AST, PreprocessorConfig]:
    model = AST(ASTConfig.from_dict(state["config"]))
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


def _save_state(path: Path, model, optimizer, scheduler, scaler, run, run_settings, pre: PreprocessorConfig) -> None:
    """Plain containers of tensors only (``torch.load(weights_only=True)`` reads it), written atomically."""
    state = {
        "config": model.config.to_dict(),
        "preprocessor": pre.to_dict(),
        "model": model.state_dict(),
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

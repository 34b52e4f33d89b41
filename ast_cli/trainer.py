"""One fine-tuning run's optimization: the processes it runs in (``World``), the recipe's optimizer and
learning-rate schedule, and a ``Trainer`` that trains an epoch, scores the validation set and saves what
``--resume`` needs, over a ``RunState`` (the epochs done, the best so far, the history).

Autocast, fp16 loss scaling, and under ``torchrun`` DistributedDataParallel: metrics summed and
validation logits gathered across processes, in clip order.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import probe
from . import runfolder as folder
from .config import PreprocessorConfig
from .devices import autocast
from .evaluation import model_forward, predict
from .model import AST
from .progress import bar as progress_bar
from .recipes import ADAMW, RecipeValues, lr_factor

BETAS = (0.95, 0.999)  # the authors' Adam (traintest.py)
ADAMW_BETAS = (0.9, 0.999)  # AdamW's usual ones (the from-scratch recipe)
HEAD = ("fc_norm.", "head.")  # the classifier (the authors' mlp_head): all --freeze-backbone trains


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


@dataclass
class RunState:
    """How far a run got: the epochs done, the highest validation score (``best``, at ``best_at``, with
    its standard error ``margin``), the epoch kept (``best_epoch``, the model written, and its report), the
    epochs since the highest score rose, and one record per epoch (metrics.jsonl). Saved in
    ``.train_state/`` as a dict of these fields (``to_dict``); ``best_head`` (a probe's kept head) only
    once it exists."""

    epoch: int = 0
    best: float = -math.inf
    best_at: int = 0
    margin: float = 0.0
    best_epoch: int = 0
    best_report: dict[str, Any] | None = None
    stale: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_head: dict[str, torch.Tensor] | None = None  # a probe's model is written once, at the end

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        if self.best_head is None:
            del state["best_head"]
        return state

    @property
    def report(self) -> dict[str, Any]:
        """The best epoch's report (``score``): there is one once an epoch has run."""
        if self.best_report is None:
            raise RuntimeError("no epoch has run")
        return self.best_report

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RunState:
        """A saved state; one saved before the one-standard-error rule kept its highest epoch."""
        return cls(**{"best_at": state.get("best_epoch", 0), **state})

    def record(
        self, record: dict[str, Any], value: float, report: dict[str, Any], patience: int, error: float = 0.0
    ) -> bool:
        """Epoch ``record["epoch"]`` done with validation score ``value``, whose standard error over the
        validation clips is ``error`` (``metrics.standard_error``): whether its model is the one kept now.

        Kept: the latest epoch whose score is within one standard error of the highest so far, the
        one-standard-error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical Learning*,
        7.10): a lead smaller than the noise of the validation set is no evidence that an earlier, less
        trained epoch is better. On a small validation set (20 clips: a standard error near 0.1) the first
        maximum of a noisy curve is often an early epoch; on a large one the rule keeps the highest. An
        epoch is kept only if it is the highest or later than the one kept, so the model written is always
        the latest kept. ``patience`` epochs without a higher score stop the run (0: never).
        """
        self.epoch = record["epoch"]
        if value > self.best:
            self.best, self.best_at, self.margin, self.stale = value, self.epoch, error, 0
        else:
            self.stale += 1
        kept = value >= self.best - self.margin
        if kept:
            self.best_epoch, self.best_report = self.epoch, report
        self.stopped = bool(patience and self.stale >= patience)
        self.history.append(record)
        return kept


def make_optimizer(model: AST, values: RecipeValues) -> torch.optim.Optimizer:
    """The recipe's optimizer over the parameters that train: the authors' Adam (weight decay on every
    parameter, as theirs), or AdamW with decay on the weight matrices only (not on biases, LayerNorms,
    the cls/distillation tokens or the position table: the usual rule for transformers)."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if values.optimizer != ADAMW:
        return torch.optim.Adam([p for _, p in params], values.lr, betas=BETAS, weight_decay=values.weight_decay)

    def decayed(name: str, p: torch.Tensor) -> bool:
        return p.ndim >= 2 and name not in ("cls_token", "dist_token", "pos_embed")

    groups = [
        {"params": [p for name, p in params if decayed(name, p)], "weight_decay": values.weight_decay},
        {"params": [p for name, p in params if not decayed(name, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], values.lr, betas=ADAMW_BETAS)


def loss_of(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """BCE on logits (the targets one-hot for single-label data, as the authors'), or cross-entropy on
    the targets: the class for one-hot ones (the authors' argmax), the mixture after mixup (their
    ``argmax(labels.long())`` truncates a mixture to zeros, so class 0; no run of theirs mixes with CE)."""
    if loss == "BCE":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


class Trainer:
    """The model, the recipe's optimizer and schedule, and the run's progress (``run``).

    ``scored`` maps a training item to logits: the model, or for a cached probe the head alone
    (``probe.Head``); ``steps_per_epoch`` sets the schedule (``recipes.lr_factor``).
    """

    def __init__(
        self,
        model: AST,
        values: RecipeValues,
        *,
        loss: str,
        steps_per_epoch: int,
        device: torch.device,
        dtype: torch.dtype,
        world: World,
        scored: torch.nn.Module | None = None,
    ) -> None:
        self.model, self.scored = model, scored if scored is not None else model
        self.net = torch.nn.parallel.DistributedDataParallel(self.scored) if world.size > 1 else self.scored
        self.loss, self.device, self.dtype, self.world = loss, device, dtype, world
        self.optimizer = make_optimizer(model, values)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, steps_per_epoch, values)
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.run = RunState()
        self.last_lr: float | None = None

    @property
    def lr(self) -> float:
        """The learning rate of the last step taken: what the epoch just trained at (metrics.jsonl). The
        optimizer already holds the next step's rate once the scheduler has stepped."""
        return self.last_lr if self.last_lr is not None else self.optimizer.param_groups[0]["lr"]

    def restore(self, state: folder.TrainState) -> None:
        """Where an interrupted run's ``state`` left off: optimizer, schedule, scaler, RNGs and progress."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        scaler = state.get("scaler")
        if scaler:
            self.scaler.load_state_dict(scaler)
        folder.set_rng(state["rng"])
        self.run = RunState.from_dict(state["run"])

    def train_epoch(self, loader: DataLoader, desc: str) -> tuple[float, int]:
        """One pass over ``loader``: the summed loss and the clips seen, over every process."""
        self.net.train()
        loss_sum, seen = 0.0, 0
        bar = progress_bar(loader, desc=desc, unit="batch", enabled=None if self.world.main else False)
        started = time.perf_counter()
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with autocast(self.device, self.dtype):
                logits = self.net(x)
            loss = loss_of(logits.float(), y, self.loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.last_lr = self.optimizer.param_groups[0]["lr"]
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss_sum += loss.item() * len(x)
            seen += len(x)
            rate = seen * self.world.size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", clips_s=f"{rate:.1f}")
        total_loss, total_seen = self.world.sum(loss_sum, seen)
        return total_loss, int(total_seen)

    def validate(self, loader: DataLoader, total: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Validation logits and targets of every clip in order (each process scored clips rank,
        rank + size, ...; ``total`` of them in all), and their loss."""
        logits, targets = predict(model_forward(self.scored, self.device, self.dtype), loader)
        if self.world.size > 1:
            size = self.world.size
            parts = self.world.gather((logits, targets))
            order = torch.cat([torch.arange(r, total, size) for r in range(size)]).argsort()
            logits, targets = torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order]
        return logits, targets, loss_of(logits, targets, self.loss).item()

    def save(self, out: Path, *, pre: PreprocessorConfig, settings: dict[str, Any], head_only: bool = False) -> None:
        """What ``--resume`` needs into ``out/.train_state/``; ``head_only`` (a probe): the classifier's
        weights only, the rest is the base's."""
        folder.save_state(
            out,
            folder.TrainState(
                config=self.model.config.to_dict(),
                preprocessor=pre.to_dict(),
                model=probe.head_state(self.model) if head_only else self.model.state_dict(),
                head_only=head_only,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
                rng=folder.rng_state(),
                run=self.run.to_dict(),
                settings=settings,
            ),
        )

"""``ast finetune``: fine-tune an AST on a folder-per-class dataset; the best epoch is kept (``RunState.record``)."""

from __future__ import annotations

import typer

from .. import process
from ..finetune_options import FinetuneOptions
from ..hub import DEFAULT_MODEL
from ..options import Device, Precision
from ..params.common import Debug, Quiet, Threads
from ..params.model import DeviceOpt, FStride, InputTdim, PrecisionOpt, TStride
from ..params.training import (
    Base,
    ClassFolders,
    ClipsPerStep,
    Epochs,
    FinetuneOut,
    ForceTraining,
    FreezeBackbone,
    Freqm,
    KeepState,
    LabelsCsv,
    LearningRate,
    LoaderWorkers,
    Mixup,
    NormStats,
    Patience,
    Recipe,
    ResumeTraining,
    Seed,
    TargetLength,
    Timem,
    ValDir,
    ValSplit,
    Warmup,
    WeightDecay,
)
from ..recipes import Recipe as RecipeName


def finetune(
    data_dir: ClassFolders,
    out_dir: FinetuneOut,
    base: Base = DEFAULT_MODEL,
    recipe: Recipe = RecipeName.default,
    val: ValDir = None,
    val_split: ValSplit = 0.1,
    seed: Seed = 0,
    target_length: TargetLength = None,
    freeze_backbone: FreezeBackbone = False,
    epochs: Epochs = None,
    lr: LearningRate = None,
    batch_size: ClipsPerStep = None,
    mixup: Mixup = None,
    freqm: Freqm = None,
    timem: Timem = None,
    warmup: Warmup = None,
    weight_decay: WeightDecay = None,
    patience: Patience = 0,
    labels: LabelsCsv = None,
    norm_stats: NormStats = "auto",
    resume: ResumeTraining = False,
    force: ForceTraining = False,
    keep_state: KeepState = False,
    workers: LoaderWorkers = 2,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Fine-tune an AST on a folder-per-class dataset; the best epoch is kept in the output folder (the latest within
    one standard error of the highest validation score: on a small validation set an earlier lead is noise).

    --recipe default is the authors' advice for new data from an AudioSet-trained base, a from-scratch recipe from any
    other (the first line says which); esc50, speechcommands, audioset and audioset-balanced are the authors' runs as
    they ran them. A flag given wins over the recipe.

    Examples:

      ast finetune sounds/ -o my-model --epochs 10

      ast finetune sounds/ -o small-model --base new:small --epochs 16

      ast finetune esc50/ -o esc-model --recipe esc50 --norm-stats esc50

      ast finetune sounds/ -o probe --freeze-backbone

      torchrun --nproc-per-node 2 -m ast_cli finetune sounds/ -o my-model
    """
    from .. import training

    options = FinetuneOptions(
        base=base,
        recipe=recipe,
        val_dir=val,
        val_split=val_split,
        seed=seed,
        target_length=target_length,
        freeze_backbone=freeze_backbone,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        mixup=mixup,
        freqm=freqm,
        timem=timem,
        warmup=warmup,
        weight_decay=weight_decay,
        patience=patience,
        labels_csv=labels,
        norm_stats=norm_stats,
        fstride=fstride,
        tstride=tstride,
        input_tdim=input_tdim,
        resume=resume,
        force=force,
        keep_state=keep_state,
        device=device,
        precision=precision,
        workers=workers,
    )
    # the recipe line and the epoch lines are the run's report, unprefixed on stderr (not log records)
    log = (lambda _: None) if quiet else (lambda line: typer.echo(line, err=True))
    training.finetune(data_dir, out_dir, options, log=log, progress=not quiet, command=process.command_line())

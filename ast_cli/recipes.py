"""``ast finetune``'s recipes: the values a run takes for the flags not given, and how a learning rate
moves over a run. One table, ``RECIPES``; ``recipe_text`` renders the help of ``--recipe`` and of the flags it
fills, and the recipe table of docs/finetune.md, from it (tests/test_recipes.py checks they agree).
No torch here: the command line reads these before it pays for the heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .options import Choice

WARMUP_LINEAR, WARMUP_AUTHORS = "linear", "authors"  # RecipeValues.warmup_rule (lr_factor)
SCHEDULE_STEP, SCHEDULE_COSINE = "step", "cosine"  # RecipeValues.schedule
ADAM, ADAMW = "adam", "adamw"  # RecipeValues.optimizer
MAX_WARMUP = 1000  # steps: the authors' warm-up, and the default recipes' at most
WARMUP_EVERY = 50  # steps: the authors' warm-up sets the rate at every 50th step (traintest.py)
MILESTONES_END = 1000  # MultiStepLR(range(start, 1000, step)): the last decay is after epoch 999
AUDIOSET_LABELS = 527  # a base with this many outputs learned AudioSet: the authors' fine-tuning recipe suits it


class Recipe(Choice):
    """``ast finetune``: whose values (``RECIPES``) the flags left unset take; default: pretrained or
    scratch by the base, probe with --freeze-backbone."""

    default = "default"
    pretrained = "pretrained"
    scratch = "scratch"
    probe = "probe"
    esc50 = "esc50"
    speechcommands = "speechcommands"
    audioset = "audioset"
    audioset_balanced = "audioset-balanced"


@dataclass(frozen=True, kw_only=True)
class RecipeValues:
    """One fine-tuning recipe: a run script's values (the authors' ``egs/*/run*.sh``) and the rules of
    their training loop (``src/traintest.py``, ``src/dataloader.py``)."""

    lr: float  # the peak learning rate
    epochs: int
    batch_size: int  # per process
    freqm: int  # SpecAugment: max mel bins of the frequency mask
    timem: int | None  # max frames of the time mask; None: 20 % of the target length
    mixup: float  # probability of mixing a clip's waveform with another's
    target_length: int | None  # frames; None: the longest training clip, at most the base model's
    # dataloader.py's noise: uniform noise (up to U/10) then a roll of -10..9 frames, after normalisation
    noise: bool
    # CE, BCE (one-hot targets for single-label data), or auto: CE for single-label data, BCE for multi-label
    loss: str
    warmup: int | None  # steps; 0: none; None: 1000, or the first epoch if it is shorter
    # linear: (step + 1) / warmup; authors: step / warmup, set at every 50th step (traintest.py)
    warmup_rule: str
    decay_start: int  # MultiStepLR(range(decay_start, 1000, decay_step), gamma=decay), stepped after each epoch
    decay_step: int
    decay: float
    # step: the decay above; cosine: after the warm-up, half a cosine from the peak to 0 at the run's end
    schedule: str = SCHEDULE_STEP
    # adam: the authors' (betas 0.95/0.999, weight decay added to the gradient); adamw: decoupled decay
    optimizer: str = ADAM
    weight_decay: float = 5e-7  # the authors'
    lr_width: int | None = None  # lr is for a model this wide: a base of hidden size H trains at lr * lr_width / H


# The authors' numbers, from egs/esc50/run_esc.sh, egs/speechcommands/run_sc.sh and egs/audioset/run.sh
# (set=full, set=balanced). `pretrained` (the default from an AudioSet base) is their advice for new data
# (README: mask 48 of 128 bins and 20 % of the frames; the data's own length) on their ESC-50 run's lr,
# epochs, batch and decay, with this tool's linear warm-up.
# tests/test_training.py compares the schedules with torch's MultiStepLR and their warm-up loop.
#
# `scratch` trains a base that has not learned audio (random, small or partly trained) the way small
# vision and audio transformers are trained from scratch: AdamW (weight decay 0.05) with a short linear
# warm-up and a cosine decay to 0 over the run, no masking (a random model needs every frame of a small
# set before it can learn from masked ones), more epochs, and a learning rate inversely proportional to
# the width (muP's rule for Adam on hidden matrices): 1e-4 at 192 wide, 3e-4 at 64, 2.5e-5 at 768. From
# transformers' initialisation (std 0.02, zero positions) 1e-4 at 192 wide was within 0.05 of a plain
# loop tuned per data set on 5 of 6 sets of 5-50 classes and 20-200 clips a class, where 3e-4 trailed it
# by 0.08-0.10 on two and 1e-3 stayed near chance (issue 25; docs/finetune.md, "Defaults against a plain
# loop", benchmarks/finetune_defaults.py).
# `probe` (--freeze-backbone) trains the head alone on embeddings computed once: a linear model, which
# wants a large learning rate, many cheap epochs and no augmentation (the embeddings are not augmented).
# benchmarks/spoken_digits.py measures it; tests/test_training.py::test_scratch_recipe_learns_spoken_digits
# checks it.
_FROM_DATA: dict[str, Any] = {
    "timem": None,
    "mixup": 0.0,
    "target_length": None,
    "noise": False,
    "loss": "auto",
    "warmup": None,
}  # what the data decides in the default recipes
_COSINE: dict[str, Any] = {
    "decay_start": 0,
    "decay_step": 1,
    "decay": 1.0,
    "schedule": SCHEDULE_COSINE,
    "optimizer": ADAMW,
}
_AUTHORS_DECAY: dict[str, Any] = {"warmup_rule": WARMUP_AUTHORS, "decay_start": 5, "decay_step": 1, "decay": 0.85}
RECIPES: dict[Recipe, RecipeValues] = {
    Recipe.pretrained: RecipeValues(
        lr=1e-5,
        epochs=25,
        batch_size=48,
        freqm=48,
        **_FROM_DATA,
        warmup_rule=WARMUP_LINEAR,
        decay_start=5,
        decay_step=1,
        decay=0.85,
    ),
    Recipe.scratch: RecipeValues(
        lr=1e-4,
        lr_width=192,
        epochs=30,
        batch_size=16,
        freqm=0,
        **{**_FROM_DATA, "timem": 0},
        warmup_rule=WARMUP_LINEAR,
        **_COSINE,
        weight_decay=0.05,
    ),
    Recipe.probe: RecipeValues(
        lr=1e-3,
        epochs=50,
        batch_size=32,
        freqm=0,
        **{**_FROM_DATA, "timem": 0},
        warmup_rule=WARMUP_LINEAR,
        **_COSINE,
        weight_decay=1e-4,
    ),
    Recipe.esc50: RecipeValues(
        lr=1e-5,
        epochs=25,
        batch_size=48,
        freqm=24,
        timem=96,
        mixup=0.0,
        target_length=512,
        noise=False,
        loss="CE",
        warmup=0,
        **_AUTHORS_DECAY,
    ),
    Recipe.speechcommands: RecipeValues(
        lr=2.5e-4,
        epochs=30,
        batch_size=128,
        freqm=48,
        timem=48,
        mixup=0.6,
        target_length=128,
        noise=True,
        loss="BCE",
        warmup=0,
        **_AUTHORS_DECAY,
    ),
    Recipe.audioset: RecipeValues(
        lr=1e-5,
        epochs=5,
        batch_size=12,
        freqm=48,
        timem=192,
        mixup=0.5,
        target_length=1024,
        noise=False,
        loss="BCE",
        warmup=1000,
        warmup_rule=WARMUP_AUTHORS,
        decay_start=2,
        decay_step=1,
        decay=0.5,
    ),
    Recipe.audioset_balanced: RecipeValues(
        lr=5e-5,
        epochs=25,
        batch_size=12,
        freqm=48,
        timem=192,
        mixup=0.5,
        target_length=1024,
        noise=False,
        loss="BCE",
        warmup=1000,
        warmup_rule=WARMUP_AUTHORS,
        decay_start=10,
        decay_step=5,
        decay=0.5,
    ),
}
# the statistics each of the authors' runs normalised with (config.NORM_STATS: --norm-stats NAME)
AUTHORS_STATS = {
    Recipe.esc50: "esc50",
    Recipe.speechcommands: "speechcommands",
    Recipe.audioset: "audioset",
    Recipe.audioset_balanced: "audioset",
}
RECIPE_FLAGS = ("lr", "epochs", "batch_size", "freqm", "timem", "mixup", "target_length", "warmup", "weight_decay")
DEFAULTS = (Recipe.pretrained, Recipe.scratch, Recipe.probe)  # what --recipe default may become (for_base)


# -- choosing -------------------------------------------------------------------------------------
def learned_audioset(spec: str, num_labels: int, hidden_size: int) -> tuple[bool, str]:
    """Whether the base ``spec`` learned AudioSet (the authors' fine-tuning recipe suits it), and why it
    is taken to: its 527 outputs, one of the authors' Hub ids, or the authors' .pth."""
    if num_labels == AUDIOSET_LABELS:
        return True, f"{AUDIOSET_LABELS} AudioSet labels"
    if spec.startswith("MIT/ast-finetuned"):
        return True, "one of the authors' models"
    if spec.endswith(".pth"):
        return True, "the authors' checkpoint"
    return False, f"not AudioSet-trained: {num_labels} labels, {hidden_size} wide"


def choose(recipe: Recipe, *, pretrained: bool, freeze_backbone: bool) -> Recipe:
    """What ``default`` stands for: ``probe`` with --freeze-backbone, else ``pretrained`` for a base that
    learned AudioSet and ``scratch`` for any other; a named recipe stays."""
    if recipe != Recipe.default:
        return recipe
    if freeze_backbone:
        return Recipe.probe
    return Recipe.pretrained if pretrained else Recipe.scratch


def lr_for_width(values: RecipeValues, hidden_size: int) -> float:
    """The recipe's learning rate for a base ``hidden_size`` wide (``lr_width``: lr * lr_width / H)."""
    if not values.lr_width:
        return values.lr
    return float(f"{values.lr * values.lr_width / hidden_size:.3g}")


def with_flags(recipe: Recipe, **given: Any) -> RecipeValues:
    """``recipe``'s values with the flags of ``RECIPE_FLAGS`` given over them (None: the recipe's)."""
    if recipe == Recipe.default:
        raise ValueError("the default recipe depends on the base model: call for_base() first")
    unknown = set(given) - set(RECIPE_FLAGS)
    if unknown:
        raise ValueError(f"not recipe flags: {', '.join(sorted(unknown))}")
    return dataclasses.replace(RECIPES[recipe], **{k: v for k, v in given.items() if v is not None})


# -- the schedule ---------------------------------------------------------------------------------
def warmup_steps(values: RecipeValues, steps_per_epoch: int) -> int:
    """The recipe's warm-up steps; None: 1000, or one epoch if it is shorter."""
    return values.warmup if values.warmup is not None else min(MAX_WARMUP, steps_per_epoch)


def loss_name(values: RecipeValues, multi_label: bool) -> str:
    """CE or BCE: the recipe's, or for ``auto`` CE on single-label data and BCE on multi-label."""
    return values.loss if values.loss != "auto" else ("BCE" if multi_label else "CE")


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
    return warm * values.decay ** (_milestones(values, epoch) - _milestones(values, since))


def _milestones(values: RecipeValues, up_to: int) -> int:
    """How many of the MultiStepLR milestones are at most ``up_to`` (epochs finished)."""
    return len(range(values.decay_start, min(up_to, MILESTONES_END - 1) + 1, values.decay_step))

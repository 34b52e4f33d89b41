"""The recipes in words, rendered from ``recipes.RECIPES``: the first line of a run (``describe``), the
help of ``--recipe`` and of the flags a recipe fills, and docs/finetune.md's recipe table
(tests/test_recipes.py checks the docs agree). No torch here: the command line renders these.
"""

from __future__ import annotations

from .recipes import (
    ADAMW,
    AUDIOSET_LABELS,
    AUTHORS_STATS,
    DEFAULTS,
    MAX_WARMUP,
    RECIPES,
    SCHEDULE_COSINE,
    WARMUP_AUTHORS,
    WARMUP_LINEAR,
    Recipe,
    RecipeValues,
    loss_name,
)


# -- words ----------------------------------------------------------------------------------------
def describe(
    recipe: Recipe, values: RecipeValues, *, why: str = "", multi_label: bool = False, probe: bool = False
) -> str:
    """One line, the run's first: the recipe it chose (and ``why``), and what it trains with after the
    flags. What the data decides (the frames, the warm-up of one epoch) is said as a rule."""
    frames = values.target_length or "the longest clip's"
    timem = values.timem if values.timem is not None else "20% of the frames"
    if values.warmup is None:
        warm = "warm-up: one epoch, at most 1000 steps"
    elif values.warmup:
        rule = "linear" if values.warmup_rule == WARMUP_LINEAR else "the authors"
        warm = f"{values.warmup} steps of {rule} warm-up"
    else:
        warm = "no warm-up"
    if values.schedule == SCHEDULE_COSINE:
        decay = "cosine to 0"
    else:
        every = "epoch" if values.decay_step == 1 else f"{values.decay_step} epochs"
        decay = f"x{values.decay:g} every {every} from epoch {values.decay_start + 1}"
    optimizer = f"{_optimizer_name(values)} (weight decay {values.weight_decay:g})"
    head = ", head only on cached embeddings (no augmentation)" if probe else ""
    return (
        f"recipe {recipe}{f' ({why})' if why else ''}: lr {values.lr:g}, epochs {values.epochs}, "
        f"batch {values.batch_size}, frames {frames}, freqm {values.freqm}, timem {timem}, mixup {values.mixup:g}, "
        f"{loss_name(values, multi_label)}, {optimizer}, {warm}, {decay}"
        f"{', noise and roll' if values.noise else ''}{head}"
    )


def _optimizer_name(values: RecipeValues) -> str:
    return "AdamW" if values.optimizer == ADAMW else "Adam"


# -- help and docs, rendered from RECIPES ---------------------------------------------------------
PURPOSE = {  # what each recipe --recipe default may become is for (the --recipe help)
    Recipe.pretrained: "the authors' advice for new data on their ESC-50 settings",
    Recipe.scratch: "training a random or small model",
    Recipe.probe: "the head on cached embeddings",
}


def number(value: float) -> str:
    """A recipe's number as its run script writes it: 0.85, 0.05, 1e-3, 2.5e-4, 5e-7."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _lr(v: RecipeValues) -> str:
    return f"{number(v.lr)} x {v.lr_width} / width" if v.lr_width else number(v.lr)


def _timem(v: RecipeValues) -> str:
    return "20% of the frames" if v.timem is None else str(v.timem)


def _warmup(v: RecipeValues) -> str:
    if v.warmup is None:
        return f"one epoch, at most {MAX_WARMUP} steps"
    if not v.warmup:
        return "none"
    return f"theirs, {v.warmup} steps" if v.warmup_rule == WARMUP_AUTHORS else f"{v.warmup} steps"


def _decay(v: RecipeValues) -> str:
    if v.schedule == SCHEDULE_COSINE:
        return "cosine to 0"
    every = "per epoch" if v.decay_step == 1 else f"every {v.decay_step} epochs"
    return f"x{number(v.decay)} {every} from epoch {v.decay_start + 1}"


# what a recipe gives each flag it fills (the help of the flags, docs/finetune.md's flag table)
FLAG_WORDS = {
    "lr": _lr,
    "epochs": lambda v: str(v.epochs),
    "batch_size": lambda v: str(v.batch_size),
    "freqm": lambda v: str(v.freqm),
    "timem": _timem,
    "mixup": lambda v: number(v.mixup),
    "target_length": lambda v: str(v.target_length or "the longest clip, at most the base's"),
    "warmup": _warmup,
    "weight_decay": lambda v: f"{number(v.weight_decay)} ({_optimizer_name(v)})",
}
# the rows of docs/finetune.md's recipe table
TABLE_ROWS = {
    "optimizer, `--weight-decay`": lambda v: f"{_optimizer_name(v)}, {number(v.weight_decay)}",
    "`--lr`": _lr,
    "`--epochs`": FLAG_WORDS["epochs"],
    "`--batch-size`": FLAG_WORDS["batch_size"],
    "`--target-length`": FLAG_WORDS["target_length"],
    "`--freqm` / `--timem`": lambda v: f"{v.freqm} / {_timem(v)}",
    "`--mixup`": FLAG_WORDS["mixup"],
    "loss": lambda v: "CE (BCE with `--labels`)" if v.loss == "auto" else v.loss,
    "`--warmup`": lambda v: _warmup(v) + (", linear" if v.warmup != 0 and v.warmup_rule == WARMUP_LINEAR else ""),
    "decay": _decay,
    "noise and roll": lambda v: "yes" if v.noise else "no",
}


def defaults_words(field: str) -> str:
    """What the recipes ``default`` may become give ``field``: ``pretrained 25, scratch 30, probe 50``,
    or ``0 for pretrained, scratch and probe`` when they agree."""
    words = {recipe: FLAG_WORDS[field](RECIPES[recipe]) for recipe in DEFAULTS}
    if len(set(words.values())) == 1:
        names = [str(recipe) for recipe in DEFAULTS]
        return f"{words[DEFAULTS[0]]} for {', '.join(names[:-1])} and {names[-1]}"
    return ", ".join(f"{recipe} {word}" for recipe, word in words.items())


def _summary(values: RecipeValues) -> str:
    masks = f"freqm {values.freqm}, timem {_timem(values)}" if values.freqm or values.timem != 0 else "no masking"
    parts = [
        f"{_optimizer_name(values)}, weight decay {number(values.weight_decay)}",
        f"lr {_lr(values)}",
        f"{values.epochs} epochs",
        f"batch {values.batch_size}",
        masks,
        *([f"mixup {number(values.mixup)}"] if values.mixup else []),
        f"warm-up {_warmup(values)}",
        _decay(values),
    ]
    return ", ".join(parts)


def recipe_help() -> str:
    """The help of ``--recipe``."""
    defaults = "; ".join(f"{recipe}: {PURPOSE[recipe]} ({_summary(RECIPES[recipe])})" for recipe in DEFAULTS)
    theirs = ", ".join(str(recipe) for recipe in RECIPES if recipe not in DEFAULTS)
    return (
        "Where the flags not given take their values; the first line of the run names the recipe it chose. "
        f"default: pretrained for an AudioSet-trained base ({AUDIOSET_LABELS} labels, the authors' Hub ids or .pth), "
        f"scratch for any other, probe with --freeze-backbone. {defaults}; the authors' runs, as they ran them: "
        f"{theirs} (docs/finetune.md, Recipes)."
    )


def markdown_table() -> str:
    """docs/finetune.md's recipe table: one column a recipe, one row a value."""
    rows = [
        "| | " + " | ".join(f"`{recipe}`" for recipe in RECIPES) + " |",
        "|---" * (len(RECIPES) + 1) + "|",
    ]
    for name, words in TABLE_ROWS.items():
        rows.append(f"| {name} | " + " | ".join(words(values) for values in RECIPES.values()) + " |")
    stats = (f"`--norm-stats {AUTHORS_STATS[recipe]}`" if recipe in AUTHORS_STATS else "" for recipe in RECIPES)
    rows.append("| their statistics | " + " | ".join(stats) + " |")
    return "\n".join(rows)

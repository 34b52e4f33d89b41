"""``ast finetune``'s options: the recipe (``recipes``) with the flags given over it, checked when the
object is made; and the words ``--norm-stats`` takes. No torch here: the CLI builds these before it
pays for the heavy imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import parse_stats
from .errors import InvalidValue, UsageError
from .hub import DEFAULT_MODEL
from .options import Precision, as_choice, check_device
from .recipes import RECIPE_FLAGS, RECIPES, Recipe, RecipeValues, choose, lr_for_width, with_flags


def parse_norm_stats(
    value: str | tuple[float, float], words: tuple[str, ...] = ("auto", "base")
) -> tuple[float, float] | str:
    """``--norm-stats``: one of ``words`` (finetune's auto and base) or what ``config.parse_stats``
    reads (a preset of the authors' recipes, MEAN,STD)."""
    if isinstance(value, str) and value in words:
        return value
    return parse_stats(value, also=words)


@dataclass(kw_only=True)
class FinetuneOptions:
    """The flags of ``ast finetune``. A field of ``RECIPE_FLAGS`` left None takes ``recipe``'s value
    (``values()``, ``resolved()``): an explicit flag wins over the recipe. ``default`` stands for
    ``pretrained`` or ``scratch`` until the base is known (``for_base``)."""

    base: str = DEFAULT_MODEL
    recipe: Recipe = Recipe.default
    val_dir: str | None = None
    val_split: float = 0.1
    seed: int = 0
    target_length: int | None = None  # None: the recipe's (default: the longest training clip, at most the base's)
    freeze_backbone: bool = False
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None  # per process
    mixup: float | None = None
    freqm: int | None = None
    timem: int | None = None  # the recipe's (default: 20 % of target_length, the authors' advice)
    warmup: int | None = None  # steps; the recipe's (default: 1000 or the first epoch if shorter)
    weight_decay: float | None = (
        None  # the recipe's (pretrained: the authors' 5e-7 with Adam; scratch: 0.05 with AdamW)
    )
    patience: int = 0  # epochs without improvement before stopping; 0: never stop early
    labels_csv: str | None = None
    norm_stats: str = "auto"
    fstride: int | None = None  # an authors' .pth as --base: its architecture, where its weights leave it open
    tstride: int | None = None
    input_tdim: int | None = None
    resume: bool = False
    force: bool = False
    keep_state: bool = False  # keep OUT_DIR/.train_state/ (what --resume needs) after the run finishes
    device: str = "auto"
    precision: Precision = Precision.auto
    workers: int = 2

    def __post_init__(self) -> None:
        self.recipe = as_choice(Recipe, self.recipe, "recipe")
        for name in ("epochs", "batch_size", "lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidValue(name, f"must be positive, got {value}")
        for name in ("freqm", "timem", "warmup", "patience", "weight_decay", "workers"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidValue(name, f"must be 0 or more, got {value}")
        if self.mixup is not None and not 0 <= self.mixup <= 1:
            raise InvalidValue("mixup", f"is a probability between 0 and 1, got {self.mixup}")
        if self.target_length is not None and self.target_length < 16:
            raise InvalidValue("target_length", f"must be at least 16 frames (one patch), got {self.target_length}")
        self.device = check_device(self.device)
        self.precision = as_choice(Precision, self.precision, "precision")
        # dynamic quantization has no backward pass: an int8 run would train in fp32 without saying so
        if self.precision == Precision.int8:
            raise InvalidValue(
                "precision",
                "int8 is for inference only: ast finetune trains in fp32, bf16 or fp16",
                hint="train with --precision auto, then run the model with ast tag --precision int8",
            )
        parse_norm_stats(self.norm_stats)

    def values(self) -> RecipeValues:
        """The recipe's values with the flags given over them (``default``: resolve it with ``for_base`` first)."""
        return with_flags(self.recipe, **{name: getattr(self, name) for name in RECIPE_FLAGS})

    def for_base(self, pretrained: bool, hidden_size: int) -> FinetuneOptions:
        """These options for a base that learned AudioSet (``pretrained``) or not: ``default`` becomes
        ``pretrained`` or ``scratch`` (``probe`` with --freeze-backbone), and a recipe whose learning rate
        scales with the width gets the base's (unless --lr was given)."""
        recipe = choose(self.recipe, pretrained=pretrained, freeze_backbone=self.freeze_backbone)
        lr = self.lr
        if lr is None and RECIPES[recipe].lr_width:
            lr = lr_for_width(RECIPES[recipe], hidden_size)
        return dataclasses.replace(self, recipe=recipe, lr=lr)

    def resolved(self) -> FinetuneOptions:
        """These options with the recipe's values in the fields left to it (target_length, timem and
        warmup may stay None: from the data, as the recipe says)."""
        values = self.values()
        return dataclasses.replace(self, **{name: getattr(values, name) for name in RECIPE_FLAGS})

    def validate(self) -> None:
        """Flags that exclude each other, checked when a run starts (each value is checked when the
        object is made)."""
        if self.val_dir and self.labels_csv:
            raise UsageError("--val with --labels is not supported: list every clip in the CSV and use --val-split")
        if self.resume and self.force:
            raise UsageError("--resume and --force contradict each other: give one")
        if self.labels_csv and self.recipe != Recipe.default and self.values().loss == "CE":
            raise UsageError(
                f"--recipe {self.recipe} trains with cross-entropy, for single-label data: not with --labels",
                hint="use --recipe default, pretrained, scratch, audioset or audioset-balanced (BCE) "
                "for multi-label data",
            )

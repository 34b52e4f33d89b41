"""The recipes are written once (``recipes.RECIPES``): the help of --recipe and of the flags it fills,
and docs/finetune.md's tables, say what the table holds."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from ast_cli.finetune_options import FinetuneOptions
from ast_cli.params import training as params
from ast_cli.recipe_text import defaults_words, describe, markdown_table, number, recipe_help
from ast_cli.recipes import DEFAULTS, RECIPE_FLAGS, RECIPES, Recipe, RecipeValues, choose, lr_for_width, with_flags

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "finetune.md").read_text(encoding="utf-8")


def _help(alias: object) -> str:
    """The help text of a ``params`` alias (``Annotated[type, typer.Option(...)]``)."""
    return typing.get_args(alias)[1].help


def test_the_docs_recipe_table_is_the_table():
    assert markdown_table() in DOCS, "docs/finetune.md's recipe table: paste recipe_text.markdown_table()"


def test_the_docs_flag_table_gives_the_recipes_values():
    table = DOCS.split("| flag | default | what |", 1)[1].split("\n\n", 1)[0]
    for field in RECIPE_FLAGS:
        flag = "--" + field.replace("_", "-")
        rows = [line for line in table.splitlines() if line.startswith(f"| `{flag}` |")]
        assert len(rows) == 1, flag
        assert f"| {defaults_words(field)}" in rows[0], (flag, rows[0])


def test_the_docs_and_the_help_name_every_recipe():
    usage = re.search(r"\[--recipe ([a-z0-9|-]+)\]", DOCS)
    assert usage and usage.group(1).split("|") == Recipe.values()
    from ast_cli.commands.finetune import finetune

    authors = [str(recipe) for recipe in RECIPES if recipe not in DEFAULTS]
    for name in authors:
        assert name in finetune.__doc__ and name in recipe_help()


def test_the_help_of_recipe_flags_is_rendered_from_the_table():
    assert _help(params.Recipe) == recipe_help()
    for alias, field in (
        (params.Epochs, "epochs"),
        (params.LearningRate, "lr"),
        (params.ClipsPerStep, "batch_size"),
        (params.Mixup, "mixup"),
        (params.Freqm, "freqm"),
        (params.Timem, "timem"),
        (params.Warmup, "warmup"),
        (params.WeightDecay, "weight_decay"),
        (params.TargetLength, "target_length"),
    ):
        assert defaults_words(field) in _help(alias), field
    assert "pretrained 25, scratch 30, probe 50" in _help(params.Epochs)
    assert "scratch 1e-4 x 192 / width" in _help(params.LearningRate) and "lr 2.5e-4" not in recipe_help()
    for recipe in DEFAULTS:
        values = RECIPES[recipe]
        assert f"{recipe}: " in recipe_help() and f"{values.epochs} epochs, batch {values.batch_size}" in recipe_help()


def test_numbers_read_as_the_run_scripts_write_them():
    assert [number(x) for x in (1e-5, 2.5e-4, 5e-7, 1e-3, 0.05, 0.85, 0.6, 0, 1)] == [
        "1e-5",
        "2.5e-4",
        "5e-7",
        "1e-3",
        "0.05",
        "0.85",
        "0.6",
        "0",
        "1",
    ]


def test_choosing_a_recipe():
    assert choose(Recipe.default, pretrained=True, freeze_backbone=False) == Recipe.pretrained
    assert choose(Recipe.default, pretrained=False, freeze_backbone=False) == Recipe.scratch
    assert choose(Recipe.default, pretrained=True, freeze_backbone=True) == Recipe.probe
    assert choose(Recipe.esc50, pretrained=False, freeze_backbone=True) == Recipe.esc50
    assert lr_for_width(RECIPES[Recipe.scratch], 64) == 3e-4
    assert lr_for_width(RECIPES[Recipe.scratch], 768) == 2.5e-5 and lr_for_width(RECIPES[Recipe.esc50], 768) == 1e-5
    assert with_flags(Recipe.esc50, lr=None, epochs=3) == RecipeValues(**{**vars(RECIPES[Recipe.esc50]), "epochs": 3})
    with pytest.raises(ValueError):
        with_flags(Recipe.default)


def test_recipe_is_a_string_enum():
    assert Recipe("audioset-balanced") is Recipe.audioset_balanced and Recipe.esc50 == "esc50"
    assert str(Recipe.audioset_balanced) == "audioset-balanced" and f"{Recipe.probe}" == "probe"
    assert FinetuneOptions(recipe="esc50").recipe is Recipe.esc50


def test_describe_says_what_the_run_trains_with():
    line = describe(Recipe.speechcommands, RECIPES[Recipe.speechcommands], why="asked")
    assert line == (
        "recipe speechcommands (asked): lr 0.00025, epochs 30, batch 128, frames 128, freqm 48, timem 48, mixup 0.6, "
        "BCE, Adam (weight decay 5e-07), no warm-up, x0.85 every epoch from epoch 6, noise and roll"
    )

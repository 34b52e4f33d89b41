"""``ast models``: the models in the Hugging Face cache: list them, download one, remove some."""

from __future__ import annotations

import sys

import typer

from .. import process
from ..options import ReportFormat
from ..params.common import Debug, Quiet, Report
from ..params.model import AllModels, ModelId, ModelIds


def models(
    ctx: typer.Context,
    all_models: AllModels = False,
    fmt: Report = ReportFormat.table,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Models in the Hugging Face cache (HF_HOME): list them (the default), download one for offline use, remove one.

    Lists the AST models (their config.json says model_type audio-spectrogram-transformer); --all lists every cached
    model repository.

    Examples: ast models      ast models download MIT/ast-finetuned-audioset-10-10-0.4593\
      ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    if ctx.invoked_subcommand is None:
        list_cached(all_models=all_models, fmt=fmt, quiet=quiet)


def models_list(
    all_models: AllModels = False, fmt: Report = ReportFormat.table, quiet: Quiet = False, debug: Debug = False
) -> None:
    """List the cached AST models (--all: every model): id, size on disk, snapshot folder (usable with -m).

    Example: ast models list --format json
    """
    list_cached(all_models=all_models, fmt=fmt, quiet=quiet)


def list_cached(*, all_models: bool, fmt: ReportFormat, quiet: bool) -> None:
    """The cached models as a table or JSON on stdout; an empty table says where it looked."""
    from ..hub import cache_dir, cached_models
    from ..output import render_models

    found = cached_models(include_all=all_models)
    render_models(found, fmt, sys.stdout)
    if not found and fmt == ReportFormat.table and not quiet:
        process.status(f"no {'' if all_models else 'AST '}models in the Hugging Face cache ({cache_dir()})")


def models_download(model_id: ModelId, quiet: Quiet = False, debug: Debug = False) -> None:
    """Fetch a Hub model into the cache for offline use: config.json, the weights, preprocessor_config.json (nothing
    else; a cached model costs no network call). Prints id, size and snapshot folder.

    Example: ast models download MIT/ast-finetuned-audioset-10-10-0.4593
    """
    from rich.filesize import decimal

    from ..hub import download

    model = download(model_id)
    typer.echo(f"{model.repo_id}\t{decimal(model.size_bytes)}\t{model.path}")


def models_rm(model_ids: ModelIds, quiet: Quiet = False, debug: Debug = False) -> None:
    """Delete cached models (every revision) from the Hugging Face cache, without asking; says what was removed.

    Example: ast models rm MIT/ast-finetuned-audioset-12-12-0.447
    """
    from rich.filesize import decimal

    from ..hub import remove

    for model_id in model_ids:
        model = remove(model_id)
        typer.echo(f"removed {model.repo_id} ({decimal(model.size_bytes)}, {model.path.parent.parent})")

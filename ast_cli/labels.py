"""A model's label names without torch: ``config.json`` of a folder or a Hub id, or a labels CSV.

``ast labels`` runs on this module alone, so it starts as fast as ``--help``; only an authors'
``.pth`` needs torch, to read its head size from the weights.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from . import hub
from .config import ASTConfig
from .errors import ModelError


def read_labels_csv(path: str | os.PathLike) -> list[str]:
    """Label names from the authors' ``class_labels_indices.csv`` (index,mid,display_name) or a
    plain file of one name a line."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row]
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels ({exc.strerror})") from None
    if rows and rows[0] and rows[0][0].strip().lower() == "index":
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("display_name") if "display_name" in header else len(header) - 1
        pairs = sorted((int(r[0]), r[col]) for r in rows[1:])
        return [name for _, name in pairs]
    return [row[-1] for row in rows]


def with_labels(config: ASTConfig, names: list[str], source: str) -> ASTConfig:
    """``config`` with its outputs named ``names`` (as many as the model has outputs)."""
    if len(names) != config.num_labels:
        raise ModelError(f"{source}: the labels file names {len(names)} labels, the model has {config.num_labels} outputs")
    return config.replace(id2label=dict(enumerate(names)))


def model_labels(spec: str, *, labels: str | None = None) -> list[str]:
    """A model's label names without building it: config.json of a folder or a Hub id (only that file
    is fetched when not cached); a ``.pth`` is read for its head size, then named as ``load`` names it."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        if path.suffix == ".json":
            raise ModelError(f"{spec}: give the model's folder, not its config.json")
        from .checkpoints import _authors_config  # torch: the head size is in the weights

        return _authors_config(path, spec, labels)[1].labels
    if path.is_dir():
        config_file = hub.local_files(path)[hub.CONFIG_FILE]
    elif hub.looks_like_path(spec):
        raise ModelError(f"{spec}: no such file or directory", hint="give a local model folder, a .pth file or a Hub id")
    else:
        config_file = hub.fetch(spec, hub.CONFIG_FILE)
    config = ASTConfig.from_file(config_file)
    return with_labels(config, read_labels_csv(labels), spec).labels if labels else config.labels

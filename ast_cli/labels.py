"""``ast labels``: a model's label names, without loading its weights, and the listing of them.

Reads config.json of a folder or a Hub id (only that file is fetched when not cached), so the
command starts as fast as ``--help``; only an authors' ``.pth`` needs torch, to read its head size
from the weights (``authors.authors_labels``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import hub
from .config import ASTConfig, read_labels_csv
from .errors import ModelError


def model_labels(spec: str, *, labels: str | None = None) -> list[str]:
    """A model's label names without building it: config.json of a folder or a Hub id; a ``.pth`` is
    read for its head size, then named as ``checkpoints.load`` names it. ``labels``: a labels CSV."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        if path.suffix == ".json":
            raise ModelError(f"{spec}: give the model's folder, not its config.json")
        from .authors import authors_labels  # torch: the head size is in the weights

        return authors_labels(path, spec, labels)
    if path.is_dir():
        config_file = hub.local_files(path)[hub.CONFIG_FILE]
    elif hub.looks_like_path(spec):
        raise ModelError(
            f"{spec}: no such file or directory", hint="give a local model folder, a .pth file or a Hub id"
        )
    else:
        config_file = hub.fetch(spec, hub.CONFIG_FILE)
    config = ASTConfig.from_file(config_file)
    return config.with_labels(read_labels_csv(labels), spec).labels if labels else config.labels


def label_lines(labels: list[str], pattern: str | None = None) -> list[str]:
    """``index<TAB>label`` of each label matching ``pattern``: a case-insensitive regular expression
    (text that is not a valid one, such as ``(``, is matched as plain text)."""
    if not pattern:
        return [f"{i}\t{label}" for i, label in enumerate(labels)]
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error:
        regex = re.compile(re.escape(pattern), re.IGNORECASE)
    return [f"{i}\t{label}" for i, label in enumerate(labels) if regex.search(label)]

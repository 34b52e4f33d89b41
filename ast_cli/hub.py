"""Model files from the Hugging Face Hub, through huggingface_hub's standard cache.

Only the files a model needs are fetched; a cached model costs no network call (the cache is asked
first), so HF_HUB_OFFLINE and machines without a network work once a model was fetched.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypedDict, overload

from .config import MODEL_TYPE, ASTConfig
from .errors import ModelError, OfflineError
from .jsonfiles import read_json

DEFAULT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"  # 527 AudioSet labels, 0.459 mAP
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILE: Final = "config.json"
PREPROCESSOR_FILE: Final = "preprocessor_config.json"
AUTHORS_SUFFIXES = (".pth", ".pt", ".ckpt")  # the authors' checkpoints
INCOMPLETE_FILE = ".incomplete"  # in a model folder while ast finetune writes it: only the best epoch so far


PROBE_SECONDS = 3.0  # a Hub that does not accept a connection in this time counts as unreachable
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_log = logging.getLogger(__name__)  # warning: a model folder whose fine-tune has not finished


def offline_hint(repo_id: str) -> str:
    return (
        f"give a local model folder or .pth instead (-m; --base for finetune), or fetch it once on a connected "
        f"machine with 'ast models download {repo_id}' (files go to the Hugging Face cache, HF_HOME)"
    )


@functools.lru_cache(maxsize=1)
def unreachable() -> str | None:
    """Why the Hub cannot be reached, or None when its host accepts a connection.

    huggingface_hub retries a failed request five times with back-off (about 25 s, a warning a try);
    one TCP connection with a short timeout answers the same question at once. Behind a proxy the
    host itself may be unreachable while the Hub works, so then nothing is probed (None)."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None  # offline mode answers at once by itself; behind a proxy, only a request can tell
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    answer: list[str | None] = []

    def probe() -> None:  # in a thread: a name lookup has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            answer.append(None)
        except OSError as exc:
            answer.append(f"{host}: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, name="ast-hub-probe", daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    return answer[0] if answer else f"{host}: no answer in {PROBE_SECONDS:.0f} s"


# The files of a model, keyed by their names: config.json and the weights always, the preprocessor's if it has one
ModelFiles = TypedDict("ModelFiles", {"config.json": Path, "weights": Path, "preprocessor_config.json": Path | None})


def local_files(path: Path) -> ModelFiles:
    """The files of a local Hub-layout model folder: config.json, the weights, preprocessor_config.json
    (None when absent)."""
    config = path / CONFIG_FILE
    if not config.is_file():
        raise ModelError(f"{path}: no config.json", hint="a model folder holds config.json and model.safetensors")
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is None:
        raise ModelError(f"{path}: no model.safetensors or pytorch_model.bin")
    pre = path / PREPROCESSOR_FILE
    if (path / INCOMPLETE_FILE).is_file():
        note = (path / INCOMPLETE_FILE).read_text(encoding="utf-8", errors="replace").strip()
        _log.warning("%s: a fine-tune that has not finished (%s): this model is its best epoch so far", path, note)
    return {CONFIG_FILE: config, "weights": weights, PREPROCESSOR_FILE: pre if pre.is_file() else None}


def looks_like_path(spec: str) -> bool:
    """Not of the Hub's ``name`` / ``owner/name`` form, or named like a file: meant as a local path."""
    hub_like = re.fullmatch(r"[\w][\w.-]*(/[\w][\w.-]*)?", spec) is not None
    return not hub_like or spec.endswith(AUTHORS_SUFFIXES + (".bin", ".safetensors", ".json"))


@overload
def fetch(repo_id: str, filename: str, *, required: Literal[True] = True) -> Path: ...
@overload
def fetch(repo_id: str, filename: str, *, required: bool) -> Path | None: ...
def fetch(repo_id: str, filename: str, *, required: bool = True) -> Path | None:
    """Path of ``filename`` of a Hub model, from the cache if there, else downloaded (progress on stderr).

    Returns None for an optional file the repository does not have.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        cached = try_to_load_from_cache(repo_id, filename)
    except HFValidationError:
        raise ModelError(f"{repo_id!r} is neither a local file or folder nor a valid Hub model id") from None
    if isinstance(cached, str):
        return Path(cached)
    if cached is not None:  # the cache records that the repository has no such file
        if required:
            raise ModelError(f"{repo_id}: the model has no {filename}")
        return None
    reason = unreachable()
    if reason:
        raise OfflineError(
            f"{repo_id}: {filename} is not in the local cache and the Hub cannot be reached ({reason})",
            hint=offline_hint(repo_id),
        )
    if not logging.getLogger("ast_cli").isEnabledFor(logging.DEBUG):  # retry warnings only with --debug
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError:
        raise OfflineError(
            f"{repo_id}: {filename} is not in the local cache and the Hub cannot be reached", hint=offline_hint(repo_id)
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ModelError(
            f"{repo_id}: no such model on the Hugging Face Hub (or it is private)",
            hint="check the id, log in with 'hf auth login' for private models, or pass a local path",
        ) from None
    except EntryNotFoundError:
        if required:
            raise ModelError(f"{repo_id}: the model has no {filename}") from None
        return None
    except OSError as exc:  # network errors not classified above (proxies, TLS, timeouts)
        raise OfflineError(f"{repo_id}: download of {filename} failed ({exc})", hint=offline_hint(repo_id)) from None


def fetch_model(repo_id: str) -> ModelFiles:
    """config.json, the weights (safetensors preferred) and the optional preprocessor_config.json."""
    config = fetch(repo_id, CONFIG_FILE)
    weights = fetch(repo_id, WEIGHT_FILES[0], required=False) or fetch(repo_id, WEIGHT_FILES[1], required=False)
    if weights is None:
        raise ModelError(f"{repo_id}: the model has neither {' nor '.join(WEIGHT_FILES)}")
    return {
        CONFIG_FILE: config,
        "weights": weights,
        PREPROCESSOR_FILE: fetch(repo_id, PREPROCESSOR_FILE, required=False),
    }


# -- the local cache: ast models ----------------------------------------------------------------
@dataclass
class CachedModel:
    repo_id: str
    size_bytes: int  # on disk, all cached revisions
    path: Path  # the snapshot of refs/main (else the newest): a folder 'ast tag -m' also takes
    is_ast: bool  # its config.json says model_type audio-spectrogram-transformer

    def to_json(self) -> dict:
        return {"id": self.repo_id, "size_bytes": self.size_bytes, "path": str(self.path), "ast": self.is_ast}


def cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)  # read at call time: HF_HOME / HF_HUB_CACHE as huggingface_hub resolved them


def cached_models(include_all: bool = False) -> list[CachedModel]:
    """Model repositories in the Hugging Face cache, by id: AST models only (by their cached
    config.json), or every model repository with ``include_all``."""
    return [model for model, _ in _scan(include_all)]


def download(repo_id: str) -> CachedModel:
    """Fetch what ``ast tag -m repo_id`` needs (config, weights, preprocessor config) into the cache."""
    try:
        files = fetch_model(repo_id)
    except OfflineError as exc:
        raise OfflineError(
            exc.message,
            hint="connect this machine to the network (or set HTTPS_PROXY), "
            "or copy the Hugging Face cache (HF_HOME) of one that has the model",
        ) from None
    found = [model for model, _ in _scan(True) if model.repo_id == repo_id]
    if found:
        return found[0]
    snapshot = files[CONFIG_FILE].parent  # a cache elsewhere than HF_HUB_CACHE: size of what was fetched
    fetched = (files[CONFIG_FILE], files["weights"], files[PREPROCESSOR_FILE])
    size = sum(os.path.getsize(p) for p in fetched if p is not None)
    return CachedModel(repo_id, size, snapshot, True)


def remove(repo_id: str) -> CachedModel:
    """Delete every cached revision of a model repository; returns what was removed."""
    for model, (info, repo) in _scan(True):
        if model.repo_id == repo_id:
            strategy = info.delete_revisions(*(rev.commit_hash for rev in repo.revisions))
            if set(strategy.repos) == {repo.repo_path}:
                strategy.execute()  # huggingface_hub's own deletion (it also frees shared blob stores)
            else:  # revisions are found by hash over the whole cache: a copied repository shares them
                shutil.rmtree(repo.repo_path)
            return model
    ids = [model.repo_id for model, _ in _scan(True)]
    close = [i for i in ids if i.lower() == repo_id.lower()]
    hint = f"did you mean {close[0]!r}?" if close else "'ast models --all' lists the cached models"
    raise ModelError(f"{repo_id}: not in the Hugging Face cache ({cache_dir()})", hint=hint)


def _scan(include_all: bool):
    """(CachedModel, (cache info, repo info)) of each model repository, sorted by id."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return []
    except (CorruptedCacheException, OSError, ValueError) as exc:
        raise ModelError(f"{cache_dir()}: cannot read the Hugging Face cache ({exc})") from None
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        revision = repo.refs.get("main") or max(repo.revisions, key=lambda r: r.last_modified, default=None)
        if repo.repo_type != "model" or revision is None:
            continue
        is_ast = _is_ast_config(revision.snapshot_path / CONFIG_FILE)
        if include_all or is_ast:
            found.append((CachedModel(repo.repo_id, repo.size_on_disk, revision.snapshot_path, is_ast), (info, repo)))
    return found


def _is_ast_config(path: Path) -> bool:
    try:
        return read_json(path, ASTConfig.MOST_BYTES).get("model_type") == MODEL_TYPE
    except (ModelError, AttributeError):
        return False

"""Model files from the Hugging Face Hub, through huggingface_hub's standard cache.

Only the files a model needs are fetched; a cached model costs no network call (the cache is asked
first), so HF_HUB_OFFLINE and machines without a network work once a model was fetched.
"""

from __future__ import annotations

from pathlib import Path

from . import DEFAULT_MODEL  # noqa: F401  (re-exported: hub.DEFAULT_MODEL)
from .errors import ModelError, OfflineError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


def offline_hint(repo_id: str) -> str:
    return (
        f"pass a local model directory with -m, or fetch it once on a connected machine with "
        f"'ast models download {repo_id}' (files go to the Hugging Face cache, HF_HOME)"
    )


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


def fetch_model(repo_id: str) -> dict[str, Path | None]:
    """config.json, the weights (safetensors preferred) and the optional preprocessor_config.json."""
    files: dict[str, Path | None] = {CONFIG_FILE: fetch(repo_id, CONFIG_FILE)}
    weights = fetch(repo_id, WEIGHT_FILES[0], required=False) or fetch(repo_id, WEIGHT_FILES[1], required=False)
    if weights is None:
        raise ModelError(f"{repo_id}: the model has neither {' nor '.join(WEIGHT_FILES)}")
    files["weights"] = weights
    files[PREPROCESSOR_FILE] = fetch(repo_id, PREPROCESSOR_FILE, required=False)
    return files

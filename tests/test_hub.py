"""Hub models come from huggingface_hub's cache with no network call when they are cached."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from ast_cli import hub
from ast_cli.checkpoints import load
from ast_cli.errors import ModelError, OfflineError


def put_in_cache(repo_id: str, files: dict[str, Path]) -> Path:
    """Lay files out as huggingface_hub's cache does: models--owner--name/{refs/main, snapshots/<rev>/}."""
    from huggingface_hub import constants

    rev = "0123456789abcdef0123456789abcdef01234567"
    root = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    snapshot = root / "snapshots" / rev
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        shutil.copy(src, snapshot / name)
    return snapshot


def test_cached_model_loads_offline_without_network(tiny_model_dir, monkeypatch):
    repo = "someone/tiny-ast-cached"
    put_in_cache(
        repo, {n: tiny_model_dir / n for n in ("config.json", "model.safetensors", "preprocessor_config.json")}
    )

    def no_network(*args, **kwargs):
        raise AssertionError("a network call was made for a cached model")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    checkpoint = load(repo)
    reference = load(str(tiny_model_dir))
    x = torch.randn(1, 128, 128)
    assert torch.equal(checkpoint.model(x), reference.model(x))
    assert checkpoint.preprocessor.mean == -5.0


def test_a_file_missing_from_the_cache_needs_the_network(tiny_model_dir):
    repo = "someone/tiny-ast-partial"
    put_in_cache(repo, {"config.json": tiny_model_dir / "config.json"})
    with pytest.raises(OfflineError, match="model.safetensors is not in the local cache"):
        load(repo)


def test_invalid_hub_ids_are_model_errors():
    with pytest.raises(ModelError):
        hub.fetch("a/b/c/d", "config.json")
    with pytest.raises(ModelError, match="no such file or directory"):
        load("not a path or id")


def test_default_model_is_the_audioset_checkpoint():
    import ast_cli

    assert hub.DEFAULT_MODEL == ast_cli.DEFAULT_MODEL == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("args", [["labels"], ["models", "download", "MIT/ast-finetuned-audioset-10-10-0.4593"]])
def test_an_unreachable_hub_is_one_line(tmp_path, args):
    """No retry noise: the Hub (a closed loopback port) is found unreachable at once; the hint fits the command."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "ast_cli", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot be reached" in proc.stderr and "Retry" not in proc.stderr, (
        proc.stderr
    )
    downloading = args[0] == "models"
    assert ("ast models download" in proc.stderr) != downloading  # downloading itself is not the way out

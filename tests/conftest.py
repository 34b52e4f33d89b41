"""Shared fixtures: tiny checkpoints (saved by this package and by transformers) and generated audio.

No test touches the network: HF_HUB_OFFLINE is set for the whole session and HF_HOME points at an
empty temporary cache.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="ast-test-hf-"))
os.environ["AST_CACHE_DIR"] = tempfile.mkdtemp(
    prefix="ast-test-cache-"
)  # the probe's embeddings: never the user's cache
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# A suite started in the background by a non-interactive shell (`pytest ... &`, a CI runner) inherits
# SIGINT ignored, and exec passes an ignored signal on: the commands the Ctrl-C tests start would ignore
# their SIGINT (a Python program keeps an inherited SIG_IGN). The tests model Ctrl-C in a terminal, so
# the suite takes SIGINT back; a handler, unlike an ignore, is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest
import soundfile as sf
from helpers import TINY_LABELS, TINY_SIZE, random_model, tiny_config, tone


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Hub-layout checkpoint written by ast_cli.checkpoints.save (non-AudioSet mean/std)."""
    from ast_cli.checkpoints import save
    from ast_cli.config import PreprocessorConfig

    directory = tmp_path_factory.mktemp("tiny-ast")
    save(random_model(tiny_config()), PreprocessorConfig(max_length=128, mean=-5.0, std=4.0), directory)
    return directory


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory):
    """A checkpoint written by transformers' save_pretrained, with its feature extractor."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(1)
    config = ASTConfig(
        **TINY_SIZE,
        max_length=200,
        frequency_stride=12,
        time_stride=8,
        id2label=dict(enumerate(TINY_LABELS[:3])),
        label2id={n: i for i, n in enumerate(TINY_LABELS[:3])},
    )
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    directory = tmp_path_factory.mktemp("hf-ast")
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=200, mean=-3.0, std=5.0).save_pretrained(directory)
    return directory


@pytest.fixture
def wav(tmp_path):
    """Factory: wav(seconds, sr=16000, channels=1, name=None, fmt=None) -> path of a generated file."""

    def make(seconds: float, sr: int = 16000, channels: int = 1, name: str | None = None, **kwargs):
        path = tmp_path / (name or f"clip_{seconds}s_{sr}_{channels}ch.wav")
        sf.write(path, tone(seconds, sr, channels, **kwargs), sr)
        return path

    return make


def pytest_collection_modifyitems(config, items):
    """A test marked ``ffmpeg`` skips, saying why, where ffmpeg is not installed (.ci/run installs it)."""
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        return
    skip = pytest.mark.skip(reason="ffmpeg is not installed (apt-get install ffmpeg): this test needs it")
    for item in items:
        if item.get_closest_marker("ffmpeg"):
            item.add_marker(skip)

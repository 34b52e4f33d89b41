"""The cached linear probe (``ast finetune --freeze-backbone``): embeddings computed once per clip and
model, a re-run that decodes and embeds nothing, a changed clip embedded again, and --resume of a probe
(which saves its head only) to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import make_sound_dataset
from safetensors.torch import load_file

from ast_cli import audio, probe
from ast_cli.cli import main
from ast_cli.model import AST


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    make_sound_dataset(root, per_class=6, seed=3)
    return root


def _count_embeddings(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = AST.forward_features

    def counted(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(AST, "forward_features", counted)
    return calls


def test_a_rerun_reads_every_embedding_from_the_cache(tmp_path, cache, data, tiny_model_dir, monkeypatch, capsys):
    out = tmp_path / "out"
    args = [
        "finetune",
        str(data),
        "-o",
        str(out),
        "--base",
        str(tiny_model_dir),
        "--freeze-backbone",
        "--epochs",
        "5",
        "--workers",
        "0",
    ]
    calls = _count_embeddings(monkeypatch)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (
        err.splitlines()[0].startswith("recipe probe (")
        and "head only on cached embeddings (no augmentation)" in err.splitlines()[0]
    )
    assert f"cached in {cache}; augmentation (--mixup, --freqm, --timem) does not apply" in err
    assert "embeddings: 0 of 24 clips from the cache" in err and sum(calls) == 24
    assert len(list((cache / "embeddings").glob("*/*.npy"))) == 24 and len(list((cache / "frames").iterdir())) == 24
    first = load_file(out / "model.safetensors")

    def refuse(*args, **kwargs):
        raise AssertionError("decoded or embedded again")

    with monkeypatch.context() as patch:
        patch.setattr(AST, "forward_features", refuse)
        patch.setattr(audio, "load", refuse)
        assert main([*args, "--force"]) == 0  # nothing decoded, nothing embedded: the same model
    assert "embeddings: 24 of 24 clips from the cache" in capsys.readouterr().err
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)

    changed = sorted((data / "tone").iterdir())[0]
    os.utime(
        changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9)
    )  # a newer file: embedded again
    calls.clear()
    assert main([*args, "--force"]) == 0
    assert "embeddings: 23 of 24 clips from the cache" in capsys.readouterr().err and sum(calls) == 1
    record = json.loads((out / "recipe.json").read_text())
    assert record["recipe"] == "probe" and record["values"]["mixup"] == 0


def test_another_model_or_normalisation_has_its_own_embeddings(
    tmp_path, cache, data, tiny_model_dir, hf_model_dir, capsys
):
    common = ["--freeze-backbone", "--epochs", "1", "--workers", "0", "-q"]
    assert main(["finetune", str(data), "-o", str(tmp_path / "a"), "--base", str(tiny_model_dir), *common]) == 0
    assert (
        main(
            [
                "finetune",
                str(data),
                "-o",
                str(tmp_path / "b"),
                "--base",
                str(tiny_model_dir),
                "--norm-stats",
                "-3,5",
                *common,
            ]
        )
        == 0
    )
    assert main(["finetune", str(data), "-o", str(tmp_path / "c"), "--base", str(hf_model_dir), *common]) == 0
    assert len(list((cache / "embeddings").iterdir())) == 3


def test_an_interrupted_probe_resumes_to_the_same_head(tmp_path, cache, data, tiny_model_dir, monkeypatch):
    """A probe saves its head only (the backbone is the base's); --resume rebuilds the model from the base."""
    from ast_cli import runfolder
    from ast_cli.trainer import Trainer

    common = [
        "--base",
        str(tiny_model_dir),
        "--freeze-backbone",
        "--epochs",
        "4",
        "--workers",
        "0",
        "-q",
        "--seed",
        "2",
    ]
    assert main(["finetune", str(data), "-o", str(tmp_path / "full"), *common]) == 0
    original, calls = Trainer.train_epoch, []

    def stop_in_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", stop_in_third)
        assert main(["finetune", str(data), "-o", str(tmp_path / "cut"), *common]) == 130
    state = torch.load(tmp_path / "cut" / runfolder.STATE_FILE, weights_only=True)
    assert state["head_only"] and set(state["model"]) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert main(["finetune", str(data), "-o", str(tmp_path / "cut"), *common, "--resume"]) == 0
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AST_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert probe.cache_dir() == tmp_path / "xdg" / "ast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert probe.cache_dir() == probe.Path.home() / ".cache" / "ast"
    monkeypatch.setenv("AST_CACHE_DIR", str(tmp_path / "mine"))
    assert probe.cache_dir() == tmp_path / "mine"

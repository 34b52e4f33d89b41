"""`ast models` (list, download, rm) and `ast labels` over a fake Hugging Face cache: no network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import random_model, run, tiny_config
from test_checkpoints import authors_state_dict
from test_robustness import _run_on_terminal

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], rev: str = "1" * 40, kind: str = "models") -> Path:
    """huggingface_hub's layout: blobs/<sha256>, snapshots/<rev>/<name> -> ../../blobs/<sha256>, refs/main."""
    root = cache / f"{kind}--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / rev
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_model_dir):
    """An HF cache with two AST models, a BERT model and a data set."""
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    ast_files = {name: (tiny_model_dir / name).read_bytes() for name in MODEL_FILES}
    cache_repo(hub, "someone/tiny-ast", ast_files)
    cache_repo(
        hub, "MIT/ast-small", {"config.json": ast_files["config.json"], "model.safetensors": b"x" * 1000}, rev="3" * 40
    )
    cache_repo(
        hub,
        "google/bert-base",
        {"config.json": json.dumps({"model_type": "bert"}).encode(), "model.safetensors": b"y" * 10},
        rev="4" * 40,
    )
    cache_repo(hub, "someone/sounds", {"data.csv": b"a,b\n"}, rev="5" * 40, kind="datasets")
    return hub


def repo_size(cache: Path, repo_id: str) -> int:
    return sum(p.stat().st_size for p in (cache / f"models--{repo_id.replace('/', '--')}" / "blobs").iterdir())


def test_models_lists_cached_ast_models(capsys, cache):
    code, out, err = run(capsys, "models", "--format", "json")
    assert code == 0 and err == ""
    listed = json.loads(out)
    assert [m["id"] for m in listed] == ["MIT/ast-small", "someone/tiny-ast"]  # by id, case-insensitive
    assert [m["size_bytes"] for m in listed] == [
        repo_size(cache, "MIT/ast-small"),
        repo_size(cache, "someone/tiny-ast"),
    ]
    assert listed[1]["path"] == str(cache / "models--someone--tiny-ast" / "snapshots" / ("1" * 40))
    assert run(capsys, "models", "list", "-f", "json")[1] == out  # 'ast models' is 'ast models list'
    _, out, _ = run(capsys, "models", "--all", "-f", "json")
    assert [m["id"] for m in json.loads(out)] == ["google/bert-base", "MIT/ast-small", "someone/tiny-ast"]
    code, out, _ = run(capsys, "models")
    assert code == 0 and "someone/tiny-ast" in out and "MIT/ast-small" in out and "bert" not in out
    assert "\x1b[" not in out


def test_a_listed_snapshot_is_a_model_folder(capsys, cache, wav):
    _, out, _ = run(capsys, "models", "-f", "json")
    path = [m["path"] for m in json.loads(out) if m["id"] == "someone/tiny-ast"][0]
    code, out, _ = run(capsys, "tag", wav(1.0), "-m", path, "-f", "jsonl")
    assert code == 0 and json.loads(out)["labels"]


def test_an_empty_or_missing_cache_lists_nothing(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "nothing-here"))
    code, out, err = run(capsys, "models")
    assert code == 0 and out == "" and err.startswith("ast: no AST models in the Hugging Face cache")
    assert run(capsys, "models", "-f", "json")[1] == "[]\n"


def test_rm_deletes_every_revision_and_says_what(capsys, cache):
    size = repo_size(cache, "someone/tiny-ast")
    code, out, err = run(capsys, "models", "rm", "someone/tiny-ast")
    assert code == 0, err
    assert out == f"removed someone/tiny-ast ({size / 1000:.1f} kB, {cache / 'models--someone--tiny-ast'})\n"
    assert not (cache / "models--someone--tiny-ast").exists()
    assert (cache / "models--MIT--ast-small").exists()
    _, out, _ = run(capsys, "models", "-f", "json")
    assert [m["id"] for m in json.loads(out)] == ["MIT/ast-small"]
    code, out, err = run(capsys, "models", "rm", "mit/AST-small")
    assert code == 2 and out == "" and "not in the Hugging Face cache" in err and "did you mean 'MIT/ast-small'" in err
    assert (cache / "models--MIT--ast-small").exists()


def test_rm_of_a_copy_sharing_its_revision_hash_leaves_the_original(capsys, cache, tiny_model_dir):
    """huggingface_hub finds revisions by hash over the whole cache; a duplicated repository has the same."""
    files = {name: (tiny_model_dir / name).read_bytes() for name in MODEL_FILES}
    cache_repo(cache, "someone/copy-of-tiny-ast", files)  # the same revision as someone/tiny-ast
    for removed, kept in (("someone/copy-of-tiny-ast", "someone/tiny-ast"), ("someone/tiny-ast", "MIT/ast-small")):
        code, _, err = run(capsys, "models", "rm", removed)
        assert code == 0, err
        assert not (cache / f"models--{removed.replace('/', '--')}").exists()
        assert (cache / f"models--{kept.replace('/', '--')}" / "snapshots").is_dir()
    assert (cache / "datasets--someone--sounds" / "snapshots").is_dir()


def test_download_fetches_only_the_files_a_model_needs(capsys, cache, tiny_model_dir, monkeypatch):
    requested = []

    def fake_download(repo_id, filename, **kwargs):  # what hf_hub_download leaves in the cache
        requested.append(filename)
        snapshot = cache_repo(cache, repo_id, {filename: (tiny_model_dir / filename).read_bytes()}, rev="2" * 40)
        return str(snapshot / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    code, out, err = run(capsys, "models", "download", "org/new-ast")
    assert code == 0, err
    assert requested == list(MODEL_FILES)[:2] + ["preprocessor_config.json"]
    repo_id, size, path = out.rstrip("\n").split("\t")
    assert repo_id == "org/new-ast" and path == str(cache / "models--org--new-ast" / "snapshots" / ("2" * 40))
    assert size.endswith("kB")
    # cached now: a second download makes no call
    monkeypatch.setattr(
        "huggingface_hub.hf_hub_download", lambda *a, **k: pytest.fail("network call for a cached model")
    )
    assert run(capsys, "models", "download", "org/new-ast")[0] == 0


def test_download_offline_is_one_actionable_line(capsys, cache):
    code, out, err = run(capsys, "models", "download", "MIT/ast-finetuned-audioset-10-10-0.4593")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "not in the local cache" in err and "HF_HOME" in err


def test_models_table_is_plain_off_a_terminal_and_with_no_color(cache):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(HF_HUB_CACHE=str(cache), TERM="xterm-256color")
    piped = subprocess.run([sys.executable, "-m", "ast_cli", "models"], capture_output=True, cwd=ROOT, env=env)
    assert piped.returncode == 0 and b"someone/tiny-ast" in piped.stdout and b"\x1b[" not in piped.stdout
    plain = _run_on_terminal(["models"], {**env, "NO_COLOR": "1"})
    assert b"someone/tiny-ast" in plain and b"\x1b[" not in plain


# -- ast labels ------------------------------------------------------------------------------------
def test_labels_of_a_folder_one_a_line(capsys, tiny_model_dir):
    code, out, err = run(capsys, "labels", "-m", tiny_model_dir)
    assert code == 0 and err == ""
    assert out == "0\tSpeech\n1\tMusic\n2\tDog\n3\tRain\n4\tSiren\n"


@pytest.mark.parametrize(
    "pattern,lines",
    [("SI", ["1\tMusic", "4\tSiren"]), ("^(dog|rain)$", ["2\tDog", "3\tRain"]), ("(", [])],
)
def test_labels_pattern_is_a_case_insensitive_regex_or_text(capsys, tiny_model_dir, pattern, lines):
    code, out, err = run(capsys, "labels", pattern, "-m", tiny_model_dir)
    assert out.splitlines() == lines
    assert code == (0 if lines else 1)
    assert (err == "") if lines else err.startswith("ast: no label of")


def test_labels_read_config_json_only(capsys, cache, monkeypatch):
    """A cached Hub id whose weights are not even valid: config.json is all that is read."""
    import ast_cli.checkpoints

    monkeypatch.setattr(ast_cli.checkpoints, "read_state_dict", lambda *a: pytest.fail("weights were read"))
    code, out, _ = run(capsys, "labels", "dog", "-m", "MIT/ast-small")
    assert code == 0 and out == "2\tDog\n"


def test_labels_of_a_folder_import_no_torch(tiny_model_dir):
    """Like --help, `ast labels` starts at once: config.json is read without importing torch."""
    code = (
        "import sys; from ast_cli.cli import main; status = main(['labels', 'dog', '-m', sys.argv[1]]); "
        "print('torch' in sys.modules, status)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2\tDog", "False 0"]


def test_labels_of_an_authors_pth(capsys, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(authors_state_dict(random_model(tiny_config(max_length=1024))), path)
    csv = tmp_path / "class_labels_indices.csv"
    csv.write_text(
        'index,mid,display_name\n0,/m/a,"Speech"\n1,/m/b,"Music"\n2,/m/c,"Dog, bark"\n3,/m/d,Rain\n4,/m/e,Siren\n'
    )
    code, out, _ = run(capsys, "labels", "-m", path, "--labels", csv, "bark")
    assert code == 0 and out == "2\tDog, bark\n"
    code, out, err = run(capsys, "labels", "-m", path)
    assert code == 0 and out.splitlines()[0] == "0\tLABEL_0" and "no label names" in err
    bad = tmp_path / "three.csv"
    bad.write_text("a\nb\nc\n")
    code, _, err = run(capsys, "labels", "-m", path, "--labels", bad)
    assert code == 2 and "names 3 labels, the model has 5 outputs" in err

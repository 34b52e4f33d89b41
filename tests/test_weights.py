"""Hostile model files are refused cheaply (issue 24): every bound is checked before anything is
allocated, only the tensors an AST uses are read, and each refusal is one line naming the file and
the bound, exit status 2. Huge files are sparse: they cost no disk and no time to write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import authors_state_dict, random_model, run, tiny_config

from ast_cli import weights
from ast_cli.checkpoints import load
from ast_cli.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
GB4 = 1 << 32
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def model(tmp_path, tiny_model_dir):
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _refused(capsys, model, wav, *needles):
    """``ast tag`` on ``model``: exit 2 and one line holding every needle."""
    code, out, err = run(capsys, "tag", wav(1.0), "-m", model)
    assert code == 2 and out == "", err
    assert err.startswith("ast: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "unexpected" not in err and all(n in err for n in needles), err
    return err


def _rewrite_header(path: Path, change) -> int:
    """Rewrite a safetensors file's header with ``change(header, data_size)``; the size of its data."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, tensors = json.loads(data[8 : 8 + n]), data[8 + n :]
    change(header, len(tensors))
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + tensors)
    return len(tensors)


# -- JSON: nesting, size, numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_json_nested_100000_deep_is_refused_naming_the_file(capsys, model, wav, name):
    (model / name).write_bytes(DEEP)
    _refused(capsys, model, wav, str(model / name), "nested 100000 levels deep", "at most 64")


def test_a_safetensors_header_nested_100000_deep_is_refused(capsys, model, wav):
    path = model / "model.safetensors"
    path.write_bytes(len(DEEP).to_bytes(8, "little") + DEEP)
    _refused(capsys, model, wav, str(path), "not a readable safetensors file", "nested 100000 levels deep")


def test_an_authors_sidecar_nested_100000_deep_is_refused(capsys, tmp_path, wav):
    path = tmp_path / "model.pth"
    torch.save(authors_state_dict(random_model(tiny_config())), path)
    (tmp_path / "model.pth.json").write_bytes(DEEP)
    _refused(capsys, path, wav, str(tmp_path / "model.pth.json"), "nested 100000 levels deep")


def test_a_100_mb_config_json_is_refused_for_its_size_unread(capsys, model, wav, monkeypatch):
    path = model / "config.json"
    with open(path, "r+b") as f:
        f.truncate(100 << 20)  # sparse: 100 MB of nothing
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("a 100 MB config.json was parsed"))
    _refused(capsys, model, wav, str(path), "100.0 MB, larger than a config.json can be (at most 32.0 MB)")


def test_a_number_of_5000_digits_is_invalid_json(capsys, model, wav):
    path = model / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "hidden_size": 0})[:-1] + ', "x": ' + "9" * 5000 + "}")
    _refused(capsys, model, wav, str(path), "not valid JSON (Exceeds the limit (4300 digits)")


def test_nesting_is_counted_outside_strings_only():
    from ast_cli.jsonfiles import nesting

    assert nesting(b'{"a": [1, {"b": "[[[[{"}], "c\\"[": 2}') == 3
    assert nesting(b'"[[[[ unterminated') == 0 and nesting(b"[[[") == 3 and nesting(b"]][") == 0


# -- preprocessor_config.json: every field used or refused ---------------------------------------------
@pytest.mark.parametrize(
    "change,message",
    [
        ({"max_length": 10**9}, "'max_length' is 1000000000, more than any AST takes (at most 100000)"),
        ({"max_length": -5}, "'max_length' must be a positive whole number, got -5"),
        ({"num_mel_bins": 10**6}, "'num_mel_bins' is 1000000, more than any AST takes (at most 1024)"),
        ({"num_mel_bins": 64}, "'num_mel_bins' is 64, config.json's is 128"),
        ({"do_normalize": "no"}, "'do_normalize' must be true or false, got 'no'"),
        ({"feature_size": 2}, "'feature_size' must be 1 (mono), got 2"),
    ],
)
def test_preprocessor_values_out_of_bounds_are_refused(capsys, model, wav, change, message):
    path = model / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    _refused(capsys, model, wav, str(path), message)


def test_another_preprocessor_max_length_is_announced_and_config_json_wins(capsys, model, wav):
    path = model / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_length": 512}))
    code, out, err = run(capsys, "tag", wav(1.0), "-m", model, "-f", "jsonl")
    assert code == 0 and out, err
    assert f"{path}: 'max_length' is 512, config.json's 128: windows of 128 frames" in err


# -- safetensors: only the tensors an AST uses, offsets checked ----------------------------------------
def _with_unused_4gb_tensor(path: Path, name: str) -> tuple[int, int]:
    """Declare a 4 GB float32 tensor after the others, backed by a sparse tail; its byte range in the file."""

    def add(header, size):
        header[name] = {"dtype": "F32", "shape": [GB4 // 4], "data_offsets": [size, size + GB4]}

    _rewrite_header(path, add)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) + GB4)
    return os.path.getsize(path) - GB4, os.path.getsize(path)


def test_an_unused_4_gb_tensor_is_never_mapped_or_read(model, monkeypatch):
    start, end = _with_unused_4gb_tensor(model / "model.safetensors", "other_head.weight")
    mapped = []
    copy = weights._mapped_copy
    monkeypatch.setattr(weights, "_mapped_copy", lambda fd, at, n, *a: mapped.append((at, n)) or copy(fd, at, n, *a))
    for matrix_dtype in (None, torch.bfloat16):
        assert load(str(model), matrix_dtype=matrix_dtype).model.config.num_labels == 5
    assert mapped and all(at + n <= start for at, n in mapped)


def test_an_unused_4_gb_tensor_costs_no_memory(model):
    """In a fresh process: the peak resident memory of loading stays far below the unused tensor's 4 GB."""
    _with_unused_4gb_tensor(model / "model.safetensors", "other_head.weight")
    # the growth of the peak over what importing torch and the package took, which varies with the
    # environment (threads, allocator): the weights the model uses are a few MB, the unused tensor 4 GB
    script = (
        "import resource, sys; from ast_cli.checkpoints import load; peak = lambda: resource.getrusage("
        "resource.RUSAGE_SELF).ru_maxrss; before = peak(); load(sys.argv[1]); print(peak() - before)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, str(model)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 1_000_000, f"loading grew the peak by {int(proc.stdout) // 1024} MB"  # KB


def test_a_4_gb_tensor_named_like_no_weight_of_an_ast_is_refused_unread(capsys, model, wav, monkeypatch):
    _with_unused_4gb_tensor(model / "model.safetensors", "audio_spectrogram_transformer.encoder.layer.0.junk.weight")
    monkeypatch.setattr(weights, "_mapped_copy", lambda *a: pytest.fail("a tensor was read"))
    _refused(capsys, model, wav, "'audio_spectrogram_transformer.encoder.layer.0.junk.weight' is a weight no AST has")


def _first_two(header):
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])[:2]


def _overlap(header, size):
    a, b = _first_two(header)
    header[b]["data_offsets"] = [header[a]["data_offsets"][0], header[a]["data_offsets"][0] + 4 * _numel(header[b])]


def _numel(entry):
    n = 1
    for d in entry["shape"]:
        n *= d
    return n


def _outside(header, size):
    name = _first_two(header)[0]
    header[name]["data_offsets"] = [size, size + 4 * _numel(header[name])]


def _wrong_size(header, size):
    name = _first_two(header)[0]
    header[name]["data_offsets"][1] -= 4


def _unknown_dtype(header, size):
    header[_first_two(header)[0]]["dtype"] = "F128"


def _negative_shape(header, size):
    header[_first_two(header)[0]]["shape"] = [-1]


@pytest.mark.parametrize(
    "damage,message",
    [
        (_overlap, "overlap"),
        (_outside, "lies outside the file"),
        (_wrong_size, "its F32"),
        (_unknown_dtype, "unknown dtype 'F128'"),
        (_negative_shape, "a shape that is not a list of whole numbers: [-1]"),
    ],
)
def test_safetensors_offsets_are_checked_before_reading(capsys, model, wav, monkeypatch, damage, message):
    _rewrite_header(model / "model.safetensors", damage)
    monkeypatch.setattr(weights, "_mapped_copy", lambda *a: pytest.fail("a tensor was read"))
    _refused(capsys, model, wav, str(model / "model.safetensors"), "not a readable safetensors file", message)


def test_a_huge_header_length_is_refused_unread(capsys, model, wav):
    path = model / "model.safetensors"
    with open(path, "r+b") as f:
        f.write((1 << 30).to_bytes(8, "little"))
        f.truncate(2 << 30)  # sparse
    _refused(capsys, model, wav, str(path), "a header of 1024.0 MB, more than weights need (at most 16.0 MB)")


# -- PyTorch files: weights_only, sized by the architecture --------------------------------------------
def _as_bin(model: Path) -> Path:
    from safetensors.torch import load_file

    path = model / "pytorch_model.bin"
    torch.save(load_file(model / "model.safetensors"), path)
    (model / "model.safetensors").unlink()
    return path


def test_a_pytorch_file_larger_than_its_config_allows_is_refused_unread(capsys, model, wav, monkeypatch):
    path = _as_bin(model)
    with open(path, "r+b") as f:
        f.truncate(4 << 30)  # sparse
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the file was unpickled"))
    _refused(capsys, model, wav, str(path), "4096.0 MB, more than the weights of its config.json take")


def test_a_pytorch_file_is_mapped_and_only_what_an_ast_uses_is_kept(model, monkeypatch):
    path = _as_bin(model)
    sd = torch.load(path, weights_only=True)
    torch.save({**sd, "other_head.weight": torch.zeros(1000, 64)}, path)
    loads = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or original(*a, **k))
    kept = weights.read_state_dict(path, lambda key: key in sd)
    assert set(kept) == set(sd) and loads == [{"map_location": "cpu", "weights_only": True, "mmap": True}]
    assert load(str(model)).model.config.num_labels == 5


def test_a_legacy_pickle_above_its_bound_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "old.pth"
    torch.save(authors_state_dict(random_model(tiny_config())), path, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(weights, "MAX_LEGACY", 1000)
    with pytest.raises(ModelError, match="in PyTorch's legacy format, read whole") as caught:
        load(str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)

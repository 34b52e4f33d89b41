"""Checkpoints: both directions with transformers, the authors' .pth, safety, validation, position embeddings."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from helpers import authors_state_dict, random_model, tiny_config
from transformers import ASTForAudioClassification

from ast_cli.checkpoints import load, save
from ast_cli.config import ASTConfig, PreprocessorConfig
from ast_cli.errors import ModelError, OfflineError, UnsafeCheckpointError
from ast_cli.layouts import adapt_pos_embed, hf_to_native, native_to_hf


def logits(model, x):
    with torch.inference_mode():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def test_saved_by_us_loads_in_transformers_with_equal_logits(tiny_model_dir):
    ours = load(str(tiny_model_dir)).model
    hf = ASTForAudioClassification.from_pretrained(tiny_model_dir).eval()
    x = torch.randn(2, 128, 128)
    assert (logits(hf, x) - logits(ours, x)).abs().max().item() <= 1e-4
    assert hf.config.id2label == ours.config.id2label
    pre = json.loads((tiny_model_dir / "preprocessor_config.json").read_text())
    assert pre["mean"] == -5.0 and pre["std"] == 4.0 and pre["feature_extractor_type"] == "ASTFeatureExtractor"


def test_saved_by_transformers_loads_here_with_equal_logits(hf_model_dir):
    checkpoint = load(str(hf_model_dir))
    hf = ASTForAudioClassification.from_pretrained(hf_model_dir).eval()
    x = torch.randn(2, 200, 128)
    assert (logits(hf, x) - logits(checkpoint.model, x)).abs().max().item() <= 1e-4
    assert checkpoint.model.config.frequency_stride == 12 and checkpoint.model.config.time_stride == 8
    assert (checkpoint.preprocessor.mean, checkpoint.preprocessor.std) == (-3.0, 5.0)


def test_round_trip_of_config_json_keeps_unknown_keys(tmp_path):
    data = tiny_config().to_dict()
    data["custom_field"] = {"kept": True}
    config = ASTConfig.from_dict(data)
    config.save(tmp_path)
    again = json.loads((tmp_path / "config.json").read_text())
    assert again["custom_field"] == {"kept": True}
    assert again["label2id"] == {"Speech": 0, "Music": 1, "Dog": 2, "Rain": 3, "Siren": 4}


def test_authors_pth_loads_and_matches(tmp_path):
    # the authors' blocks are timm's: LayerNorm eps 1e-6
    config = tiny_config(max_length=1024, layer_norm_eps=1e-6, hidden_size=128, num_attention_heads=2)
    reference = random_model(config)
    path = tmp_path / "audioset_tiny.pth"
    torch.save(authors_state_dict(reference), path)
    labels = tmp_path / "class_labels_indices.csv"
    labels.write_text(
        'index,mid,display_name\n0,/m/a,"Speech"\n1,/m/b,"Music"\n2,/m/c,"Dog, bark"\n3,/m/d,Rain\n4,/m/e,Siren\n'
    )
    checkpoint = load(str(path), labels=str(labels))
    assert checkpoint.model.config.grid == (12, 101)
    assert checkpoint.model.config.num_attention_heads == 2  # D // 64
    assert checkpoint.model.config.labels[2] == "Dog, bark"
    x = torch.randn(1, 1024, 128)
    assert (logits(reference, x) - logits(checkpoint.model, x)).abs().max().item() <= 1e-4
    # and it converts to a Hub checkpoint transformers reads
    save(checkpoint.model, checkpoint.preprocessor, tmp_path / "hub")
    hf = ASTForAudioClassification.from_pretrained(tmp_path / "hub").eval()
    assert (logits(hf, x) - logits(reference, x)).abs().max().item() <= 1e-4


def test_authors_pth_with_527_outputs_loads_offline_with_a_warning(tmp_path):
    config = tiny_config(max_length=1024, id2label={i: str(i) for i in range(527)})
    path = tmp_path / "a.pth"
    torch.save(authors_state_dict(random_model(config)), path)
    # HF_HUB_OFFLINE=1 in the tests: the names of the released model cannot be fetched
    with pytest.warns(UserWarning, match="label names unavailable .*not in the local cache.*pass --labels"):
        checkpoint = load(str(path))
    assert checkpoint.model.config.labels[:2] == ["LABEL_0", "LABEL_1"]


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ast-test-pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    directory = tmp_path / "evil"
    directory.mkdir()
    tiny_config().save(directory)
    with open(directory / "pytorch_model.bin", "wb") as f:
        pickle.dump({"audio_spectrogram_transformer.embeddings.cls_token": Evil()}, f)
    if os.path.exists("/tmp/ast-test-pwned"):
        os.unlink("/tmp/ast-test-pwned")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load(str(directory))
    assert not os.path.exists("/tmp/ast-test-pwned")


def test_optimizer_state_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "optim_state.pth"
    torch.save({"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-5}]}, path)
    with pytest.raises(ModelError, match="no model weights|not an AST checkpoint"):
        load(str(path))


def test_config_label_count_must_match_the_head(tmp_path, tiny_model_dir):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    data = json.loads((tiny_model_dir / "config.json").read_text())
    data["id2label"] = {"0": "a", "1": "b"}
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="head has 5 outputs but config.json names 2 labels"):
        load(str(directory))
    data["hidden_size"] = "wide"
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="'hidden_size' must be a positive integer"):
        load(str(directory))


@pytest.mark.parametrize(
    "spec,message", [("./no/such/dir", "no such file or directory"), ("missing.pth", "no such file")]
)
def test_missing_local_paths(spec, message):
    with pytest.raises(ModelError, match=message):
        load(spec)


def test_uncached_hub_model_offline_says_what_to_do():
    with pytest.raises(OfflineError) as info:
        load("MIT/ast-finetuned-speech-commands-v2")
    assert "local cache" in str(info.value) and "ast models download" in str(info.value)


def authors_adapt(pos, f0, t0, f1, t1):
    """The authors' ast_models.py code for an AudioSet-pretrained model, transcribed."""
    D = pos.shape[-1]
    new = pos[:, 2:, :].detach().reshape(1, f0 * t0, D).transpose(1, 2).reshape(1, D, f0, t0)
    if t1 < t0:
        new = new[:, :, :, int(t0 / 2) - int(t1 / 2) : int(t0 / 2) - int(t1 / 2) + t1]
    else:
        new = torch.nn.functional.interpolate(new, size=(f0, t1), mode="bilinear")
    if f1 < f0:
        new = new[:, :, int(f0 / 2) - int(f1 / 2) : int(f0 / 2) - int(f1 / 2) + f1, :]
    elif f1 > f0:
        new = torch.nn.functional.interpolate(new, size=(f1, t1), mode="bilinear")
    new = new.reshape(1, D, f1 * t1).transpose(1, 2)
    return torch.cat([pos[:, :2, :].detach(), new], dim=1)


@pytest.mark.parametrize("new_grid", [(12, 50), (12, 12), (12, 101), (12, 150), (10, 85), (14, 120)])
def test_position_embeddings_adapt_as_the_authors_do(new_grid):
    pos = torch.randn(1, 2 + 12 * 101, 16)
    ours = adapt_pos_embed(pos, (12, 101), new_grid)
    assert ours.shape == (1, 2 + new_grid[0] * new_grid[1], 16)
    assert torch.allclose(ours, authors_adapt(pos, 12, 101, *new_grid), atol=1e-6)


def test_shorter_input_length_runs_the_model_with_cut_embeddings(tiny_model_dir):
    short = load(str(tiny_model_dir), max_length=64)
    assert short.model.config.max_length == 64
    assert short.model(torch.randn(1, 64, 128)).shape == (1, 5)


def test_key_mapping_round_trips():
    model = random_model(tiny_config())
    sd = model.state_dict()
    back = hf_to_native(native_to_hf(sd))
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_preprocessor_rejects_other_sample_rates():
    with pytest.raises(ModelError, match="16 kHz"):
        PreprocessorConfig(sampling_rate=44100)


def test_training_wrappers_are_unwrapped(tmp_path):
    """Training scripts save {"state_dict": ..., "epoch": ...}: the weights inside still load."""
    model = random_model(tiny_config(max_length=1024, layer_norm_eps=1e-6, hidden_size=128, num_attention_heads=2))
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": authors_state_dict(model), "epoch": 3}, path)
    with pytest.warns(UserWarning, match="no label names"):
        loaded = load(str(path)).model
    x = torch.randn(1, 1024, 128)
    assert (logits(model, x) - logits(loaded, x)).abs().max().item() <= 1e-4


# -- reading with the weight matrices cast (what load_model does for bf16/fp16) ----------------------
@pytest.mark.parametrize("fixture", ["tiny_model_dir", "hf_model_dir"])
def test_matrices_cast_while_reading_give_the_scores_of_casting_afterwards(request, fixture):
    from ast_cli.inference import Tagger
    from ast_cli.spec import ModelSpec

    directory = str(request.getfixturevalue(fixture))
    streamed = load(directory, matrix_dtype=torch.bfloat16)
    for name, p in streamed.model.named_parameters():
        matrix = name.endswith(".weight") and p.ndim >= 2
        assert p.dtype == (torch.bfloat16 if matrix else torch.float32), name
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size(), f"{name} views a larger buffer (the file?)"
    x = torch.randn(2, streamed.model.config.max_length, 128)
    a = Tagger(streamed, ModelSpec(device="cpu", precision="bf16")).logits(x)
    b = Tagger(load(directory), ModelSpec(device="cpu", precision="bf16")).logits(x)
    assert torch.equal(a, b)


def test_a_damaged_safetensors_file_is_reported_when_read_with_a_cast(tmp_path, tiny_model_dir):
    from ast_cli.weights import read_state_dict

    data = (tiny_model_dir / "model.safetensors").read_bytes()
    for i, damaged in enumerate([data[: len(data) // 2], b"\xff" * 8 + data[8:], data[:8] + b"{not json" + data[17:]]):
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(damaged)
        with pytest.raises(ModelError, match="not a readable safetensors file"):
            read_state_dict(path, lambda key: True, torch.bfloat16)

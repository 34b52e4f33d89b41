"""config.json and preprocessor_config.json: every damaged file is one clear line naming it, exit 2."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from ast_cli.cli import main

CONFIG_DAMAGE = [
    (lambda c: {}, "the head has 5 outputs but config.json names 2 labels"),  # every key missing: the defaults
    (lambda c: {**c, "hidden_size": "64"}, "'hidden_size' must be a positive integer"),
    (lambda c: {**c, "num_hidden_layers": -1}, "'num_hidden_layers' must be a positive integer"),
    (lambda c: {**c, "layer_norm_eps": "small"}, "'layer_norm_eps' must be a number"),
    (lambda c: {**c, "qkv_bias": "yes"}, "'qkv_bias' must be true or false"),
    (lambda c: {**c, "hidden_act": "tanh"}, "hidden_act 'tanh' is not supported"),
    (lambda c: {**c, "model_type": "bert"}, "not an Audio Spectrogram Transformer"),
    (lambda c: {**c, "problem_type": "ranking"}, "unknown problem_type"),
    (lambda c: {**c, "id2label": ["Speech", "Music"]}, "id2label must be an object"),
    (lambda c: {**c, "id2label": {"0": "a", "2": "b"}}, "id2label must map 0..N-1"),
    (
        lambda c: {**c, "id2label": {"0": "a", "1": "b", "2": "c"}},
        "the head has 5 outputs but config.json names 3 labels",
    ),
    (
        lambda c: {k: v for k, v in c.items() if k not in ("id2label", "label2id")} | {"num_labels": "five"},
        "'num_labels' must be a positive integer",
    ),
    (
        lambda c: {k: v for k, v in c.items() if k not in ("id2label", "label2id")},
        "the head has 5 outputs but config.json names 2 labels",
    ),
    (lambda c: {**c, "hidden_size": 66}, "not divisible by num_attention_heads"),
    # checked against the weights' header before anything is built (issue 19)
    (lambda c: {**c, "hidden_size": 60}, "config.json says hidden_size 60, the weights have 64"),
    (lambda c: {**c, "num_hidden_layers": 3}, "config.json says num_hidden_layers 3, the weights have 2"),
    (lambda c: {**c, "hidden_size": 10**9}, "'hidden_size' is 1000000000, more than any AST has (at most 8192)"),
    (lambda c: {**c, "num_hidden_layers": 10**6}, "'num_hidden_layers' is 1000000, more than any AST has"),
    (
        lambda c: {k: v for k, v in c.items() if k not in ("id2label", "label2id")} | {"num_labels": 10**9},
        "'num_labels' is 1000000000, more than any AST has",
    ),
    (lambda c: [c], "expected a JSON object"),
    # JSON's NaN and Infinity (Python reads and writes them): a NaN eps made every score NaN (issue 23)
    (lambda c: {**c, "layer_norm_eps": math.nan}, "'layer_norm_eps' must be a finite number, got nan"),
    (lambda c: {**c, "layer_norm_eps": math.inf}, "'layer_norm_eps' must be a finite number, got inf"),
    (lambda c: {**c, "classifier_layer_norm_eps": math.nan}, "'classifier_layer_norm_eps' must be a finite number"),
    (lambda c: {**c, "hidden_dropout_prob": -math.inf}, "'hidden_dropout_prob' must be a finite number, got -inf"),
    (lambda c: {**c, "initializer_range": math.nan}, "'initializer_range' must be a finite number"),
    (lambda c: {**c, "layer_norm_eps": 0}, "'layer_norm_eps' is 0, outside (0.0, 1.0]"),
    (lambda c: {**c, "layer_norm_eps": -1e-5}, "'layer_norm_eps' is -1e-05, outside (0.0, 1.0]"),
    (lambda c: {**c, "attention_probs_dropout_prob": 1.5}, "'attention_probs_dropout_prob' is 1.5, outside [0.0, 1.0]"),
    (lambda c: {**c, "max_length": math.inf}, "'max_length' must be a positive integer, got inf"),
]
PREPROCESSOR_DAMAGE = [
    ({"mean": math.nan}, "'mean' must be a finite number"),
    ({"std": "4"}, "'std' must be a finite number"),
    ({"std": 0}, "std must be positive"),
    ({"sampling_rate": 44100}, "sampling_rate 44100 is not supported"),
    ({"std": math.inf}, "'std' must be a finite number, got inf"),
    ({"mean": -math.inf}, "'mean' must be a finite number, got -inf"),
    ({"max_length": math.nan}, "'max_length' must be a positive whole number, got nan"),
    ({"num_mel_bins": math.inf}, "'num_mel_bins' must be a positive whole number, got inf"),
    ({"sampling_rate": math.nan}, "'sampling_rate' must be a positive whole number, got nan"),
]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _tag(capsys, model, wav):
    code = main(["tag", str(wav(1.0)), "-m", str(model), "-f", "jsonl"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("damage,message", CONFIG_DAMAGE)
def test_damaged_config_json_is_one_line_naming_the_file(capsys, tiny_model_dir, tmp_path, wav, damage, message):
    model = _copy(tiny_model_dir, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(damage(config)))
    code, out, err = _tag(capsys, model, wav)
    assert code == 2 and out == ""
    assert err.startswith("ast: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert str(model) in err


@pytest.mark.parametrize(
    "content,message", [(b"{not json", "not valid JSON"), (b"\xff\xfe\x00garbage", "not valid JSON (not UTF-8 text)")]
)
def test_unreadable_config_json(capsys, tiny_model_dir, tmp_path, wav, content, message):
    model = _copy(tiny_model_dir, tmp_path / "model")
    (model / "config.json").write_bytes(content)
    code, _, err = _tag(capsys, model, wav)
    assert code == 2 and message in err and str(model / "config.json") in err and err.count("\n") == 1


@pytest.mark.parametrize("change,message", PREPROCESSOR_DAMAGE)
def test_damaged_preprocessor_config(capsys, tiny_model_dir, tmp_path, wav, change, message):
    model = _copy(tiny_model_dir, tmp_path / "model")
    path = model / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    code, _, err = _tag(capsys, model, wav)
    assert code == 2 and message in err and str(path) in err and err.count("\n") == 1 and "Traceback" not in err

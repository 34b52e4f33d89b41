"""Whole-recording tagging: windows, aggregation, selection, activation, arrays vs files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tone

from ast_cli.checkpoints import load
from ast_cli.errors import AudioError, UsageError
from ast_cli.features import extract
from ast_cli.inference import Tagger, TagOptions, resolve_precision
from ast_cli.spec import ModelSpec
from ast_cli.windows import sliding_windows


@pytest.fixture(scope="module")
def tagger(tiny_model_dir):
    return Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32"))


def frames(n):
    return torch.arange(n, dtype=torch.float32)[:, None].expand(n, 4)


@pytest.mark.parametrize(
    "total,window,hop,starts",
    [
        (50, 128, 64, [0]),
        (128, 128, 64, [0]),
        (300, 128, 64, [0, 64, 128, 172]),
        (320, 128, 64, [0, 64, 128, 192]),
        (300, 100, 100, [0, 100, 200]),
        (301, 100, 100, [0, 100, 200, 201]),
    ],
)
def test_sliding_windows_cover_the_whole_stream(total, window, hop, starts):
    blocks = torch.split(frames(total), 37)
    got = list(sliding_windows(blocks, window, hop, 4))
    assert [s for s, _ in got] == starts
    for start, w in got:
        assert torch.equal(w, frames(total)[start : start + window])


def test_short_clip_is_one_window_equal_to_the_model_on_reference_features(tagger, wav):
    path = wav(0.8)
    result = tagger.run(path, TagOptions())
    assert len(result.scores) == 1
    x, _ = sf.read(path, dtype="float32")
    feats = extract(x, 128, tagger.preprocessor.mean, tagger.preprocessor.std)[None]
    expected = torch.sigmoid(tagger.model(feats))[0]
    assert torch.allclose(result.scores[0], expected, atol=1e-5)


def test_long_recording_uses_every_window_and_aggregates(tagger, wav):
    path = wav(5.0, 22050, 2)  # 498 frames, window 128, hop 64 -> 7 windows, the last end-aligned
    options = TagOptions(top=0, timeline=True)
    record = tagger.tag(path, options=options)
    starts = [w["start_s"] for w in record["windows"]]
    assert starts == [0.0, 0.64, 1.28, 1.92, 2.56, 3.2, 3.7]
    assert record["windows"][-1]["end_s"] == 4.98 or record["windows"][-1]["end_s"] == 5.0
    per_label = {}
    for w in record["windows"]:
        for item in w["labels"]:
            per_label.setdefault(item["label"], []).append(item["score"])
    for item in record["labels"]:
        assert item["score"] == pytest.approx(max(per_label[item["label"]]), abs=1e-6)
    mean = tagger.tag(path, top=0, aggregate="mean")
    for item in mean["labels"]:
        assert item["score"] == pytest.approx(np.mean(per_label[item["label"]]), abs=1e-5)
    assert record["duration_s"] == 5.0


def test_selection_top_threshold_include_exclude(tagger, wav):
    path = wav(1.0)
    everything = tagger.tag(path, top=0)["labels"]
    assert len(everything) == 5
    assert [x["score"] for x in everything] == sorted((x["score"] for x in everything), reverse=True)
    assert tagger.tag(path, top=2)["labels"] == everything[:2]
    cut = everything[2]["score"]
    assert tagger.tag(path, top=0, threshold=cut)["labels"] == everything[:3]
    only = tagger.tag(path, include=["dog", "RAIN"])["labels"]
    assert {x["label"] for x in only} == {"Dog", "Rain"}
    dropped = tagger.tag(path, top=0, exclude=["speech"])["labels"]
    assert "Speech" not in {x["label"] for x in dropped} and len(dropped) == 4
    with pytest.raises(UsageError, match="did you mean 'Siren'"):
        tagger.tag(path, include=["sirens"])


def test_activation_from_problem_type_and_override(tiny_model_dir, wav):
    path = wav(1.0)
    checkpoint = load(str(tiny_model_dir))
    checkpoint.model.config.problem_type = "single_label_classification"
    single = Tagger(checkpoint, ModelSpec(device="cpu", precision="fp32"))
    scores = [x["score"] for x in single.tag(path, top=0)["labels"]]
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    raw = single.tag(path, top=0, activation="none")["labels"]
    assert any(x["score"] < 0 or x["score"] > 1 for x in raw) or len(raw) == 5
    sig = single.tag(path, top=0, activation="sigmoid")["labels"]
    assert sum(x["score"] for x in sig) != pytest.approx(1.0, abs=1e-3)


def test_array_input_equals_file_input(tagger, tmp_path):
    x = tone(3.3, 44100, 2)
    path = tmp_path / "a.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    from_file = tagger.tag(path, top=0)["labels"]
    from_array = tagger.tag(x, sample_rate=44100, top=0)["labels"]
    assert from_file == from_array


def test_too_short_and_silence(tagger, tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="too short"):
        tagger.tag(tmp_path / "short.wav")
    sf.write(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    labels = tagger.tag(tmp_path / "silence.wav", top=0)["labels"]
    assert all(np.isfinite(x["score"]) and 0 <= x["score"] <= 1 for x in labels)


def test_window_and_hop_options(tagger, wav):
    path = wav(3.0)
    record = tagger.tag(path, window=0.5, hop=0.5, timeline=True)
    assert [w["start_s"] for w in record["windows"]][:3] == [0.0, 0.5, 1.0]
    with pytest.raises(UsageError, match="longer than the model's input"):
        tagger.tag(path, window=5.0)
    with pytest.raises(UsageError):
        TagOptions(hop=0)


def test_bf16_stays_close_to_fp32(tiny_model_dir, wav):
    path = wav(2.0)
    fp32 = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32")).tag(path, top=0)["labels"]
    bf16 = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="bf16")).tag(path, top=0)["labels"]
    a = {x["label"]: x["score"] for x in fp32}
    b = {x["label"]: x["score"] for x in bf16}
    assert max(abs(a[k] - b[k]) for k in a) < 0.05


def test_int8_stays_close_to_fp32(tiny_model_dir, wav):
    path = wav(2.0)
    fp32 = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32")).tag(path, top=0)["labels"]
    int8 = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="int8")).tag(path, top=0)["labels"]
    a = {x["label"]: x["score"] for x in fp32}
    b = {x["label"]: x["score"] for x in int8}
    assert max(abs(a[k] - b[k]) for k in a) < 0.05


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cast_model_keeps_no_view_of_the_loaded_file(tiny_model_dir, precision):
    """Views of the memory-mapped weights would keep the whole file resident next to the cast copy."""
    checkpoint = load(str(tiny_model_dir))
    loaded = [p.untyped_storage() for p in checkpoint.model.parameters()]  # held: no address is reused
    tagger = Tagger(checkpoint, ModelSpec(device="cpu", precision=precision))
    assert not {s.data_ptr() for s in loaded} & {p.untyped_storage().data_ptr() for p in tagger.model.parameters()}


def test_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(UsageError):
        resolve_precision("fp16", cpu)
    with pytest.raises(UsageError):
        resolve_precision("int8", torch.device("cuda"))


def test_windows_per_batch_defaults_by_device_and_keeps_an_explicit_size(tagger):
    import copy

    assert tagger.windows_per_batch(TagOptions()) == 1  # the CPU: one window already fills the cores
    assert tagger.windows_per_batch(TagOptions(batch_size=3)) == 3
    gpu = copy.copy(tagger)
    gpu.device = torch.device("cuda")  # only its type is read
    assert gpu.windows_per_batch(TagOptions()) == 8
    with pytest.raises(UsageError):
        TagOptions(batch_size=0)


def test_scores_do_not_depend_on_the_batch_size(tagger, wav):
    path = wav(5.0)  # 7 windows
    default = tagger.tag(path, top=0, timeline=True)
    batched = tagger.tag(path, top=0, timeline=True, batch_size=4)  # batches of 4 and 3
    for a, b in zip(default["windows"], batched["windows"], strict=True):
        x = {item["index"]: item["score"] for item in a["labels"]}
        y = {item["index"]: item["score"] for item in b["labels"]}
        assert x.keys() == y.keys() and max(abs(x[k] - y[k]) for k in x) <= 2e-6


def test_int8_quantizes_the_loaded_model_instead_of_a_copy(tiny_model_dir):
    checkpoint = load(str(tiny_model_dir))
    tagger = Tagger(checkpoint, ModelSpec(device="cpu", precision="int8"))
    assert tagger.model is checkpoint.model  # no fp32 twin kept alive through Tagger.checkpoint
    assert not any(type(m) is torch.nn.Linear for m in checkpoint.model.modules())


def test_score_rows_grow_in_one_buffer():
    from ast_cli.records import ScoreRows

    rows, expected = ScoreRows(), []
    for i in range(40):
        batch = torch.full((1 + i % 3, 5), float(i))
        rows.extend(batch) if i % 2 else [rows.append(r) for r in batch]
        expected.extend(batch)
    assert len(rows) == len(expected) == 79
    assert torch.equal(rows.rows(), torch.stack(expected)) and torch.equal(rows[3], expected[3])
    assert [r.tolist() for r in rows] == [r.tolist() for r in expected]
    assert rows.rows().untyped_storage().nbytes() <= 2 * 79 * 5 * 4  # one buffer, at most doubled


def test_attention_in_fp32_beside_bf16_linears_stays_close(tiny_model_dir, wav, monkeypatch):
    """AST_ATTENTION_PRECISION=fp32 (benchmarks/attention_precision.py): the attention op runs in fp32
    while the Linear layers stay bf16; scores within the bf16 tolerance; a wrong value is a usage error."""
    from ast_cli.devices import ATTENTION_ENV

    path = wav(2.0)
    fp32 = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32")).tag(path, top=0)["labels"]
    monkeypatch.setenv(ATTENTION_ENV, "fp32")
    mixed = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="bf16"))
    assert mixed.attention_precision == "fp32" and mixed.model.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    seen = []
    hook = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda q, *a, **k: (seen.append(q.dtype), hook(q, *a, **k))[1],
    )
    b = {x["label"]: x["score"] for x in mixed.tag(path, top=0)["labels"]}
    assert seen and set(seen) == {torch.float32}
    assert max(abs(x["score"] - b[x["label"]]) for x in fp32) < 0.05
    monkeypatch.setenv(ATTENTION_ENV, "fp8")
    with pytest.raises(UsageError):
        Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="bf16"))
    monkeypatch.delenv(ATTENTION_ENV)
    assert Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="bf16")).attention_precision == "bf16"

"""``--crop-short``: a window shorter than the model's input runs on its own patches, with the position
embeddings those patches have in the padded window; checked against transformers' model built at the
cropped length. A window as long as the input is unchanged; ``ast batch`` records the flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run

import ast_cli
from ast_cli.options import TagOptions
from ast_cli.sinks import settings_path
from ast_cli.windows import cropped_frames


def test_cropped_frames_cover_the_audio_with_whole_patches():
    assert cropped_frames(58, 200, 16, 8) == 64  # 16 + ceil(42 / 8) * 8: 7 patches, the last past frame 58
    assert cropped_frames(64, 200, 16, 8) == 64
    assert cropped_frames(3, 200, 16, 8) == 16  # one patch at least
    assert cropped_frames(100, 1024, 16, 10) == 106  # the AudioSet model's patches: 10 frames apart
    assert cropped_frames(1001, 1024, 16, 10) == 1006
    assert cropped_frames(1010, 1024, 16, 10) == 1024  # all 101 patches anyway: the full window
    assert cropped_frames(1024, 1024, 16, 10) == 1024


def transformers_scores_at(model_dir, frames: int, wave: np.ndarray) -> np.ndarray:
    """transformers' feature extractor and model built for ``frames`` frames, its position embeddings
    the first time columns of the checkpoint's (frequency-major, as its patch embedding flattens)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    full = ASTForAudioClassification.from_pretrained(model_dir).eval()
    config = ASTConfig.from_pretrained(model_dir, max_length=frames)
    short = ASTForAudioClassification(config).eval()
    f, t_full = full.audio_spectrogram_transformer.embeddings.get_shape(full.config)
    _, t = short.audio_spectrogram_transformer.embeddings.get_shape(config)
    state = full.state_dict()
    key = "audio_spectrogram_transformer.embeddings.position_embeddings"
    table = state[key]  # (1, 2 + f * t_full, D)
    grid = table[0, 2:].reshape(f, t_full, -1)[:, :t].reshape(f * t, -1)
    state[key] = torch.cat([table[0, :2], grid])[None]
    short.load_state_dict(state)
    extractor = ASTFeatureExtractor.from_pretrained(model_dir, max_length=frames)
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return torch.sigmoid(short(**inputs).logits)[0].numpy()


def test_a_short_clip_equals_transformers_model_built_at_its_cropped_length(hf_model_dir, wav):
    path = wav(0.6)  # 58 frames of a 200-frame window (patches 16 wide, every 8 frames)
    wave, _ = sf.read(path, dtype="float32")
    tagger = ast_cli.load_model(str(hf_model_dir), device="cpu", precision="fp32")
    cropped = tagger.run(path, TagOptions(crop_short=True)).scores[0].numpy()
    reference = transformers_scores_at(hf_model_dir, 64, wave)
    assert np.abs(cropped - reference).max() < 1e-4
    padded = tagger.run(path, TagOptions()).scores[0].numpy()
    assert np.abs(padded - cropped).max() > 1e-4  # the padding's patches took part in attention


def test_a_clip_as_long_as_the_window_is_unchanged(hf_model_dir, wav):
    path = wav(2.015)  # 32240 samples: exactly 200 frames, the model's window
    tagger = ast_cli.load_model(str(hf_model_dir), device="cpu", precision="fp32")
    padded, cropped = (tagger.run(path, TagOptions(crop_short=crop)) for crop in (False, True))
    assert [len(w.features) for w in tagger.windows(path, TagOptions(crop_short=True))[0]] == [200]
    assert torch.equal(torch.stack(list(padded.scores)), torch.stack(list(cropped.scores)))


def test_bf16_crops_within_its_tolerance(hf_model_dir, wav):
    path = wav(0.6)
    fp32, bf16 = (ast_cli.load_model(str(hf_model_dir), device="cpu", precision=p) for p in ("fp32", "bf16"))
    a, b = (t.run(path, TagOptions(crop_short=True)).scores[0] for t in (fp32, bf16))
    assert (a - b).abs().max() < 2e-2


def test_batch_crops_as_tag_does_and_resume_refuses_a_change_of_the_flag(capsys, hf_model_dir, wav, tmp_path):
    short, long = wav(0.6, name="short.wav"), wav(3.0, name="long.wav", freq=880.0)
    out = tmp_path / "t.jsonl"
    common = [short, long, "-o", out, "-m", hf_model_dir, "--precision", "fp32", "--workers", "0", "-q", "-k", "0"]
    code, _, err = run(capsys, "batch", *common, "--crop-short", "--batch-size", "4")  # one batch: 1 + 3 windows
    assert code == 0, err
    code, tagged, _ = run(
        capsys, "tag", short, long, "-m", hf_model_dir, "--precision", "fp32", "-k", "0", "-f", "jsonl", "--crop-short"
    )
    assert code == 0
    labels = [
        [(x["label"], round(x["score"], 4)) for x in json.loads(line)["labels"]]
        for line in out.read_text().splitlines()
    ]
    assert labels == [
        [(x["label"], round(x["score"], 4)) for x in json.loads(line)["labels"]] for line in tagged.splitlines()
    ]
    assert json.loads(settings_path(str(out), "jsonl").read_text())["settings"]["crop_short"] is True
    code, _, err = run(capsys, "batch", *common, "--resume")
    assert code == 2 and "crop_short True -> None" in err
    assert run(capsys, "batch", *common, "--force")[0] == 0
    code, _, err = run(capsys, "batch", *common, "--resume", "--crop-short")
    assert code == 2 and "crop_short None -> True" in err


def test_ray_refuses_the_flag(capsys, hf_model_dir, wav, tmp_path):
    code, _, err = run(
        capsys, "batch", wav(0.6), "-o", tmp_path / "t.jsonl", "-m", hf_model_dir, "--engine", "ray", "--crop-short"
    )
    assert code == 2 and "--crop-short" in err and "--engine local" in err


@pytest.mark.parametrize("window", [0.64])
def test_a_shorter_window_crops_every_window_of_a_long_recording(hf_model_dir, wav, window):
    path = wav(3.0)
    tagger = ast_cli.load_model(str(hf_model_dir), device="cpu", precision="fp32")
    options = TagOptions(window=window, crop_short=True)
    lengths = {len(w.features) for w in tagger.windows(path, options)[0]}
    assert lengths == {cropped_frames(64, 200, 16, 8)}
    assert len(tagger.run(path, options).scores) > 1

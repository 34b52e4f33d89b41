"""`ast embed`: the pooled embedding equals transformers' pooler_output; windows as `ast tag` cuts them;
.npy / .npz / .jsonl files; never overwritten without --force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run

import ast_cli
from ast_cli.embedding import embed
from ast_cli.inference import TagOptions


@pytest.fixture(scope="module")
def tagger(tiny_model_dir):
    return ast_cli.load_model(str(tiny_model_dir), device="cpu", precision="fp32")


def test_embedding_equals_transformers_pooler_output(hf_model_dir, wav):
    from transformers import ASTFeatureExtractor, ASTModel

    path = wav(1.5)  # shorter than the 2-s window: one zero-padded window, as the feature extractor makes it
    wave, sr = sf.read(path, dtype="float32")
    inputs = ASTFeatureExtractor.from_pretrained(hf_model_dir)(wave, sampling_rate=sr, return_tensors="pt")
    with torch.no_grad():
        reference = ASTModel.from_pretrained(hf_model_dir).eval()(**inputs).pooler_output[0].numpy()
    tagger = ast_cli.load_model(str(hf_model_dir), device="cpu", precision="fp32")
    result = embed(tagger, path, TagOptions())
    assert result.embedding.shape == reference.shape == (64,)
    assert np.max(np.abs(result.embedding - reference)) < 1e-4


def test_a_long_recording_is_the_mean_of_the_windows_tag_uses(tagger, wav):
    path = wav(4.0)
    options = TagOptions(hop=0.64, timeline=True)
    result = embed(tagger, path, options)
    record = tagger.tag(path, options=options)
    assert [round(s / 100, 3) for s in result.starts] == [w["start_s"] for w in record["windows"]]
    assert result.ends == pytest.approx([w["end_s"] for w in record["windows"]])
    assert result.windows.shape == (len(record["windows"]), 64)
    assert np.allclose(result.embedding, result.windows.mean(0), atol=1e-6)
    windows, _ = tagger.windows(path, options)
    features = torch.stack([w.features for w in windows])
    assert np.allclose(result.windows, tagger.model.forward_features(features).detach().numpy(), atol=1e-5)


def test_npy_has_one_row_per_file_and_nan_for_a_failure(capsys, tiny_model_dir, tagger, wav, tmp_path):
    a, b = wav(1.0, name="a.wav"), wav(3.0, 44100, 2, name="b.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00\x01 not audio")
    out = tmp_path / "e.npy"
    code, stdout, err = run(capsys, "embed", a, bad, b, "-m", tiny_model_dir, "-o", out, "--precision", "fp32")
    assert code == 1 and stdout == ""
    assert err.splitlines()[0].startswith(f"ast: error: {bad}: cannot decode audio")
    assert err.splitlines()[1] == f"ast: 2 of 3 file(s) embedded (64 dimensions) in {out}"
    matrix = np.load(out)
    assert matrix.shape == (3, 64) and matrix.dtype == np.float32
    assert np.isnan(matrix[1]).all()
    assert np.allclose(matrix[0], embed(tagger, a, TagOptions()).embedding, atol=1e-6)
    assert np.allclose(matrix[2], embed(tagger, b, TagOptions()).embedding, atol=1e-6)


def test_jsonl_and_npz_with_timeline(capsys, tiny_model_dir, tagger, wav, tmp_path):
    a, b = wav(1.0, name="a.wav"), wav(3.0, name="b.wav")
    code, out, _ = run(capsys, "embed", a, b, "-m", tiny_model_dir, "-o", "-", "--timeline", "--precision", "fp32")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [set(r) for r in records] == [{"path", "duration_s", "embedding", "windows"}] * 2
    assert [r["duration_s"] for r in records] == [1.0, 3.0]
    assert [[w["start_s"] for w in r["windows"]] for r in records] == [[0.0], [0.0, 0.64, 1.28, 1.7]]
    full = embed(tagger, b, TagOptions())
    assert np.allclose(records[1]["embedding"], full.embedding, atol=1e-6)
    assert np.allclose([w["embedding"] for w in records[1]["windows"]], full.windows, atol=1e-6)
    npz = tmp_path / "e.npz"
    code, _, _ = run(capsys, "embed", a, b, "-m", tiny_model_dir, "-o", npz, "--timeline", "-q")
    arrays = np.load(npz)
    assert list(arrays["paths"]) == [str(a), str(b)] and list(arrays["duration_s"]) == [1.0, 3.0]
    assert arrays["embeddings"].shape == (2, 64) and arrays["window_embeddings"].shape == (5, 64)
    assert list(arrays["window_file"]) == [0, 1, 1, 1, 1]
    assert list(arrays["window_start_s"]) == [0.0, 0.0, 0.64, 1.28, 1.7]
    assert list(arrays["window_end_s"]) == pytest.approx(
        [1.0, 1.28, 1.92, 2.56, 2.98]
    )  # as tag: the last window ends with the last frame


def test_output_is_never_overwritten_without_force_and_usage_errors(capsys, tiny_model_dir, wav, tmp_path):
    a = wav(1.0)
    out = tmp_path / "e.npy"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, "embed", a, "-m", tiny_model_dir, "-o", out)
    assert code == 2 and "exists" in err and "--force" in err and out.read_bytes() == b"precious"
    assert run(capsys, "embed", a, "-m", tiny_model_dir, "-o", out, "--force", "-q")[0] == 0
    assert np.load(out).shape == (1, 64)
    for args, message in [
        (["-o", tmp_path / "x.npy", "--timeline"], "--timeline does not fit in a .npy"),
        (["-o", tmp_path / "x.csv"], "unknown format '.csv'"),
        (["-o", tmp_path], "is a directory"),
        (["-o", tmp_path / "x.npy", "--window", "99"], "longer than the model's input"),
    ]:
        code, _, err = run(capsys, "embed", a, "-m", tiny_model_dir, *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.npy").exists() and not list(tmp_path.glob(".x.npy.tmp*"))


def test_each_broken_input_is_one_line_and_the_rest_is_embedded(capsys, tiny_model_dir, tmp_path):
    from test_robustness import BAD_FILES, CORPUS, build_corpus, files

    corpus = files(build_corpus(tmp_path / "corpus"))
    out = tmp_path / "e.npz"
    code, _, err = run(capsys, "embed", *corpus.values(), "-m", tiny_model_dir, "-o", out, "-q")
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ast: error: ")]
    warnings = [line for line in err.splitlines() if not line.startswith("ast: error: ")]
    assert len(errors) == len(BAD_FILES)
    # the cut file is embedded from the audio that is there, and -q keeps the warning that says so
    assert (
        len(warnings) == 1
        and warnings[0].startswith("ast: warning: ")
        and "truncated_data.wav: cut short" in warnings[0]
    )
    matrix = np.load(out)["embeddings"]
    failed = [CORPUS[name] is not None for name in corpus]
    assert [bool(np.isnan(row).all()) for row in matrix] == failed
    assert np.isfinite(matrix[[not f for f in failed]]).all()

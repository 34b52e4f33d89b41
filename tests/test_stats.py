"""`ast stats`: both methods equal a direct re-computation; seeded augmentation repeats exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import tone

from ast_cli.augment import mask_along_axis, mix
from ast_cli.stats import collect_audio, compute_stats

ROOT = Path(__file__).resolve().parent.parent
T = 128  # frames: short clips keep the tests fast


@pytest.fixture
def dataset(tmp_path):
    """Seven 16 kHz clips of different lengths (some shorter, some longer than T frames) in two
    class folders, plus a hidden file and a text file that must not be picked up."""
    paths = []
    for i in range(7):
        path = tmp_path / ("dog" if i % 2 else "rain") / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        x = tone(0.4 + 0.25 * i, freq=150 + 120 * i, seed=i) * (0.2 + 0.3 * i) + 0.01 * i  # a DC offset too
        sf.write(path, x, 16000)
        paths.append(path)
    (tmp_path / "rain" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "rain" / "notes.txt").write_text("not audio")
    return tmp_path, sorted(paths, key=lambda p: (p.parent.name != "dog", p.name))


def authors_features(path, target_length=T, dc_removal=True):
    """src/dataloader.py _wav2fbank without mixup: load, remove the mean, kaldi fbank, pad/cut."""
    wave, sr = sf.read(path, dtype="float32")
    wave = torch.from_numpy(wave).reshape(1, -1)
    if dc_removal:
        wave = wave - wave.mean()
    fb = torchaudio.compliance.kaldi.fbank(
        wave,
        htk_compat=True,
        sample_frequency=sr,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )
    p = target_length - fb.shape[0]
    return torch.nn.ZeroPad2d((0, 0, 0, p))(fb) if p > 0 else fb[:target_length]


def authors_stats(paths, batch_size):
    """src/get_norm_stats.py with augmentation off: mean of per-batch torch.mean / torch.std."""
    means, stds = [], []
    for i in range(0, len(paths), batch_size):
        batch = torch.stack([authors_features(p) for p in paths[i : i + batch_size]])
        means.append(torch.mean(batch))
        stds.append(torch.std(batch))
    return float(np.mean(means)), float(np.mean(stds))


def test_collect_audio_walks_folders_in_sorted_order(dataset):
    root, paths = dataset
    found = collect_audio([str(root)])
    assert [Path(p) for p in found] == paths  # dog/ before rain/, no hidden or text files


def test_exact_is_the_pooled_mean_and_std(dataset):
    root, paths = dataset
    stats = compute_stats(paths, "exact", target_length=T)
    values = torch.cat([authors_features(p, dc_removal=False).flatten() for p in paths]).double()
    assert stats.files == 7 and stats.skipped == 0
    assert stats.mean == pytest.approx(values.mean().item(), abs=1e-5)
    assert stats.std == pytest.approx(values.std().item(), abs=1e-5)


def test_authors_without_augmentation_equals_get_norm_stats(dataset):
    root, paths = dataset
    stats = compute_stats(paths, "authors", target_length=T, batch_size=3, mixup=0, freqm=0, timem=0)
    mean, std = authors_stats(paths, 3)
    assert stats.batches == 3 and stats.files == 7
    assert stats.mean == pytest.approx(mean, abs=1e-4)
    assert stats.std == pytest.approx(std, abs=1e-4)


def test_seeded_augmentation_repeats_exactly(dataset):
    root, paths = dataset
    kwargs = dict(target_length=T, batch_size=3, mixup=0.5, freqm=24, timem=48)
    first = compute_stats(paths, "authors", seed=7, **kwargs)
    again = compute_stats(paths, "authors", seed=7, **kwargs)
    other = compute_stats(paths, "authors", seed=8, **kwargs)
    plain = compute_stats(paths, "authors", target_length=T, batch_size=3, mixup=0, freqm=0, timem=0)
    assert (first.mean, first.std) == (again.mean, again.std)
    assert (first.mean, first.std) != (other.mean, other.std)
    # masks write 0 into log-mel values that are mostly negative: the mean moves up
    assert first.mean != pytest.approx(plain.mean, abs=1e-3)


def test_the_default_is_a_fixed_seed_so_the_same_folder_gives_the_same_numbers(dataset, capsys):
    """No --seed: seed 0, reported; two runs of the same folder agree to the last digit (each run drew
    a fresh seed before: means of -1.29, -1.65, -1.95 for one folder)."""
    from ast_cli.cli import main

    root, paths = dataset
    runs = []
    for _ in range(2):
        assert main(["stats", str(root), "--target-length", str(T), "--batch-size", "3", "--format", "json", "-q"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1] and runs[0]["seed"] == 0 and runs[0]["method"] == "authors"
    assert compute_stats(paths, "authors", target_length=T, batch_size=3).to_json() == runs[0]
    assert compute_stats(paths, "authors", target_length=T, batch_size=3, seed=1).mean != runs[0]["mean"]


def test_a_small_last_batch_weighs_as_much_as_a_full_one(tmp_path):
    """Four loud clips and one quiet one, batches of 4: the authors' mean is the midpoint of the two
    batch means, the exact one is pooled (the quiet clip counts for a fifth)."""
    paths = []
    for i, gain in enumerate([0.5, 0.5, 0.5, 0.5, 0.001]):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, tone(1.5, seed=i) * gain, 16000)
        paths.append(path)
    authors = compute_stats(paths, "authors", target_length=T, batch_size=4, mixup=0, freqm=0, timem=0)
    exact = compute_stats(paths, "exact", target_length=T)
    loud = compute_stats(paths[:4], "exact", target_length=T)
    quiet = compute_stats(paths[4:], "exact", target_length=T)
    assert authors.batches == 2
    assert authors.mean == pytest.approx((loud.mean + quiet.mean) / 2, abs=1e-4)
    assert authors.std == pytest.approx((loud.std + quiet.std) / 2, abs=1e-4)
    assert exact.mean == pytest.approx((4 * loud.mean + quiet.mean) / 5, abs=1e-4)
    assert authors.mean < exact.mean - 1.0  # the quiet clip pulls the authors' mean down much more


def test_mix_pads_or_cuts_the_partner_to_the_first_clip():
    a = np.ones(5, dtype=np.float32)
    short = np.full(3, 2.0, dtype=np.float32)
    long = np.full(8, 2.0, dtype=np.float32)
    assert mix(a, short, 0.25).tolist() == [1.75, 1.75, 1.75, 0.25, 0.25]
    assert mix(a, long, 0.25).tolist() == [1.75] * 5


def test_masks_are_one_band_narrower_than_the_parameter():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = torch.full((T, 128), -5.0)
        out = mask_along_axis(x, 24, axis=1, rng=rng)
        assert (out == 0).any(0).tolist() == (out == 0).all(0).tolist()  # whole columns
        zero_cols = torch.nonzero((out == 0).all(0)).flatten().tolist()
        assert len(zero_cols) < 24
        assert zero_cols == list(range(zero_cols[0], zero_cols[-1] + 1)) if zero_cols else True  # one band


def test_cli_json_write_and_bad_files(dataset, tmp_path):
    root, paths = dataset
    bad = root / "rain" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "model"
    out.mkdir()
    (out / "preprocessor_config.json").write_text(
        json.dumps({"mean": 1.0, "std": 2.0, "max_length": 512, "custom": "kept"})
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"{paths[0]}\n\n{paths[1]}\n")
    cmd = [sys.executable, "-m", "ast_cli", "stats", str(root), "--files-from", str(listing), "--method", "exact"]
    proc = subprocess.run(
        cmd + ["--target-length", str(T), "--format", "json", "--write", str(out), "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"mean", "std", "files", "method", "seed", "target_length", "padded"}
    assert result["seed"] is None and result["target_length"] == T and 0 < result["padded"] < 0.5
    assert result["files"] == 9 and result["method"] == "exact"
    assert "broken.wav" in proc.stderr and "skipped" in proc.stderr
    saved = json.loads((out / "preprocessor_config.json").read_text())
    assert saved["mean"] == result["mean"] and saved["std"] == result["std"]
    assert saved["max_length"] == 512 and saved["custom"] == "kept"


def test_cli_errors_are_one_line(dataset, tmp_path, capsys):
    from ast_cli.cli import main

    root, paths = dataset
    for args, message in [
        ([str(tmp_path / "dog" / "clip1.wav"), "--method", "pooled"], "--method must be one of authors, exact"),
        ([str(root / "missing")], "no such file or directory"),
        ([str(root / "rain"), "--files-from", str(tmp_path / "nope.txt")], "cannot read"),
    ]:
        assert main(["stats", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ast: error: ") and message in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stats", str(empty)]) == 2
    assert capsys.readouterr().err.startswith("ast: error: no audio files")


class _TorchDraws:
    """An rng whose draws are torch.rand's, so our masks can be compared with torchaudio's."""

    def random(self) -> float:
        return float(torch.rand(1))


@pytest.mark.parametrize("axis,param", [(1, 24), (0, 48)])
def test_masks_equal_torchaudios_for_the_same_draws(axis, param):
    """dataloader.py applies torchaudio's FrequencyMasking/TimeMasking to the (F, T) transpose."""
    masking = torchaudio.transforms.FrequencyMasking(param) if axis == 1 else torchaudio.transforms.TimeMasking(param)
    x = torch.randn(T, 128) - 5
    for seed in range(100):
        torch.manual_seed(seed)
        want = masking(x.T.clone()).T
        torch.manual_seed(seed)
        got = mask_along_axis(x, param, axis=axis, rng=_TorchDraws())
        assert torch.equal(got, want), seed


def test_the_default_length_follows_the_data_and_padding_is_reported(dataset, tmp_path):
    """Without --target-length: the longest clip's frames (7 clips of 0.4 to 1.9 s: 188 frames); the
    share of padded frames is the share of zero rows; mostly-padding statistics warn."""
    root, paths = dataset
    stats = compute_stats(paths, "exact")
    assert stats.target_length == 188
    values = torch.stack([authors_features(p, 188, dc_removal=False) for p in paths])
    assert stats.padded == pytest.approx(float((values == 0).all(-1).float().mean()), abs=1e-6)
    assert stats.mean == pytest.approx(values.double().mean().item(), abs=1e-5)
    with pytest.warns(UserWarning, match="of the frames are zero padding"):
        padded = compute_stats(paths[:2], "exact", target_length=1024)
    assert padded.padded > 0.5
    seeded = compute_stats(paths, "authors", seed=3, batch_size=3)
    assert seeded.to_json()["seed"] == 3 and seeded.target_length == 188


def test_finetune_and_stats_agree_on_the_same_folder(tiny_model_dir, tmp_path, capsys):
    """ast finetune --norm-stats auto computes what ast stats --method exact gives for its training clips."""
    from helpers import make_sound_dataset

    from ast_cli.cli import main

    make_sound_dataset(tmp_path / "train", per_class=3, seed=1)
    make_sound_dataset(tmp_path / "val", per_class=1, seed=2)
    args = [
        "finetune",
        tmp_path / "train",
        "-o",
        tmp_path / "out",
        "--base",
        tiny_model_dir,
        "--val",
        tmp_path / "val",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--batch-size",
        "4",
        "-q",
    ]
    assert main([str(a) for a in args]) == 0
    capsys.readouterr()
    trained = json.loads((tmp_path / "out" / "norm_stats.json").read_text())
    assert main(["stats", str(tmp_path / "train"), "--method", "exact", "-f", "json", "-q"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["target_length"] == trained["key"]["target_length"]
    assert (stats["mean"], stats["std"]) == (trained["mean"], trained["std"])

"""data.py: discovery, bad datasets, the stratified split, and the features the Dataset produces."""

from __future__ import annotations

import dataclasses

import pytest
import soundfile as sf
import torch
from helpers import make_sound_dataset, tone

from ast_cli import data as D
from ast_cli.errors import UsageError
from ast_cli.features import extract
from ast_cli.finetune_options import FinetuneOptions
from ast_cli.recipes import Recipe


def _write(path, seconds=0.5, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, **kwargs), 16000)
    return path


def test_folder_classes_sorted_hidden_and_other_files_ignored(tmp_path):
    _write(tmp_path / "rain" / "a.wav")
    _write(tmp_path / "dog" / "sub" / "b.flac")
    _write(tmp_path / "dog" / ".hidden.wav")
    (tmp_path / "dog" / "notes.txt").write_text("not audio")
    (tmp_path / ".cache").mkdir()
    found = D.discover(tmp_path)
    assert found.labels == ["dog", "rain"]
    assert [(c.path.split("/")[-1], c.target) for c in found.clips] == [("b.flac", (0,)), ("a.wav", (1,))]


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"dog": 2, "rain": 0}, "class folder holds no audio"),
        ({"dog": 3}, "only one class"),
        ({}, "no class folders"),
    ],
)
def test_bad_layouts_are_usage_errors(tmp_path, layout, message):
    for name, n in layout.items():
        (tmp_path / name).mkdir()
        for i in range(n):
            _write(tmp_path / name / f"{i}.wav")
    with pytest.raises(UsageError, match=message) as info:
        D.discover(tmp_path)
    assert info.value.exit_code == 2


def test_unreadable_files_are_warned_skipped_and_counted(tmp_path, caplog):
    _write(tmp_path / "dog" / "ok.wav")
    (tmp_path / "dog" / "broken.wav").write_bytes(b"RIFF not really")
    _write(tmp_path / "rain" / "ok.wav")
    found, fbanks, frames = D.scan(D.discover(tmp_path))
    assert [r.levelname for r in caplog.records if "broken.wav" in r.getMessage()] == ["WARNING"]
    assert len(found.clips) == 2 and len(found.skipped) == 1
    assert frames == [48, 48] and fbanks[0].shape == (48, 128)


def test_no_readable_audio_at_all(tmp_path, caplog):
    for name in ("dog", "rain"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.wav").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="no readable audio"):
        D.scan(D.discover(tmp_path))
    assert any(r.levelname == "WARNING" for r in caplog.records)


def test_stratified_split_per_class_and_seeded(tmp_path):
    for name, n in (("a", 10), ("b", 20), ("c", 2)):
        for i in range(n):
            _write(tmp_path / name / f"{i}.wav", 0.05)
    found = D.discover(tmp_path)
    train, val = D.stratified_split(found, 0.2, seed=3)
    assert val.counts() == {"a": 2, "b": 4, "c": 1} and train.counts() == {"a": 8, "b": 16, "c": 1}
    assert {c.path for c in train.clips}.isdisjoint(c.path for c in val.clips)
    again = D.stratified_split(found, 0.2, seed=3)[1]
    other = D.stratified_split(found, 0.2, seed=4)[1]
    assert [c.path for c in again.clips] == [c.path for c in val.clips]
    assert [c.path for c in other.clips] != [c.path for c in val.clips]


def test_class_too_small_to_split(tmp_path):
    _write(tmp_path / "a" / "1.wav", 0.05)
    _write(tmp_path / "a" / "2.wav", 0.05)
    _write(tmp_path / "b" / "1.wav", 0.05)
    with pytest.raises(UsageError, match="'b' has 1 readable clip: too few to split") as info:
        D.stratified_split(D.discover(tmp_path), 0.1, 0)
    assert "--val DIR" in str(info.value)


def test_csv_labels_multi_label(tmp_path):
    _write(tmp_path / "x.wav")
    _write(tmp_path / "y.wav")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels\nx.wav,rain;thunder\ny.wav,dog\n")
    found = D.discover(tmp_path, csv)
    assert found.multi_label and found.labels == ["dog", "rain", "thunder"]
    assert [c.target for c in found.clips] == [(1, 2), (0,)]
    csv.write_text("x.wav\n")
    with pytest.raises(UsageError, match="row 1 is not 'path,label;label'"):
        D.discover(tmp_path, csv)


def test_relabel_refuses_unknown_classes(tmp_path):
    _write(tmp_path / "cat" / "1.wav")
    _write(tmp_path / "dog" / "1.wav")
    found = D.folder_classes(tmp_path)
    assert [c.target for c in D.relabel(found, ["bird", "cat", "dog"], "x").clips] == [(1,), (2,)]
    assert [c.target for c in D.relabel(found, ["Dog", "Cat"], "x").clips] == [(1,), (0,)]  # AudioSet's 'Dog'
    assert [c.target for c in D.relabel(found, ["Dog", "dog", "Cat"], "x").clips] == [(2,), (1,)]
    with pytest.raises(UsageError, match="has no class 'cat'"):
        D.relabel(found, ["dog", "rain"], "model m")


def test_features_without_augmentation_are_the_tagging_features(tmp_path):
    paths = make_sound_dataset(tmp_path, per_class=2)
    found, fbanks, _ = D.scan(D.discover(tmp_path))
    for cached in (fbanks, None):  # from the cache and decoded per item
        dataset = D.ClipDataset(found, 64, -5.0, 4.0, fbanks=cached)
        x, target = dataset[3]
        wave = sf.read(found.clips[3].path, dtype="float32")[0]
        torch.testing.assert_close(x, extract(wave, 64, -5.0, 4.0))
        assert target.tolist() == [0.0, 1.0, 0.0, 0.0] and found.clips[3].path == str(paths["clicks"][1])


def test_augmentation_is_seeded_by_epoch_and_index(tmp_path):
    make_sound_dataset(tmp_path, per_class=2)
    found, fbanks, _ = D.scan(D.discover(tmp_path))
    mean, std = -5.0, 4.0
    dataset = D.ClipDataset(found, 100, mean, std, D.Augment(freqm=30, timem=20, mixup=0.0), fbanks, seed=7)
    a, b, c = dataset[(1, 5)][0], dataset[(1, 5)][0], dataset[(2, 5)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    masked = (0.0 - mean) / (2 * std)  # masks write 0 into the raw log-mel, before normalisation
    plain = D.ClipDataset(found, 100, mean, std, fbanks=fbanks)[5][0]
    changed = ~torch.isclose(a, plain)
    assert changed.any() and torch.allclose(a[changed], torch.tensor(masked))


@pytest.mark.parametrize(
    "recipe", [r for r in Recipe.values() if r != "default"]
)  # default: pretrained or scratch, by the base
def test_only_the_speechcommands_recipe_adds_noise_and_rolls(tmp_path, recipe):
    """dataloader.py adds noise and rolls only with noise=True (their Speech Commands run): each item
    is then the plain features plus uniform noise below 0.1, rolled by -10..9 frames; every other
    recipe, the default included, gives the plain features (its masks and mixup set aside here)."""
    make_sound_dataset(tmp_path, per_class=2)
    found, fbanks, _ = D.scan(D.discover(tmp_path))
    mean, std = -5.0, 4.0
    plain = D.ClipDataset(found, 100, mean, std, fbanks=fbanks)
    values = dataclasses.replace(FinetuneOptions(recipe=recipe).values(), freqm=0, timem=0, mixup=0.0)
    keys = [(epoch, i) for epoch in range(3) for i in range(len(plain))]
    without = D.ClipDataset(
        found, 100, mean, std, D.Augment.of(dataclasses.replace(values, noise=False), 100), fbanks, seed=7
    )
    assert all(torch.equal(without[key][0], plain[key[1]][0]) for key in keys)
    dataset = D.ClipDataset(found, 100, mean, std, D.Augment.of(values, 100), fbanks, seed=7)
    if recipe != "speechcommands":
        assert not values.noise and all(torch.equal(dataset[key][0], plain[key[1]][0]) for key in keys)
        return
    shifts = set()
    for epoch, i in keys:
        x, rolled = dataset[(epoch, i)][0], [torch.roll(plain[i][0], k, 0) for k in range(-10, 10)]
        assert not any(torch.equal(x, r) for r in rolled)  # noise on top of any roll
        fits = [
            k for k, r in zip(range(-10, 10), rolled, strict=True) if (x - r).min() >= 0 and (x - r).max() < 0.1 + 1e-6
        ]
        assert fits, (epoch, i)
        shifts.update(fits)
    assert min(shifts) < 0 < max(shifts)  # rolls both ways
    assert torch.equal(dataset[(1, 2)][0], dataset[(1, 2)][0]) and not torch.equal(
        dataset[(1, 2)][0], dataset[(2, 2)][0]
    )


def test_mixup_mixes_waveforms_and_targets(tmp_path):
    make_sound_dataset(tmp_path, per_class=2)
    found, _, _ = D.scan(D.discover(tmp_path), keep=False)
    dataset = D.ClipDataset(found, 100, -5.0, 4.0, D.Augment(mixup=1.0), seed=1)
    targets = torch.stack([dataset[(0, i)][1] for i in range(len(dataset))])
    assert torch.allclose(targets.sum(1), torch.ones(len(dataset)))
    mixed = torch.nonzero(targets.max(1).values < 1).flatten()
    assert len(mixed) and ((targets[mixed] > 0).sum(1) == 2).all()
    plain = D.ClipDataset(found, 100, -5.0, 4.0)
    assert not torch.allclose(dataset[(0, int(mixed[0]))][0], plain[int(mixed[0])][0], atol=1e-3)


def test_epoch_sampler_shards_and_keys(tmp_path):
    items = list(range(10))
    shards = []
    for rank in range(2):
        sampler = D.EpochSampler(torch.utils.data.DistributedSampler(items, 2, rank, shuffle=True, seed=0))
        sampler.set_epoch(3)
        keys = list(sampler)
        assert {e for e, _ in keys} == {3}
        shards.append({i for _, i in keys})
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(items)


def test_default_target_length():
    assert D.default_target_length([50, 98, 70], 1024) == 98
    assert D.default_target_length([5000], 1024) == 1024
    assert D.default_target_length([3], 1024) == 16

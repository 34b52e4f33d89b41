"""Per-label thresholds (ast_cli/thresholds.py, metrics.best_thresholds, records.label_thresholds):
chosen as sklearn's precision-recall curve allows, read back by tag/batch/listen, and the loop
eval -> thresholds file -> batch beating the best single threshold on F1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import SOUND_CLASSES, make_sound_dataset, random_model, run, tiny_config

from ast_cli.errors import UsageError
from ast_cli.metrics import best_thresholds, f1_at
from ast_cli.options import TagOptions
from ast_cli.records import RecordMaker
from ast_cli.thresholds import Thresholds, read_label_list, read_thresholds

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (the test extra) is the reference")


# -- choosing -------------------------------------------------------------------------------------
def _scored(seed: int, n: int = 300, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < rng.uniform(0.05, 0.5, c)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.5 * targets * rng.uniform(0.2, 2.0, c))))
    scores = np.round(scores, 3)  # ties, as reported scores have
    targets[:, -1] = False  # a label without positives
    return scores, targets


@pytest.mark.parametrize("seed", range(5))
def test_the_best_f1_threshold_is_the_one_sklearns_curve_gives(seed):
    scores, targets = _scored(seed)
    chosen = best_thresholds(scores, targets, [f"L{k}" for k in range(scores.shape[1])])
    for k, row in enumerate(chosen.values()):
        if not targets[:, k].any():
            assert row["threshold"] is None and row["support"] == 0
            continue
        precision, recall, at = sklearn_metrics.precision_recall_curve(targets[:, k], scores[:, k])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
        best = int(np.argmax(f1[:-1]))
        assert row["f1"] == pytest.approx(f1[best], abs=1e-12)
        assert row["precision"] == pytest.approx(precision[best], abs=1e-12)
        assert row["recall"] == pytest.approx(recall[best], abs=1e-12)
        # halfway below the score sklearn names: the same decisions on these scores
        lower = scores[:, k][scores[:, k] < at[best]]
        assert (lower.max() if len(lower) else at[best]) <= row["threshold"] <= at[best]
        assert f1_at(scores, targets, np.full(scores.shape[1], row["threshold"]))[k] == pytest.approx(row["f1"])
        assert row["support"] == int(targets[:, k].sum())


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_a_target_precision_gets_the_most_recall_that_reaches_it(target):
    scores, targets = _scored(11)
    chosen = best_thresholds(scores, targets, [f"L{k}" for k in range(scores.shape[1])], target_precision=target)
    for k, row in enumerate(chosen.values()):
        if not targets[:, k].any():
            continue
        precision, recall, _ = sklearn_metrics.precision_recall_curve(targets[:, k], scores[:, k])
        reachable = recall[:-1][precision[:-1] >= target]
        if not len(reachable):
            assert row["threshold"] is None
            continue
        assert row["precision"] >= target and row["recall"] == pytest.approx(reachable.max())


# -- the file -------------------------------------------------------------------------------------
def test_files_as_eval_writes_them_and_as_people_write_them(tmp_path):
    doc = {"activation": "sigmoid", "criterion": "f1", "thresholds": {"Dog": 0.4, "Speech": 0.625}}
    (tmp_path / "t.json").write_text(json.dumps(doc))
    assert read_thresholds(tmp_path / "t.json") == Thresholds(
        {"Dog": 0.4, "Speech": 0.625}, "sigmoid", str(tmp_path / "t.json")
    )
    (tmp_path / "t.csv").write_text("label,threshold\n# a comment\nDog,0.4\n\n Speech , 0.625\n")
    (tmp_path / "t.tsv").write_text("Dog\t0.4\nSpeech\t0.625\n")
    for name in ("t.csv", "t.tsv"):
        read = read_thresholds(tmp_path / name)
        assert read.per_label == {"Dog": 0.4, "Speech": 0.625} and read.activation is None
    (tmp_path / "labels.txt").write_text("# dogs and people\nDog\n\nSpeech\n")
    assert read_label_list(tmp_path / "labels.txt") == ["Dog", "Speech"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("Dog,loud\n", "the threshold of 'Dog' is not a finite number"),
        ("Dog,nan\n", "not a finite number"),
        ("Dog,0.4\ndog,0.5\n", "'dog' is given twice"),
        ("Dog,0.4,1\n", "line 1 is not label,threshold"),
        ('{"Dog": 0.4}', 'no "thresholds" object'),
        ('{"thresholds": {"Dog": true}}', "not a finite number"),
        ("{" * 5000, "not valid JSON"),
        ("", "no thresholds in it"),
    ],
)
def test_a_bad_file_is_one_usage_error_naming_it(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as caught:
        read_thresholds(path)
    assert str(path) in str(caught.value)


def test_each_label_is_cut_at_its_own_threshold_the_others_at_the_global_one():
    labels = ["Speech", "Music", "Dog"]
    scores = torch.tensor([0.5, 0.3, 0.2])
    own = Thresholds({"dog": 0.1, "Speech": 0.6}, "sigmoid", "t.json")
    maker = RecordMaker(labels, TagOptions(top=0, thresholds=own), window=128)
    assert [x["label"] for x in maker.select(scores)] == ["Music", "Dog"]  # Music: no threshold at all
    maker = RecordMaker(labels, TagOptions(top=0, thresholds=None, threshold=0.25), window=128)
    assert [x["label"] for x in maker.select(scores)] == ["Speech", "Music"]
    maker = RecordMaker(labels, TagOptions(top=0, thresholds=own, threshold=0.25), window=128)
    assert [x["label"] for x in maker.select(scores)] == ["Music", "Dog"]
    with pytest.raises(UsageError, match="t.json: unknown label 'Dgo'.*did you mean 'Dog'"):
        RecordMaker(labels, TagOptions(thresholds=Thresholds({"Dgo": 0.1}, None, "t.json")), window=128)
    with pytest.raises(UsageError, match=r"t.json: 'Dog' has 1.5, outside \[0, 1\]"):
        TagOptions(thresholds=Thresholds({"Dog": 1.5}, None, "t.json"))


# -- the loop -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """The synthetic sound classes, and a multi-label (sigmoid) model with their names, as a user's
    model for them would be: each label's scores on their own scale."""
    from ast_cli.checkpoints import save
    from ast_cli.config import MULTI_LABEL, PreprocessorConfig

    root = tmp_path_factory.mktemp("sounds")
    make_sound_dataset(root / "data", per_class=10, seed=3)
    config = tiny_config(id2label=dict(enumerate(SOUND_CLASSES)), problem_type=MULTI_LABEL)
    save(random_model(config, seed=5), PreprocessorConfig(max_length=128, mean=-5.0, std=4.0), root / "model")
    return root


def _f1(records: list[dict], picked) -> float:
    """Macro-F1 over the classes of the files' decisions (the folder is the truth)."""
    truth = np.array([[r["path"].split("/")[-2] == c for c in SOUND_CLASSES] for r in records])
    decided = np.array([[c in picked(r) for c in SOUND_CLASSES] for r in records])
    tp = (truth & decided).sum(0)
    return float(np.mean(2 * tp / np.maximum(truth.sum(0) + decided.sum(0), 1)))


def test_eval_thresholds_then_batch_beat_the_best_single_threshold(capsys, sounds):
    data, model, file = sounds / "data", sounds / "model", sounds / "thresholds.json"
    code, out, err = run(capsys, "eval", data, "-m", model, "--write-thresholds", file, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["thresholds"] == {"file": str(file), "labels": len(SOUND_CLASSES)}
    written = json.loads(file.read_text())
    assert written["activation"] == "sigmoid" and written["criterion"] == "f1"
    assert set(written["thresholds"]) == set(SOUND_CLASSES)

    common = ["-m", model, "-o", "-", "--top", "0", "-q"]
    code, out, err = run(capsys, "batch", data, *common, "--thresholds", file)
    assert code == 0, err
    own = _f1([json.loads(line) for line in out.splitlines()], lambda r: {x["label"] for x in r["labels"]})
    code, out, err = run(capsys, "batch", data, *common, "--all-scores")
    assert code == 0, err
    scored = [json.loads(line) for line in out.splitlines()]
    candidates = sorted({s for r in scored for s in r["scores"].values()})
    best_single = max(
        _f1(scored, lambda r, t=t: {label for label, s in r["scores"].items() if s >= t}) for t in candidates
    )
    per_label = written["per_label"]
    assert own == pytest.approx(np.mean([per_label[c]["f1"] for c in SOUND_CLASSES]), abs=1e-9)
    assert own > best_single + 0.02, (own, best_single)


def test_label_lists_and_thresholds_on_tag_and_listen(capsys, sounds, tmp_path):
    clip = sorted((sounds / "data" / "tone").iterdir())[0]
    (tmp_path / "only.txt").write_text("tone\nnoise\n")
    (tmp_path / "not.txt").write_text("noise\n")
    code, out, err = run(
        capsys,
        "tag",
        clip,
        "-m",
        sounds / "model",
        "-f",
        "jsonl",
        "--top",
        "0",
        "--include-from",
        tmp_path / "only.txt",
        "--exclude-from",
        tmp_path / "not.txt",
    )
    assert code == 0, err
    assert [x["label"] for x in json.loads(out)["labels"]] == ["tone"]
    (tmp_path / "t.json").write_text(json.dumps({"activation": "softmax", "thresholds": {"tone": 0.1}}))
    code, _, err = run(capsys, "tag", clip, "-m", sounds / "model", "--thresholds", tmp_path / "t.json")
    assert code == 2 and "its thresholds are for softmax scores, this run gives sigmoid scores" in err
    assert "--activation softmax" in err and err.count("\n") == 1
    code, _, err = run(capsys, "listen", "-", "-m", sounds / "model", "--events")
    assert code == 2 and "--events needs --threshold" in err and "--thresholds FILE" in err

"""``ast eval --strong-labels`` (detection.py): the strong-labels file, the score timeline, and the
metrics, compared with sed_eval on its own tutorial example and with sed_scores_eval called directly."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run, tone

from ast_cli.detection import read_strong_labels, score_events, timeline
from ast_cli.errors import UsageError

DATA = Path(__file__).parent / "data" / "sed_eval"
LABELS = ["Speech", "Music", "Dog", "Rain", "Siren"]  # helpers.TINY_LABELS


def sed_scores_eval():
    """The library, or a skip saying why (the sed extra is not installed, or does not import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sed_scores_eval", reason="needs the sed extra: pip install 'ast-cli[sed]'")


# -- the strong-labels file and the timeline (no library) -------------------------------------------
def test_strong_labels_are_read_as_dcase_writes_them(tmp_path):
    path = tmp_path / "gt.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.5\tdog\nb/c.wav\t\t\t\na.wav\t2\t3\tSiren\n")
    assert read_strong_labels(path, LABELS) == {"a.wav": [(0.5, 1.5, "Dog"), (2.0, 3.0, "Siren")], "b/c.wav": []}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a.wav\t0.5\t1.5\tDgo", ["gt.tsv line 2", "'Dgo'", "did you mean 'Dog'"]),
        ("a.wav\t1.5\t0.5\tDog", ["gt.tsv line 2", "onset < offset"]),
        ("a.wav\tsoon\t1.5\tDog", ["gt.tsv line 2", "'soon'"]),
        ("a.wav\t0.5\tDog", ["gt.tsv line 2", "3 tab-separated fields"]),
        ("a.wav\t1.0\t2.0\tDog\na.wav\t1.5\t2.5\tDog", ["a.wav", "'Dog' events 1-2 s and 1.5-2.5 s overlap"]),
    ],
)
def test_bad_strong_labels_name_the_file_and_line(tmp_path, line, words):
    path = tmp_path / "gt.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\n" + line + "\n")
    with pytest.raises(UsageError) as caught:
        read_strong_labels(path, LABELS)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_overlapping_windows_become_a_gapless_timeline():
    # windows of 128 frames (1.28 s) every 64, the second ending with the audio at 1.5 s
    bounds, scores = timeline([0, 64], 128, 1.5, np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(bounds, [0.0, 0.64, 1.28, 1.5])
    np.testing.assert_allclose(scores, [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # the mean where both cover


def test_event_flags_need_strong_labels(capsys, tiny_model_dir, tmp_path):
    code, _, err = run(capsys, "eval", tmp_path, "-m", tiny_model_dir, "--collar", "0.5")
    assert code == 2 and "--collar need --strong-labels" in err
    gt = tmp_path / "gt.tsv"
    gt.write_text("a.wav\t0\t1\tDog\n")
    code, _, err = run(capsys, "eval", tmp_path, "-m", tiny_model_dir, "--strong-labels", gt, "--plot", "x.png")
    assert code == 2 and "--plot work on clips" in err


def test_without_the_library_one_line_says_how_to_get_it(capsys, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sed_scores_eval", None)
    gt = tmp_path / "gt.tsv"
    gt.write_text("a.wav\t0\t1\tDog\n")
    code, _, err = run(capsys, "eval", tmp_path, "-m", tiny_model_dir, "--strong-labels", gt)
    assert code == 2 and "pip install 'ast-cli[sed]'" in err and len(err.strip().splitlines()) == 1


# -- the library's own example ----------------------------------------------------------------------
def events_of(path: Path) -> list[tuple[float, float, str]]:
    """sed_eval's event list files: onset, offset, label a line."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(float(onset), float(offset), label.strip()) for onset, offset, label in rows]


def test_sed_eval_tutorial_example_gives_sed_eval_numbers():
    """sed_eval's tutorial example, its detections written as 0/1 score timelines, through our path
    (sed_scores_eval) and through sed_eval as the tutorial calls it: the same F1, per class and overall."""
    sse = sed_scores_eval()
    sed_eval = pytest.importorskip("sed_eval")
    name = "office_snr0_med_v2"
    reference, detected = events_of(DATA / f"{name}.txt"), events_of(DATA / f"{name}_detected.txt")
    classes = sorted({label for *_, label in reference})
    end = max(offset for _, offset, _ in reference + detected)
    bounds = np.unique([0.0, end, *(t for onset, offset, _ in detected for t in (onset, offset))])
    middle = (bounds[:-1] + bounds[1:]) / 2
    inside = [[any(a <= m < b for a, b, c in detected if c == k) for k in classes] for m in middle]
    scores = {name: sse.base_modules.scores.create_score_dataframe(np.array(inside, float), bounds, classes)}
    # the tutorial's parameters: t_collar 0.25 s and sed_eval's default percentage_of_length 0.5
    ours = score_events(
        scores,
        {name: reference},
        {name: end},
        dict.fromkeys(classes, 0.5),
        collar=0.25,
        offset_collar_rate=0.5,
        segment=1.0,
    )
    segment_based = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=classes, time_resolution=1.0)
    event_based = sed_eval.sound_event.EventBasedMetrics(event_label_list=classes, t_collar=0.250)
    ref, est = (sed_eval.io.load_event_list(str(DATA / f)) for f in (f"{name}.txt", f"{name}_detected.txt"))
    for metrics in (segment_based, event_based):
        metrics.evaluate(reference_event_list=ref, estimated_event_list=est)
    for key, metrics in (("event_based", event_based), ("segment_based", segment_based)):
        theirs = metrics.results()
        assert ours[key]["f1"] == pytest.approx(theirs["overall"]["f_measure"]["f_measure"], abs=1e-12)
        assert ours[key]["recall"] == pytest.approx(theirs["overall"]["f_measure"]["recall"], abs=1e-12)
        for row in ours[key]["per_class"]:
            expected = theirs["class_wise"][row["label"]]["f_measure"]
            if math.isnan(expected["f_measure"]):  # sed_eval: no detection, no precision; sed_scores_eval: 0
                assert row["f1"] == 0.0 and row["tp"] == 0
            else:
                assert row["f1"] == pytest.approx(expected["f_measure"], abs=1e-12), row["label"]
    assert ours["event_based"]["f1"] == pytest.approx(0.2258064516, abs=1e-9)  # 7 of 31 right, 31 detected


# -- end to end -------------------------------------------------------------------------------------
@pytest.fixture
def recordings(tmp_path):
    """Three recordings of tones in noise, one in a sub-folder, one without events, and their strong labels."""
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (start, stop) in {"a.wav": (1.0, 2.5), "sub/b.wav": (0.5, 1.5), "c.wav": (0, 0)}.items():
        x = 0.02 * rng.standard_normal(4 * 16000).astype(np.float32)
        x[int(start * 16000) : int(stop * 16000)] += tone(stop - start, freq=880.0)
        sf.write(folder / name, x, 16000)
    gt = tmp_path / "gt.tsv"
    gt.write_text("filename\tonset\toffset\tevent_label\na.wav\t1.0\t2.5\tSiren\nsub/b.wav\t0.5\t1.5\tdog\n")
    return folder, gt


def test_eval_strong_labels_reports_the_librarys_numbers(capsys, tiny_model_dir, recordings):
    sse = sed_scores_eval()
    folder, gt = recordings
    args = ("eval", folder, "-m", tiny_model_dir, "--strong-labels", gt, "--precision", "fp32", "-t", "0.4")
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["files"] == 3 and report["events"] == 2 and report["thresholds"] == {"Dog": 0.4, "Siren": 0.4}
    assert {"event_based", "segment_based", "psds1"} <= set(report)
    assert [row["label"] for row in report["event_based"]["per_class"]] == ["Dog", "Siren"]

    from ast_cli.inference import load_model

    tagger = load_model(str(tiny_model_dir), precision="fp32")
    classes, scores, durations = ["Dog", "Siren"], {}, {}
    for name in ("a.wav", "c.wav", "sub/b.wav"):
        result = tagger.run(str(folder / name), tagger_options())
        rows = result.scores.rows().numpy()[:, [tagger.labels.index(c) for c in classes]].astype(np.float64)
        bounds, stretches = timeline(result.starts, tagger.window_frames, result.duration_s, rows)
        scores[name] = sse.base_modules.scores.create_score_dataframe(stretches, bounds, classes)
        durations[name] = result.duration_s
    truth = {"a.wav": [(1.0, 2.5, "Siren")], "sub/b.wav": [(0.5, 1.5, "Dog")], "c.wav": []}
    f, p, r, _ = sse.collar_based.fscore(
        scores, truth, 0.4, onset_collar=0.2, offset_collar=0.2, offset_collar_rate=0.2
    )
    assert report["event_based"]["f1"] == f["micro_average"] and report["event_based"]["macro_f1"] == f["macro_average"]
    f, p, r, _ = sse.segment_based.fscore(scores, truth, durations, 0.4, segment_length=1.0)
    assert (
        report["segment_based"]["f1"] == f["micro_average"] and report["segment_based"]["recall"] == r["micro_average"]
    )
    psds, per_class, *_ = sse.intersection_based.psds(
        scores, truth, durations, dtc_threshold=0.7, gtc_threshold=0.7, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0
    )
    assert report["psds1"]["psds"] == psds and report["psds1"]["per_class"]["Dog"] == per_class["Dog"]

    code, out, err = run(capsys, *args)  # the table
    assert code == 0, err
    assert out.splitlines()[0].startswith("files 3  events 2") and "PSDS1" in out and out.count("\nSiren ") == 1


def tagger_options():
    from ast_cli.options import TagOptions

    return TagOptions()


def test_a_labelled_file_missing_from_the_folder_is_named(capsys, tiny_model_dir, recordings, tmp_path):
    sed_scores_eval()
    folder, gt = recordings
    gt.write_text(gt.read_text() + "gone.wav\t0\t1\tDog\n")
    code, _, err = run(capsys, "eval", folder, "-m", tiny_model_dir, "--strong-labels", gt)
    assert code == 2 and "1 file(s) not found" in err and "gone.wav" in err

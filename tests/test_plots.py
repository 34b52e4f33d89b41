"""Pictures (the plot extra): training.png and confusion.png from ast finetune, ast eval --plot for single-
and multi-label data; each a valid PNG of the documented size whose pixels vary. Without matplotlib
one line says how to get it, and the command goes on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers import SOUND_CLASSES, make_sound_dataset

from ast_cli import plots
from ast_cli.cli import main

pytest.importorskip("matplotlib", reason="the plot extra (pip install 'ast-cli[plot]') draws the pictures")


def _png(path) -> np.ndarray:
    """The picture's pixels, after checking it is a PNG."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20 and pixels.std() > 10  # drawn, not blank
    return pixels


def _size(pixels: np.ndarray) -> tuple[int, int]:
    return pixels.shape[1], pixels.shape[0]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("plots")
    make_sound_dataset(root / "data", per_class=4, seed=6)
    out = root / "out"
    assert (
        main(
            [
                "finetune",
                str(root / "data"),
                "-o",
                str(out),
                "--base",
                str(tiny_model_dir),
                "--epochs",
                "2",
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    return root / "data", out


def test_finetune_draws_its_history_and_the_best_epochs_confusion(tuned):
    _, out = tuned
    assert _size(_png(out / "training.png")) == plots.TRAINING_SIZE
    assert _size(_png(out / "confusion.png")) == plots.confusion_size(len(SOUND_CLASSES))


def test_eval_plot_draws_the_confusion_matrix(tuned, tmp_path, capsys):
    data, out = tuned
    assert main(["eval", str(data), "-m", str(out), "--plot", str(tmp_path / "c.png"), "--format", "json"]) == 0
    assert capsys.readouterr().out.startswith("{")  # the report still goes to stdout
    assert _size(_png(tmp_path / "c.png")) == plots.confusion_size(len(SOUND_CLASSES))
    assert main(["eval", str(data), "-m", str(out), "--plot", str(tmp_path / "no" / "c.png")]) == 2
    assert "--plot" in capsys.readouterr().err


def test_eval_plot_of_multi_label_data_draws_per_class_ap(tmp_path, tiny_model_dir):
    paths = make_sound_dataset(tmp_path / "data", per_class=4)
    rows = [
        f"{p.relative_to(tmp_path / 'data')},{kind}{';loud' if i % 2 else ''}"
        for kind, files in paths.items()
        for i, p in enumerate(files)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    common = ["--labels", str(tmp_path / "labels.csv"), "--workers", "0", "-q"]
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "data"),
                "-o",
                str(out),
                "--base",
                str(tiny_model_dir),
                "--epochs",
                "1",
                *common,
            ]
        )
        == 0
    )
    assert _size(_png(out / "per_class_ap.png")) == plots.ap_size(5) and not (out / "confusion.png").exists()
    assert (
        main(
            [
                "eval",
                str(tmp_path / "data"),
                "-m",
                str(out),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--plot",
                str(tmp_path / "ap.png"),
            ]
        )
        == 0
    )
    assert _size(_png(tmp_path / "ap.png")) == plots.ap_size(5)


def test_without_matplotlib_one_line_says_how_to_get_it(tmp_path, tiny_model_dir, monkeypatch, capsys):
    make_sound_dataset(tmp_path / "data", per_class=3)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    monkeypatch.setattr(plots, "_warned", False)
    out = tmp_path / "out"
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "data"),
                "-o",
                str(out),
                "--base",
                str(tiny_model_dir),
                "--epochs",
                "1",
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    assert main(["eval", str(tmp_path / "data"), "-m", str(out), "--plot", str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    assert err.count("they need matplotlib: pip install 'ast-cli[plot]'") == 1  # once a process
    assert (
        (out / "model.safetensors").is_file()
        and not (out / "training.png").exists()
        and not (tmp_path / "c.png").exists()
    )


def test_importing_the_cli_imports_no_matplotlib():
    import subprocess

    code = "import sys, ast_cli.cli; sys.exit('matplotlib' in sys.modules or 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_tag_plot_is_the_spectrogram_with_the_labels_over_time(tmp_path, tiny_model_dir, wav, capsys):
    audio = wav(7.0, sr=22050)
    png = tmp_path / "tagged.png"
    code = main(["tag", str(audio), "-m", str(tiny_model_dir), "-f", "jsonl", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("\n") == 1  # the record is still written
    assert _size(_png(png)) == plots.TAG_SIZE


def test_tag_plot_of_a_long_recording_keeps_few_columns():
    strip = plots.FrameStrip()
    frames = np.arange(10_000 * 4, dtype=np.float32).reshape(10_000, 4)
    for start in range(0, 9_001, 500):  # overlapping windows of 1000 frames every 500
        strip.add(start, frames[start : start + 1000])
    image = strip.image()
    assert strip.frames == 10_000 and image.shape[0] == 4
    assert image.shape[1] <= plots.FrameStrip.MAX_COLUMNS
    assert abs(image[0].mean() - frames[:, 0].mean()) < 1e-3 * frames[:, 0].mean()  # each frame counted once


def test_tag_plot_takes_one_input(tmp_path, tiny_model_dir, wav, capsys):
    a, b = wav(1.0, name="a.wav"), wav(1.0, name="b.wav")
    code = main(["tag", str(a), str(b), "-m", str(tiny_model_dir), "--plot", str(tmp_path / "x.png")])
    _, err = capsys.readouterr()
    assert code == 2 and "--plot draws one recording, got 2 inputs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_tag_plot_without_matplotlib_says_how_and_still_tags(tmp_path, tiny_model_dir, wav, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    monkeypatch.setattr(plots, "_warned", False)
    png = tmp_path / "x.png"
    code = main(["tag", str(wav(1.0)), "-m", str(tiny_model_dir), "-f", "jsonl", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 0 and out.count("\n") == 1 and not png.exists()
    assert err.count("pip install 'ast-cli[plot]'") == 1

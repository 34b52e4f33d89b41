"""Faithful to the authors' checkpoints (YuanGongND/ast, src/models/ast_models.py, src/dataloader.py):
a .pth loads as the network it is or is refused with what would fit, never as another; the head's
LayerNorm as theirs; their normalisation presets; their front end on request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import authors_state_dict, random_model, tiny_config, tone

from ast_cli.checkpoints import load, save
from ast_cli.cli import main
from ast_cli.config import NORM_STATS, PreprocessorConfig
from ast_cli.errors import ModelError
from ast_cli.inference import Tagger
from ast_cli.options import TagOptions
from ast_cli.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore:.*no label names")  # these heads have unnamed outputs on purpose
PUBLISHED = {(10, 10, 1024), (16, 16, 1024), (10, 10, 512), (10, 10, 128), (12, 12, 1024), (14, 14, 1024)}
VARIANTS = [(fs, ts, frames) for fs, ts in ((10, 10), (16, 16), (10, 16), (12, 14)) for frames in (128, 512, 768, 1024)]


def authors_model(fs: int, ts: int, frames: int, seed: int = 0):
    """A model as the authors' ASTModel builds it: timm blocks (eps 1e-6), nn.LayerNorm's 1e-5 in mlp_head."""
    config = tiny_config(
        frequency_stride=fs,
        time_stride=ts,
        max_length=frames,
        layer_norm_eps=1e-6,
        classifier_layer_norm_eps=1e-5,
        hidden_size=128,
        num_attention_heads=2,
    )
    return random_model(config, seed=seed)


@pytest.mark.parametrize("fs,ts,frames", VARIANTS, ids=lambda v: str(v))
def test_a_pth_loads_as_itself_or_is_refused_with_what_fits(tmp_path, fs, ts, frames):
    """Each architecture either loads as itself without help (a published setting), or is refused
    with the candidates (its own among them) and loads as itself when told; its logits equal those
    of the Hub-layout export of the same weights, read by transformers."""
    from transformers import ASTForAudioClassification

    reference = authors_model(fs, ts, frames)
    path = tmp_path / "model.pth"
    torch.save(authors_state_dict(reference), path)
    try:
        checkpoint = load(str(path))
        assert (fs, ts, frames) in PUBLISHED, "a non-published architecture was guessed"
    except ModelError as exc:
        assert (fs, ts, frames) not in PUBLISHED
        low = 16 + (reference.config.grid[1] - 1) * ts
        assert f"--fstride {fs} --tstride {ts} --input-tdim {low}" in str(exc) or "more)" in str(exc), str(exc)
        checkpoint = load(str(path), fstride=fs, tstride=ts, input_tdim=frames)
    config = checkpoint.model.config
    assert (config.frequency_stride, config.time_stride, config.max_length) == (fs, ts, frames)
    assert checkpoint.model.blocks[0].norm1.eps == 1e-6 and checkpoint.model.fc_norm.eps == 1e-5
    save(reference, PreprocessorConfig(max_length=frames), tmp_path / "hub")
    hf = ASTForAudioClassification.from_pretrained(tmp_path / "hub").eval()
    x = torch.randn(2, frames, 128)
    with torch.no_grad():
        ours, theirs = checkpoint.model(x), hf(input_values=x).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_a_wrong_architecture_given_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(authors_state_dict(authors_model(16, 16, 768)), path)
    with pytest.raises(
        ModelError, match="strides 10/10 at 768 frames make 12 x 76 patches, the position table holds 384"
    ):
        load(str(path), fstride=10, tstride=10, input_tdim=768)


def test_the_head_layernorm_is_the_authors_nn_layernorm(tmp_path):
    """mlp_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, C)) in ast_models.py: torch's default eps."""
    model = authors_model(10, 10, 128)
    path = tmp_path / "sc.pth"
    torch.save(authors_state_dict(model), path)
    loaded = load(str(path)).model
    mlp_head = torch.nn.Sequential(torch.nn.LayerNorm(128), torch.nn.Linear(128, 5))
    mlp_head[0].load_state_dict(model.fc_norm.state_dict())
    mlp_head[1].load_state_dict(model.head.state_dict())
    pooled = 10 * torch.randn(4, 128)  # large activations: where eps matters most
    with torch.no_grad():
        assert (loaded.forward_head(pooled) - mlp_head(pooled)).abs().max().item() <= 1e-6


def test_published_settings_bring_their_statistics_and_say_so(tmp_path, capsys):
    """An ESC-50-shaped .pth (10/10, 512 frames) is normalised with the ESC-50 statistics, and one line
    on stderr says what it was read as, a warning that -q keeps (nothing in the file says the statistics);
    --norm-stats overrides."""
    path = tmp_path / "esc.pth"
    torch.save(authors_state_dict(authors_model(10, 10, 512)), path)
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"class {i}\n" for i in range(5)))
    audio = tmp_path / "a.wav"
    sf.write(audio, tone(1.0), 16000)
    assert main(["tag", str(audio), "-m", str(path), "--labels", str(labels), "-f", "jsonl"]) == 0
    err = capsys.readouterr().err
    announced = (
        f"ast: warning: {path}: strides 10/10, 512 frames, esc50 statistics: the authors' ESC-50 setting "
        "(--fstride, --tstride, --input-tdim, --norm-stats to say otherwise)\n"
    )
    assert err == announced
    assert main(["tag", str(audio), "-m", str(path), "--labels", str(labels), "-q"]) == 0
    assert capsys.readouterr().err == announced
    assert load(str(path), labels=str(labels)).preprocessor.mean == NORM_STATS["esc50"][0]
    assert (
        load(str(path), labels=str(labels), norm_stats="speechcommands").preprocessor.std
        == NORM_STATS["speechcommands"][1]
    )


def test_norm_stats_on_every_model_command(tiny_model_dir, tmp_path, capsys):
    audio = tmp_path / "a.wav"
    sf.write(audio, tone(1.0), 16000)
    runs = {}
    for stats in ("esc50", f"{NORM_STATS['esc50'][0]},{NORM_STATS['esc50'][1]}", None):
        extra = ["--norm-stats", stats] if stats else []
        assert main(["tag", str(audio), "-m", str(tiny_model_dir), "-f", "jsonl", "--top", "0", *extra]) == 0
        runs[stats] = json.loads(capsys.readouterr().out)["labels"]
    named, numbers, own = runs.values()
    assert named == numbers and named != own
    for command in (
        ["tag", str(audio)],
        ["embed", str(audio), "-o", "-"],
        ["batch", str(audio), "-o", "-"],
        ["export", str(tiny_model_dir), "-o", str(tmp_path / "x.pt")],
    ):
        args = [*command, "--norm-stats", "loud"] + ([] if command[0] == "export" else ["-m", str(tiny_model_dir)])
        assert main(args) == 2
        err = capsys.readouterr().err
        assert (
            "--norm-stats must be MEAN,STD, or one of audioset, esc50, speechcommands" in err and err.count("\n") == 1
        ), err


def test_a_sidecar_says_what_the_weights_do_not_and_hub_export_keeps_it(tmp_path, capsys):
    path = tmp_path / "mine.pth"
    torch.save(authors_state_dict(authors_model(16, 16, 768)), path)
    (tmp_path / "names.csv").write_text("".join(f"sound {i}\n" for i in range(5)))
    sidecar = {"fstride": 16, "tstride": 16, "input_tdim": 768, "mean": -5.5, "std": 4.25, "labels": "names.csv"}
    (tmp_path / "mine.pth.json").write_text(json.dumps(sidecar))
    checkpoint = load(str(path))
    assert checkpoint.model.config.grid == (8, 48) and checkpoint.model.config.labels[0] == "sound 0"
    assert (checkpoint.preprocessor.mean, checkpoint.preprocessor.std) == (-5.5, 4.25)
    assert main(["export", str(path), "--format", "hub", "-o", str(tmp_path / "hub"), "-q"]) == 0
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    pre = json.loads((tmp_path / "hub" / "preprocessor_config.json").read_text())
    assert (config["frequency_stride"], config["time_stride"], config["max_length"]) == (16, 16, 768)
    assert (pre["mean"], pre["std"], config["id2label"]["0"]) == (-5.5, 4.25, "sound 0")
    (tmp_path / "mine.pth.json").write_text(json.dumps({**sidecar, "fstrid": 16}))
    with pytest.raises(ModelError, match="unknown: fstrid"):
        load(str(path))


def authors_wav2fbank(wave: np.ndarray, target_length: int, mean: float, std: float) -> torch.Tensor:
    """src/dataloader.py _wav2fbank (no mixup) + padding + normalisation, transcribed; on one thread, as
    in their DataLoader workers (torch's reductions and matrix products may round differently when
    they split the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _wav2fbank(wave, target_length, mean, std)
    finally:
        torch.set_num_threads(threads)


def _wav2fbank(wave: np.ndarray, target_length: int, mean: float, std: float) -> torch.Tensor:
    waveform = torch.from_numpy(wave).reshape(1, -1)
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )
    p = target_length - fbank.shape[0]
    fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank) if p > 0 else fbank[:target_length]
    return (fbank - mean) / (std * 2)


# --frontend authors makes the authors' float32 operations in their order (the mean of a float32 tensor,
# kaldi.fbank, padding, (x - mean) / (2 std)) on the same samples: the comparisons below are exact. A
# float64 mean cast to float32 differed by up to 1.03e-5 here (9.4e-5 in log-mel, at the log floor).
@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_the_authors_front_end_on_request(tiny_model_dir, tmp_path, offset):
    """--frontend authors equals the authors' _wav2fbank (their per-clip mean removal) bit for bit;
    the default (transformers' ASTFeatureExtractor) differs from it by no more than measured: 0.02 in
    log-mel, 2.2e-3 after normalisation."""
    tagger = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32"))
    wave = (0.02 * tone(1.0, seed=3) + offset).astype(np.float32)  # quiet audio on a DC offset
    path = tmp_path / "dc.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    pre = tagger.preprocessor
    want = authors_wav2fbank(wave, 128, pre.mean, pre.std)
    authors = Tagger(tagger.checkpoint, ModelSpec(device="cpu", precision="fp32", frontend="authors"))
    windows, _ = authors.windows(path, TagOptions())
    assert torch.equal(next(windows).features, want)
    windows, _ = tagger.windows(path, TagOptions())
    assert (next(windows).features - want).abs().max().item() <= 2.2e-3


@pytest.mark.parametrize("seconds", [0.5, 1.28, 1.30125])  # 1.30125 s: the window's 128 frames and 100 samples
def test_the_authors_front_end_takes_the_mean_of_the_whole_clip(tiny_model_dir, tmp_path, seconds):
    """A recording of one window is the authors' clip: its mean is over every sample, the < 160 after
    the last whole frame too (here loud, so leaving them out would show)."""
    spec = ModelSpec(device="cpu", precision="fp32", frontend="authors")
    tagger = Tagger(load(str(tiny_model_dir)), spec)
    wave = (0.02 * tone(seconds, seed=5) + 0.1).astype(np.float32)
    tail = (len(wave) - 400) % 160  # samples after the last frame
    wave[len(wave) - tail :] = 0.9
    path = tmp_path / "clip.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    windows, _ = tagger.windows(path, TagOptions())
    (window,) = list(windows)
    assert torch.equal(window.features, authors_wav2fbank(wave, 128, tagger.preprocessor.mean, tagger.preprocessor.std))


def test_the_authors_front_end_per_window_of_a_long_recording(tiny_model_dir, tmp_path):
    """Sliding windows: each window is the authors' _wav2fbank of its own samples."""
    tagger = Tagger(load(str(tiny_model_dir)), ModelSpec(device="cpu", precision="fp32", frontend="authors"))
    wave = (0.05 * tone(4.0, seed=4) + np.linspace(0, 0.5, 64000)).astype(np.float32)  # a drifting offset
    path = tmp_path / "long.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    windows, _ = tagger.windows(path, TagOptions(hop=0.5))
    pre = tagger.preprocessor
    for window in windows:
        samples = wave[window.start * 160 : window.start * 160 + (window.frames - 1) * 160 + 400]
        assert torch.equal(window.features, authors_wav2fbank(samples, 128, pre.mean, pre.std))

"""Which architecture an authors' .pth is (issue 23): read from every piece of evidence in the file (the
patch kernel, the position table's length and the rows its values show), given values checked against
it, a published setting used only when it alone fits, and announced; otherwise refused with the
candidates. Tiny models in the authors' layout; the architectures of the issue are 16/16 at 1200
frames, 12/12 at 730 and 16/8 at 520, which have the patch counts of ESC-50 and AudioSet 16/16."""

from __future__ import annotations

import json
import logging
import math

import pytest
import soundfile as sf
import torch
from helpers import authors_state_dict, random_model, tiny_config, tone

from ast_cli.authors import GUESS_LEVEL
from ast_cli.checkpoints import load
from ast_cli.cli import main
from ast_cli.errors import ModelError
from ast_cli.evidence import Evidence, candidates, table_rows
from ast_cli.layouts import adapt_pos_embed

pytestmark = pytest.mark.filterwarnings("ignore:.*no label names")  # these heads have unnamed outputs on purpose
PUBLISHED = [(10, 10, 1024), (12, 12, 1024), (14, 14, 1024), (16, 16, 1024), (10, 10, 512), (10, 10, 128)]
UNPUBLISHED = [(16, 16, 1200), (12, 12, 730), (16, 8, 520)]  # 600, 600 and 512 patches: ESC-50's, ESC-50's, 16/16's
SAME_TABLE = {(16, 8, 520): (16, 16, 1024)}  # the same grid (8 x 64): nothing in the file tells them apart


def deit_table(dim: int, seed: int = 0) -> torch.Tensor:
    """(1, 2 + 24*24, D): a smooth 24 x 24 position table, as DeiT's, which ast_models.py starts from."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.arange(24.0).view(1, 24, 1), torch.arange(24.0).view(1, 1, 24)
    u, v, phase = torch.rand(3, dim, 1, 1, generator=g)
    field = 0.05 * torch.cos(math.pi * (u * rows + v * cols) / 24 + 2 * math.pi * phase)  # (D, 24, 24)
    tokens = 0.05 * torch.randn(1, 2, dim, generator=g)
    return torch.cat([tokens, field.permute(1, 2, 0).reshape(1, 24 * 24, dim)], dim=1)


def authors_model(fs: int, ts: int, frames: int, *, trained_table: bool = True):
    """A model as the authors' ASTModel builds it (timm blocks, eps 1e-6; nn.LayerNorm in mlp_head); with
    ``trained_table`` its position table is DeiT's cut or interpolated to its grid as theirs is, plus
    what fine-tuning moves; otherwise random (no rows to see)."""
    config = tiny_config(
        frequency_stride=fs,
        time_stride=ts,
        max_length=frames,
        layer_norm_eps=1e-6,
        classifier_layer_norm_eps=1e-5,
        hidden_size=128,
        num_attention_heads=2,
    )
    model = random_model(config)
    if trained_table:
        with torch.no_grad():
            table = adapt_pos_embed(deit_table(128), (24, 24), config.grid)
            model.pos_embed.copy_(table + 0.002 * torch.randn_like(table))
    return model


def save_pth(model, path) -> str:
    torch.save(authors_state_dict(model), path)
    return str(path)


def assert_same_logits(loaded, reference, frames: int) -> None:
    x = torch.randn(2, frames, 128)
    with torch.no_grad():
        assert (loaded(x) - reference(x)).abs().max().item() <= 1e-5


def candidate_flags(fs: int, ts: int, frames: int) -> str:
    t = (frames - 16) // ts + 1
    return f"--fstride {fs} --tstride {ts} --input-tdim {16 + (t - 1) * ts}"


@pytest.mark.parametrize("arch", PUBLISHED + UNPUBLISHED, ids=str)
def test_a_pth_with_a_trained_table_is_itself_or_refused_with_candidates(tmp_path, caplog, arch):
    """Each loads as itself (a published setting, announced as the guess it is), or is refused naming
    the candidates, its own among them, and then loads as itself from the flags. 16/8 at 520 frames has
    the table of AudioSet 16/16 at 1024 in every respect: it loads as that, announced, and as itself
    when the flags say so."""
    reference = authors_model(*arch)
    path = save_pth(reference, tmp_path / "model.pth")
    caplog.set_level(logging.INFO, logger="ast_cli")
    try:
        checkpoint = load(path)
    except ModelError as exc:
        assert arch not in PUBLISHED
        assert candidate_flags(*arch) in str(exc), str(exc)
        assert "no strides of 1 to 16" not in str(exc)
    else:
        config = checkpoint.model.config
        guessed = (config.frequency_stride, config.time_stride, config.max_length)
        assert guessed == SAME_TABLE.get(arch, arch)
        assert any(
            r.levelno == GUESS_LEVEL and "the authors'" in r.getMessage() and "--fstride" in r.getMessage()
            for r in caplog.records
        ), "a guess must be announced"
        if arch in PUBLISHED:
            assert_same_logits(checkpoint.model, reference, arch[2])
    fs, ts, frames = arch
    told = load(path, fstride=fs, tstride=ts, input_tdim=frames).model
    assert (told.config.frequency_stride, told.config.time_stride, told.config.max_length) == arch
    assert_same_logits(told, reference, frames)


@pytest.mark.parametrize("arch", PUBLISHED + UNPUBLISHED + [(10, 16, 768), (12, 14, 512)], ids=str)
def test_the_rows_of_a_trained_table_are_read_and_a_random_table_shows_none(arch):
    f = (128 - 16) // arch[0] + 1
    t = (arch[2] - 16) // arch[1] + 1
    assert table_rows(authors_model(*arch).pos_embed, f * t, 16) == (f, t)
    assert table_rows(authors_model(*arch, trained_table=False).pos_embed, f * t, 16) is None


@pytest.mark.parametrize("arch", UNPUBLISHED, ids=str)
def test_without_rows_to_read_a_published_guess_is_announced_with_the_flags(tmp_path, caplog, arch):
    """A random table says only its length: the one published setting of that length is used, and the
    announcement names the flags that say otherwise."""
    path = save_pth(authors_model(*arch, trained_table=False), tmp_path / "model.pth")
    caplog.set_level(logging.INFO, logger="ast_cli")
    load(path)
    said = [r.getMessage() for r in caplog.records if r.levelno == GUESS_LEVEL]
    assert any("the authors'" in m and "--fstride, --tstride, --input-tdim" in m for m in said), said


def test_quiet_never_hides_a_guess(tmp_path, capsys):
    path = save_pth(authors_model(16, 16, 1200, trained_table=False), tmp_path / "model.pth")
    audio = tmp_path / "a.wav"
    sf.write(audio, tone(1.0), 16000)
    assert main(["tag", str(audio), "-m", path, "-f", "jsonl", "-q"]) == 0
    assert "the authors' ESC-50 setting" in capsys.readouterr().err


def test_a_given_value_in_conflict_is_named_with_the_evidence(tmp_path):
    path = save_pth(authors_model(16, 16, 1200), tmp_path / "model.pth")  # 600 patches in 8 rows of 75
    with pytest.raises(ModelError) as info:
        load(path, fstride=10, tstride=10, input_tdim=512)  # ESC-50's: 600 patches, but in 12 rows of 50
    message = str(info.value)
    assert (
        "strides 10/10 at 512 frames make 12 x 50 patches, the position table holds 600 patches in 8 rows of 75"
    ) in message
    assert "--fstride 10 makes 12 rows of patches, the position table's values show 8" in message
    assert "--fstride 16 --tstride 16 --input-tdim 1200..1215" in message
    with pytest.raises(ModelError, match="--fstride 7 makes 17 rows of patches"):
        load(path, fstride=7)
    with pytest.raises(ModelError, match="leave --input-tdim open") as info:
        load(path, fstride=16, tstride=16)
    assert "--fstride 16 --tstride 16 --input-tdim 1200..1215" in str(info.value)


def test_a_sidecar_value_in_conflict_is_named_as_the_sidecars(tmp_path):
    path = save_pth(authors_model(16, 16, 1200, trained_table=False), tmp_path / "model.pth")
    (tmp_path / "model.pth.json").write_text(json.dumps({"fstride": 7}))
    with pytest.raises(ModelError, match=r"fstride 7 of model\.pth\.json makes 17 rows of patches") as info:
        load(path)
    assert "no strides of 1 to 16" not in str(info.value)


def test_statistics_without_evidence_are_announced(tmp_path, caplog):
    path = save_pth(authors_model(16, 16, 1200, trained_table=False), tmp_path / "model.pth")
    caplog.set_level(logging.INFO, logger="ast_cli")
    checkpoint = load(path, fstride=16, tstride=16, input_tdim=1200)
    assert (checkpoint.preprocessor.mean, checkpoint.preprocessor.std) == (-4.2677393, 4.5689974)
    said = [r.getMessage() for r in caplog.records if r.levelno == GUESS_LEVEL]
    assert any("audioset statistics" in m and "none is in the file" in m and "--norm-stats" in m for m in said), said
    caplog.clear()
    load(path, fstride=16, tstride=16, input_tdim=1200, norm_stats="esc50")
    assert not [r for r in caplog.records if "statistics" in r.getMessage()]


def test_candidates_cover_every_stride_of_1_to_16_that_fits():
    evidence = Evidence(patch=16, n_patches=600)
    found = {(c.fstride, c.tstride) for c in candidates(evidence)}
    brute = {
        (fs, ts)
        for fs in range(1, 17)
        for ts in range(1, 17)
        for frames in range(16, 2000)
        if ((128 - 16) // fs + 1) * ((frames - 16) // ts + 1) == 600
    }
    assert found == brute
    rows = Evidence(patch=16, n_patches=600, rows=(8, 75))
    assert {(c.fstride, c.tstride) for c in candidates(rows)} == {(fs, ts) for fs in (15, 16) for ts in range(1, 17)}

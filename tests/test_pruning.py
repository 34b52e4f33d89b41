"""Token pruning (``--keep-tokens``, ``AST.keep_rate``): a keep rate of 1 is the model as it was; a
lower one equals a reference written here with plain torch ops (full attention probabilities, top-k
by the class tokens' rows, gather) and keeps the right number of tokens in the right layers; the
command line validates the rate and ``ast batch`` records it."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from helpers import random_model, ray_cluster, run, tiny_config

import ast_cli
from ast_cli.model import AST, kept_tokens, pruning_layers
from ast_cli.options import TagOptions
from ast_cli.sinks import settings_path
from ast_cli.spec import ModelSpec


def deep_model() -> AST:
    """12 layers, as the full-size model (EViT's layers), 64 wide: 12 x 19 = 228 patches."""
    return random_model(tiny_config(num_hidden_layers=12, max_length=200)).eval()


def features(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 200, 128, generator=torch.Generator().manual_seed(1))


def reference_forward(model: AST, x: torch.Tensor, rate: float, layers: tuple[int, ...]) -> torch.Tensor:
    """The pruned model written out: attention as softmax(q k^T / sqrt(d)) v, the class tokens' rows
    of those probabilities averaged (2 rows, all heads) to rank the patch tokens, the top ones kept
    in their order, dropped after the pruning layer's attention."""
    x = model.patch_embed(x)
    B = x.shape[0]
    x = torch.cat([model.cls_token.expand(B, -1, -1), model.dist_token.expand(B, -1, -1), x], 1) + model.pos_embed
    for i, block in enumerate(model.blocks):
        N, C, nh = x.shape[1], x.shape[2], block.attn.n_head
        q, k, v = block.attn.qkv(block.norm1(x)).reshape(B, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
        p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // nh), dim=-1)  # (B, nh, N, N)
        x = x + block.attn.proj((p @ v).transpose(1, 2).reshape(B, N, C))
        if i in layers:
            rank = p[:, :, :2, 2:].mean(dim=(1, 2))  # (B, N - 2)
            keep = math.ceil(rate * (N - 2))
            rows = [torch.cat([x[b, :2], x[b, 2:][rank[b].topk(keep).indices.sort().values]]) for b in range(B)]
            x = torch.stack(rows)
        x = x + block.mlp(block.norm2(x))
    x = model.norm(x)
    return model.head(model.fc_norm((x[:, 0] + x[:, 1]) / 2))


def test_pruning_layers_follow_evit_scaled_to_the_depth():
    assert pruning_layers(12) == (3, 6, 9)  # after the attention of layers 4, 7 and 10, counted from 1
    assert pruning_layers(4) == (0, 1, 2)
    assert pruning_layers(6) == (1, 3, 4)
    assert pruning_layers(24) == (7, 13, 19)
    assert kept_tokens(1212, 0.7) == 849 and kept_tokens(100, 0.7) == 70 and kept_tokens(3, 0.01) == 1


def test_a_keep_rate_of_one_is_the_unpruned_model_exactly():
    model, x = deep_model(), features()
    with torch.inference_mode():
        before = model(x)
        model.keep_rate = 1.0
        assert torch.equal(model(x), before)
        model.keep_rate = 0.5
        assert (model(x) - before).abs().max() > 1e-3  # pruning changes the scores


@pytest.mark.parametrize("rate", [0.7, 0.5, 0.25])
def test_pruned_forward_equals_a_reference_with_full_attention_probabilities(rate):
    model, x = deep_model(), features()
    model.keep_rate = rate
    with torch.inference_mode():
        ours = model(x)
        reference = reference_forward(model, x, rate, (3, 6, 9))
    # fp32: SDPA against softmax(QK^T)V and a 2-row score product against the full one differ by
    # rounding (~1e-7 relative a product: ~4e-7 here over 12 layers); a token chosen differently moves them ~1e-1
    assert (ours - reference).abs().max() < 1e-5 * max(1.0, reference.abs().max().item())


def test_the_right_number_of_tokens_survives_each_pruning_layer():
    model, x = deep_model(), features(1)
    model.keep_rate = 0.5
    seen: list[tuple[int, int]] = []  # (tokens into the block, tokens into its MLP)
    for block in model.blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append((args[0].shape[1], -1)))
        block.mlp.register_forward_pre_hook(lambda _, args: seen.append((seen.pop()[0], args[0].shape[1])))
    with torch.inference_mode():
        model(x)
    n = [228, 114, 57, 29]  # 228 patches, halved (rounded up) in layers 3, 6, 9 (0-based)
    expected = [(n[0] + 2,) * 2] * 3 + [(n[0] + 2, n[1] + 2)] + [(n[1] + 2,) * 2] * 2 + [(n[1] + 2, n[2] + 2)]
    expected += [(n[2] + 2,) * 2] * 2 + [(n[2] + 2, n[3] + 2)] + [(n[3] + 2,) * 2] * 2
    assert seen == expected


def test_the_tagger_takes_the_rate_from_its_spec(tiny_model_dir, wav):
    path = wav(1.0)
    plain, one, half = (
        ast_cli.load_model(str(tiny_model_dir), device="cpu", precision="fp32", keep_tokens=k) for k in (None, 1.0, 0.5)
    )
    assert half.model.keep_rate == 0.5 and one.model.keep_rate == 1.0
    a, b, c = (t.run(path, TagOptions()).scores[0] for t in (plain, one, half))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ModelSpec(keep_tokens=0.3).portable().keep_tokens == 0.3  # what Ray's actors load


@pytest.mark.parametrize("bad", ["0", "-0.5", "1.5", "nan"])
def test_the_flag_refuses_a_rate_outside_zero_to_one(capsys, tiny_model_dir, wav, bad):
    code, out, err = run(capsys, "tag", wav(1.0), "-m", tiny_model_dir, "--keep-tokens", bad)
    assert code == 2 and out == ""
    assert "--keep-tokens must be a fraction in (0, 1]" in err and len(err.strip().splitlines()) == 1


def labels_of(jsonl: str) -> list[list[tuple[str, float]]]:
    return [[(x["label"], round(x["score"], 4)) for x in json.loads(line)["labels"]] for line in jsonl.splitlines()]


def test_tag_and_batch_prune_alike_and_resume_refuses_a_change_of_the_rate(capsys, tiny_model_dir, wav, tmp_path):
    files = [wav(1.0, name="a.wav"), wav(2.5, name="b.wav", freq=880.0)]
    out = tmp_path / "t.jsonl"
    common = [*files, "-o", out, "-m", tiny_model_dir, "--precision", "fp32", "--workers", "0", "-q", "-k", "0"]
    code, _, err = run(capsys, "batch", *common, "--keep-tokens", "0.5")
    assert code == 0, err
    tag = ["tag", *files, "-m", tiny_model_dir, "--precision", "fp32", "-k", "0", "-f", "jsonl"]
    (code, tagged, _), (code_pruned, pruned, _) = run(capsys, *tag), run(capsys, *tag, "--keep-tokens", "0.5")
    assert code == code_pruned == 0
    assert labels_of(out.read_text()) == labels_of(pruned) != labels_of(tagged)
    assert json.loads(settings_path(str(out), "jsonl").read_text())["settings"]["keep_tokens"] == 0.5
    code, _, err = run(capsys, "batch", *common, "--resume")
    assert code == 2 and "keep_tokens 0.5 -> None" in err
    code, _, err = run(capsys, "batch", *common, "--resume", "--keep-tokens", "0.7")
    assert code == 2 and "keep_tokens 0.5 -> 0.7" in err


@pytest.mark.slow
@pytest.mark.ray
def test_ray_actors_prune_as_the_local_engine_does(tiny_model_dir, wav, tmp_path, capsys):
    pytest.importorskip("ray")
    from test_ray import ROOT, ray_batch

    files = [wav(1.0, name="a.wav"), wav(2.5, name="b.wav", freq=880.0)]
    common = ["-m", tiny_model_dir, "--top", "0", "--precision", "fp32", "--keep-tokens", "0.5"]
    assert run(capsys, "batch", *files, "-o", tmp_path / "local.jsonl", *common, "-q")[0] == 0
    with ray_cluster(nodes=1, cpus=1) as cluster:
        done = subprocess.run(
            ray_batch(cluster, *files, "-o", tmp_path / "ray.jsonl", *common),
            cwd=ROOT,
            env=cluster[1],
            capture_output=True,
            text=True,
            timeout=900,  # a hang guard: a Ray run on a loaded 2-core machine has taken more than 300 s
        )
    assert done.returncode == 0, done.stderr
    local, ray = (
        [json.loads(line) for line in (tmp_path / n).read_text().splitlines()] for n in ("local.jsonl", "ray.jsonl")
    )
    for a, b in zip(local, ray, strict=True):
        sa, sb = {x["index"]: x["score"] for x in a["labels"]}, {x["index"]: x["score"] for x in b["labels"]}
        assert sa.keys() == sb.keys() and max(abs(sa[k] - sb[k]) for k in sa) <= 2e-6
    assert json.loads(settings_path(str(tmp_path / "ray.jsonl"), "jsonl").read_text())["settings"]["keep_tokens"] == 0.5

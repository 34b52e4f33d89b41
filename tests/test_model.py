"""Logits equal transformers' ASTForAudioClassification to <= 1e-4 in fp32."""

from __future__ import annotations

import pytest
import torch
from transformers import ASTConfig as HFConfig
from transformers import ASTForAudioClassification

from ast_cli.config import ASTConfig
from ast_cli.layouts import hf_to_native
from ast_cli.model import AST


def hf_and_ours(seed: int, **config):
    """A transformers model with random weights and ours holding the same weights."""
    torch.manual_seed(seed)
    hf = ASTForAudioClassification(HFConfig(**config)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours_config = ASTConfig.from_dict(hf.config.to_dict())
    ours = AST(ours_config).eval()
    ours.load_state_dict(hf_to_native(hf.state_dict()), strict=True)
    return hf, ours


def max_diff(hf, ours, frames: int, batch: int = 2) -> float:
    torch.manual_seed(123)
    x = torch.randn(batch, frames, 128)
    with torch.inference_mode():
        return (hf(x).logits - ours(x)).abs().max().item()


@pytest.mark.slow
def test_full_size_default_config_matches_transformers():
    hf, ours = hf_and_ours(0, num_labels=527)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    assert 86_000_000 < sum(p.numel() for p in ours.parameters()) < 88_000_000  # ~86.6 M
    assert ours.config.grid == (12, 101) and ours.pos_embed.shape == (1, 1214, 768)
    assert max_diff(hf, ours, 1024) <= 1e-4


@pytest.mark.parametrize(
    "config",
    [
        dict(
            hidden_size=96,
            num_hidden_layers=3,
            num_attention_heads=6,
            intermediate_size=200,
            frequency_stride=12,
            time_stride=14,
            max_length=300,
            num_labels=7,
        ),
        dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            frequency_stride=16,
            time_stride=16,
            max_length=128,
            num_labels=35,
            hidden_act="gelu_new",
            qkv_bias=False,
        ),
    ],
)
def test_small_non_default_configs_match_transformers(config):
    hf, ours = hf_and_ours(1, **config)
    assert max_diff(hf, ours, config["max_length"], batch=3) <= 1e-4


def test_embedding_is_the_mean_of_the_two_tokens():
    hf, ours = hf_and_ours(
        2, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_length=64, num_labels=3
    )
    x = torch.randn(2, 64, 128)
    with torch.inference_mode():
        pooled = hf.audio_spectrogram_transformer(x).pooler_output
        assert (pooled - ours.forward_features(x)).abs().max().item() <= 1e-5


def test_reset_classifier_changes_only_the_head():
    ours = AST(
        ASTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_length=64)
    )
    norm = ours.fc_norm.weight.clone()
    ours.reset_classifier(11)
    assert ours(torch.randn(1, 64, 128)).shape == (1, 11)
    assert torch.equal(norm, ours.fc_norm.weight)

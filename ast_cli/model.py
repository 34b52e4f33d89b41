"""The Audio Spectrogram Transformer network (Gong, Chung & Glass, Interspeech 2021), nothing else.

A DeiT-style ViT over the log-mel spectrogram: overlapping 16x16 patches, cls + distillation
tokens, learned position embeddings, pre-norm blocks, and a LayerNorm + Linear head on the mean of
the two token outputs. Parameter names follow the authors' timm-based code (``blocks.N.attn.qkv``);
``layouts.py`` maps transformers' and the authors' key names onto them.

Token pruning (opt-in, ``AST.keep_rate`` < 1; a setting of the run, not of ``config.json``), as EViT
(Liang et al., ICLR 2022) without its fusion of the dropped tokens: in the blocks ``pruning_layers``
names, after their attention, only the ``kept_tokens`` patch tokens the class tokens attend to most
go on; the cls and distillation tokens always do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ASTConfig

_ACT: dict[str, Callable[[], nn.Module]] = {  # transformers' hidden_act names
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}


class PatchEmbed(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.proj = nn.Conv2d(
            1,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=(config.frequency_stride, config.time_stride),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).transpose(2, 3)  # (B, T, F) -> (B, 1, F, T): frequency is the image height
        x = self.proj(x)  # (B, D, f, t)
        return x.flatten(2).transpose(1, 2)  # (B, f*t, D), frequency-major as in the reference


class Attention(nn.Module):
    compute_dtype: torch.dtype | None = None  # None: the inputs' dtype; float32: attention in fp32 beside bf16 Linears

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.n_head = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(*self.project(x))

    def forward_with_class_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and (B, N-2) the attention the two class tokens pay each patch token in this layer,
        averaged over the two and over the heads: the softmax rows of the class queries, from the same q
        and k, in fp32 (2 queries x N keys a head: SDPA gives no weights)."""
        q, k, v = self.project(x)
        scores = q[:, :, :2].float() @ k.float().transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, nh, 2, N)
        return self.attend(q, k, v), scores.softmax(-1).mean((1, 2))[:, 2:]

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, C) -> q, k, v, each (B, nh, N, hs)."""
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # (3, B, nh, N, hs)
        q, k, v = qkv.unbind(0)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, nh, N, hs = q.shape
        C = nh * hs
        dropout = self.dropout if self.training else 0.0
        if self.compute_dtype is None or q.dtype == self.compute_dtype:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            with torch.autocast(q.device.type, enabled=False):
                dtype = self.compute_dtype
                x = F.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), dropout_p=dropout).to(q.dtype)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj(x)


class MLP(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACT[config.hidden_act]()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        """``keep``: prune in this block, after its attention, to that many patch tokens (None: keep all)."""
        if keep is None:
            x = x + self.drop(self.attn(self.norm1(x)))
        else:
            out, attention = self.attn.forward_with_class_attention(self.norm1(x))
            x = prune(x + self.drop(out), attention, keep)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x


def prune(x: torch.Tensor, attention: torch.Tensor, keep: int) -> torch.Tensor:
    """(B, 2+N, D) tokens -> (B, 2+keep, D): the class tokens and the ``keep`` patch tokens of the
    highest ``attention`` (B, N), in their order."""
    index = attention.topk(keep, dim=1).indices.sort(dim=1).values  # (B, keep)
    patches = x[:, 2:].gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :2], patches], dim=1)


EVIT_LAYERS = (4, 7, 10)  # EViT's pruning layers in DeiT's 12 (1-based): in AST too, after their attention


def pruning_layers(depth: int) -> tuple[int, ...]:
    """The 0-based blocks that prune in a model of ``depth`` blocks: EViT's 4th, 7th and 10th of 12 at
    the same fractions of the depth (layer round(depth x n / 12), halves up), repeats merged. 12: 3, 6,
    9; 4: 0, 1, 2; 6: 1, 3, 4."""
    return tuple(sorted({math.floor(depth * n / 12 + 0.5) - 1 for n in EVIT_LAYERS} - {-1}))


def kept_tokens(patches: int, rate: float) -> int:
    """Patch tokens a pruning layer keeps of ``patches``: ceil(rate x patches), at least one."""
    return max(1, math.ceil(rate * patches - 1e-9))  # - 1e-9: 0.7 x 100 is 70.00000000000001 in binary floats


class AST(nn.Module):
    keep_rate: float = 1.0  # token pruning: the fraction of patch tokens each pruning layer keeps (1: none)

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 2, D))
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.fc_norm = nn.LayerNorm(D, eps=config.head_norm_eps)  # the head's LayerNorm (mlp_head.0)
        self.head = nn.Linear(D, config.num_labels)  # mlp_head.1
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal init as transformers does (std ``initializer_range``), for random and new heads."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=std)

    def forward_features(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) normalised log-mel -> (B, D) pooled embedding: mean of the cls and distillation outputs.
        ``pos_embed`` (1, N+2, D): the position table of a shorter input's N patches (None: the model's own)."""
        x = self.patch_embed(x)  # (B, N, D)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.dist_token.expand(x.shape[0], -1, -1)], 1)
        pos = self.pos_embed if pos_embed is None else pos_embed
        x = self.pos_drop(torch.cat([tokens, x], dim=1) + pos)  # (B, N+2, D)
        pruning = pruning_layers(len(self.blocks)) if self.keep_rate < 1 else ()
        for i, block in enumerate(self.blocks):
            x = block(x, kept_tokens(x.shape[1] - 2, self.keep_rate) if i in pruning else None)
        x = self.norm(x)
        return (x[:, 0] + x[:, 1]) / 2

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_norm(pooled))

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) -> (B, num_labels) logits."""
        return self.forward_head(self.forward_features(x, pos_embed))

    def reset_classifier(self, num_labels: int) -> None:
        """A fresh head of ``num_labels`` outputs (fine-tuning); the head's LayerNorm is kept."""
        self.head = nn.Linear(self.config.hidden_size, num_labels).to(self.head.weight)
        nn.init.trunc_normal_(self.head.weight, std=self.config.initializer_range)
        nn.init.zeros_(self.head.bias)

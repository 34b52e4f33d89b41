"""The floor of one window at each part's own shapes: what the hardware gives each kind of work.

    python benchmarks/shape_floor.py [--rounds 5]

`limit.py` states the floor as the window's FLOPs at the bf16 rate of the Linear layers' shapes.
Attention's matrix products have other shapes (12 heads x 1214 tokens x 64: K = 64 for QK^T), and
the elementwise ops (LayerNorm, GELU, residual adds, casts, addmm's bias fill) have no FLOPs in that
floor but cost memory traffic. This measures, on this machine: QK^T and PV as batched matmuls into
preallocated outputs (no softmax), torch's softmax on in-cache rows, and each elementwise op alone at
its tensor size against the bandwidth of a large tensor copy. `attention_kernels.py` prints it too.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, machine  # noqa: E402
from limit import HEADS, LAYERS, MLP, TOKENS, D, best_seconds  # noqa: E402


@dataclass(frozen=True)
class Dims:
    tokens: int
    width: int
    heads: int
    mlp: int
    layers: int

    @property
    def head(self) -> int:
        return self.width // self.heads

    @property
    def linear_flops(self) -> int:
        n, d = self.tokens, self.width
        return self.layers * 2 * n * (d * 3 * d + d * d + 2 * d * self.mlp)

    @property
    def attention_flops(self) -> int:
        return self.layers * 4 * self.heads * self.tokens**2 * self.head  # QK^T and PV


def linear_rate(dims: Dims, rounds: int) -> float:
    """bf16 TFLOP/s of one block's four Linear layers (weights stored (out, in) as nn.Linear holds them)."""
    n, d, m = dims.tokens, dims.width, dims.mlp
    shapes = [(d, 3 * d), (d, d), (d, m), (m, d)]
    mats = [(torch.randn(n, k, dtype=torch.bfloat16), torch.randn(o, k, dtype=torch.bfloat16)) for k, o in shapes]
    seconds = best_seconds(lambda: [F.linear(a, w) for a, w in mats], rounds)
    return dims.linear_flops / dims.layers / seconds / 1e12


def attention_parts(dims: Dims, rounds: int) -> dict[str, float]:
    """Seconds a layer: QK^T and PV as bmm into preallocated outputs (a fresh 35 MB output is
    mapped and faulted in on every call), and torch's softmax on 128 query rows at a time (in cache)."""
    h, n, e = dims.heads, dims.tokens, dims.head
    q, k, v = (torch.randn(h, n, e, dtype=torch.bfloat16) for _ in range(3))
    kt, scores = k.transpose(1, 2).contiguous(), torch.empty(h, n, n, dtype=torch.bfloat16)
    out, rows = torch.empty(h, n, e, dtype=torch.bfloat16), torch.randn(h, min(128, n), n)
    chunks = -(-n // rows.shape[1])
    return {
        "QK^T": best_seconds(lambda: torch.bmm(q, kt, out=scores), rounds),
        "PV": best_seconds(lambda: torch.bmm(scores, v, out=out), rounds),
        "QK^T, fresh output": best_seconds(lambda: torch.bmm(q, kt), rounds),
        "softmax": chunks * best_seconds(lambda: torch.softmax(rows, -1), rounds),
    }


def copy_bandwidth(rounds: int, mib: int = 256) -> float:
    """GB/s (bytes read + written) of copying a large fp32 tensor: what memory-bound ops can reach."""
    src = torch.empty(mib << 18)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_seconds(lambda: dst.copy_(src), rounds) / 1e9


def elementwise_parts(dims: Dims, rounds: int) -> dict[str, tuple[int, float, int]]:
    """Each elementwise op of a window alone at its size: (calls a window, seconds a call, bytes a call)."""
    n, d, m, layers = dims.tokens, dims.width, dims.mlp, dims.layers
    x = torch.randn(1, n, d)
    xb, hb = x.bfloat16(), torch.randn(1, n, m, dtype=torch.bfloat16)
    weight, bias = torch.ones(d), torch.zeros(d)
    out = torch.empty(n, m, dtype=torch.bfloat16)
    fill_bias = torch.zeros(m, dtype=torch.bfloat16)
    t = lambda fn: best_seconds(fn, rounds)  # noqa: E731
    return {
        "LayerNorm (fp32)": (2 * layers + 1, t(lambda: F.layer_norm(x, (d,), weight, bias)), 8 * n * d),
        "GELU (bf16)": (layers, t(lambda: F.gelu(hb)), 4 * n * m),
        "residual add (fp32 + bf16)": (2 * layers, t(lambda: x + xb), 10 * n * d),
        "cast fp32 -> bf16 (Linear inputs)": (2 * layers, t(lambda: x.to(torch.bfloat16)), 6 * n * d),
        "bias fill of addmm (fc1 size)": (layers, t(lambda: out.copy_(fill_bias.expand(n, m))), 2 * n * m),
        "attention output transpose": (
            layers,
            t(lambda: xb.view(1, n, dims.heads, -1).transpose(1, 2).clone()),
            4 * n * d,
        ),
    }


def print_floor(dims: Dims, rate: float, rounds: int) -> float:
    floor = (dims.linear_flops + dims.attention_flops) / rate / 1e12
    print(
        f"Linear layers' shapes, bf16: {rate:.3f} TFLOP/s. One window: {dims.linear_flops / 1e9:.0f} GFLOP Linear + "
        f"{dims.attention_flops / 1e9:.0f} GFLOP attention; floor at that rate {floor:.3f} s\n"
    )
    parts, per_layer = attention_parts(dims, rounds), dims.attention_flops / dims.layers / 2
    bandwidth = copy_bandwidth(rounds)
    print("| shape-aware floor: part, at its own shape | s a window | rate |\n|---|---|---|")
    print(f"| Linear layers (bf16 GEMM) | {dims.linear_flops / rate / 1e12:.4f} | {rate:.3f} TFLOP/s |")
    for name in ("QK^T", "PV", "QK^T, fresh output"):
        seconds = parts[name] * dims.layers
        print(f"| attention {name} (bmm, bf16) | {seconds:.4f} | {per_layer / parts[name] / 1e12:.3f} TFLOP/s |")
    print(f"| softmax (torch, fp32, 128 rows in cache) | {parts['softmax'] * dims.layers:.4f} | |")
    print(f"| large copy (256 MiB fp32) | | {bandwidth:.1f} GB/s |\n")
    print("| elementwise op, alone at its size | calls | s a window | GB/s | s at copy bandwidth |")
    print("|---|---|---|---|---|")
    for name, (calls, seconds, size) in elementwise_parts(dims, rounds).items():
        gbs, bound = size / seconds / 1e9, calls * size / bandwidth / 1e9
        print(f"| {name} | {calls} | {calls * seconds:.4f} | {gbs:.1f} | {bound:.4f} |")
    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from ast_cli import allocator

    allocator.tune()  # as the ast process does
    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    dims = Dims(TOKENS, D, HEADS, MLP, LAYERS)
    print_floor(dims, linear_rate(dims, args.rounds), args.rounds)


if __name__ == "__main__":
    main()

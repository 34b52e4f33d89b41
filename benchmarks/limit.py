"""How close one window of the full-size model runs to what this CPU can do, in one run.

    python benchmarks/limit.py [--rounds 5]

1. The machine: matrix-product throughput (TFLOP/s) in fp32 and bf16 at the shapes of the model's
   Linear layers (1214 tokens x 768 / 2304 / 3072), best of the rounds.
2. The floor: the FLOPs of one 1024-frame window (Linear layers and attention counted apart) at that
   throughput.
3. Where a window's time goes in the default path (`Tagger.logits`, one window), from torch's
   profiler: each kind of op, its time, and for the matrix products and attention the TFLOP/s they
   reach.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, git_revision, machine

TOKENS, D, MLP, LAYERS, HEADS = 1214, 768, 3072, 12, 12
LINEAR_SHAPES = [
    (TOKENS, D, 3 * D),
    (TOKENS, D, D),
    (TOKENS, D, MLP),
    (TOKENS, MLP, D),
]  # qkv, proj, fc1, fc2 (M, K, N)


def best_seconds(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_tflops(dtype: torch.dtype, rounds: int) -> float:
    """Throughput of the four Linear shapes of a block, run back to back as the model runs them."""
    mats = [(torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for m, k, n in LINEAR_SHAPES]
    flops = sum(2 * m * k * n for m, k, n in LINEAR_SHAPES)
    seconds = best_seconds(lambda: [a @ b for a, b in mats], rounds)
    return flops / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import ast_cli
    from ast_cli import allocator

    allocator.tune()  # as the ast process does
    from torch.profiler import ProfilerActivity, profile

    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    fp32, bf16 = matmul_tflops(torch.float32, args.rounds), matmul_tflops(torch.bfloat16, args.rounds)
    linear_flops = LAYERS * sum(2 * m * k * n for m, k, n in LINEAR_SHAPES)
    attention_flops = LAYERS * 2 * (2 * HEADS * TOKENS * TOKENS * (D // HEADS))  # QK^T and PV
    total = linear_flops + attention_flops
    print(f"matrix products at the model's shapes: fp32 {fp32:.3f} TFLOP/s, bf16 {bf16:.3f} TFLOP/s")
    print(
        f"one window: {linear_flops / 1e9:.0f} GFLOP in Linear layers + {attention_flops / 1e9:.0f} GFLOP in attention "
        f"= {total / 1e12:.3f} TFLOP; floor at the bf16 rate {total / bf16 / 1e12:.3f} s "
        f"(fp32 rate: {total / fp32 / 1e12:.3f} s)\n"
    )

    tagger = ast_cli.load_model(str(full_size_checkpoint()), device="cpu", precision="auto")
    x = torch.randn(1, tagger.window_frames, 128)
    window = best_seconds(lambda: tagger.logits(x), args.rounds)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tagger.logits(x)
    ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    profiled = sum(ops.values())
    linear = ops.get("aten::addmm", 0.0) + ops.get("aten::mm", 0.0)
    attention = sum(v for k, v in ops.items() if "scaled_dot_product" in k)
    print(
        f"default path ({tagger.precision}): {window:.3f} s a window, best of {args.rounds}; the floor "
        f"is {total / bf16 / 1e12 / window:.0%} of it\n"
    )
    print("| op | s (profiled window) | share | TFLOP/s |\n|---|---|---|---|")
    rows = [("Linear layers (addmm)", linear, linear_flops), ("attention (SDPA)", attention, attention_flops)]
    rows += [
        (k, v, None)
        for k, v in sorted(ops.items(), key=lambda kv: -kv[1])
        if v > 0.005 * profiled and "addmm" not in k and "scaled_dot" not in k
    ]
    for name, seconds, flops in rows:
        rate = f"{flops / seconds / 1e12:.3f}" if flops and seconds else ""
        print(f"| {name} | {seconds:.3f} | {seconds / profiled:.0%} | {rate} |")


if __name__ == "__main__":
    main()

"""Which precision attention should run in beside bf16 Linear layers, measured on this CPU, in one run.

    python benchmarks/attention_precision.py [--rounds 3]

One 1024-frame window of the full-size model (`Tagger.logits`, as `ast tag` runs it) with the
Linear layers in fp32 or bf16 and attention (scaled_dot_product_attention) in fp32 or bf16, every
combination; each row gives seconds a window (best of the rounds, combinations interleaved so load
hits them alike), the ratio to this machine's floor (the window's FLOPs at the bf16, else fp32,
matrix-product rate measured at the model's shapes in the same run), and the largest score
difference from all-fp32. Also the attention op alone at the model's shape (1 x 12 heads x 1214
tokens x 64) in each precision, in TFLOP/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, git_revision, machine  # noqa: E402
from limit import LAYERS, LINEAR_SHAPES, TOKENS, best_seconds, matmul_tflops  # noqa: E402

HEADS, HEAD = 12, 64


def attention_tflops(dtype: torch.dtype, rounds: int) -> float:
    q, k, v = (torch.randn(1, HEADS, TOKENS, HEAD, dtype=dtype) for _ in range(3))
    seconds = best_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), rounds)
    return 4 * HEADS * TOKENS * TOKENS * HEAD / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from ast_cli import allocator

    allocator.tune()
    from ast_cli.inference import load_model
    from ast_cli.model import Attention

    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    fp32_rate, bf16_rate = matmul_tflops(torch.float32, 5), matmul_tflops(torch.bfloat16, 5)
    flops = LAYERS * (sum(2 * m * k * n for m, k, n in LINEAR_SHAPES) + 4 * TOKENS * TOKENS * HEAD * HEADS)
    print(
        f"matrix products at the model's shapes: fp32 {fp32_rate:.3f} TFLOP/s, bf16 {bf16_rate:.3f} TFLOP/s; "
        f"attention alone: fp32 {attention_tflops(torch.float32, 5):.3f}, bf16 "
        f"{attention_tflops(torch.bfloat16, 5):.3f} TFLOP/s"
    )
    floor = flops / max(fp32_rate, bf16_rate) / 1e12
    model = full_size_checkpoint()
    features = torch.randn(1, 1024, 128)
    taggers = {linear: load_model(str(model), device="cpu", precision=linear) for linear in ("fp32", "bf16")}
    combos = [("fp32", "fp32"), ("bf16", "bf16"), ("bf16", "fp32"), ("fp32", "bf16")]
    times: dict[tuple[str, str], list[float]] = {c: [] for c in combos}
    scores: dict[tuple[str, str], torch.Tensor] = {}
    for _ in range(args.rounds + 1):  # the first round warms up
        for linear, attention in combos:
            tagger = taggers[linear]
            for module in tagger.model.modules():
                if isinstance(module, Attention):
                    module.compute_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[attention]
            start = time.perf_counter()
            if linear == "fp32" and attention == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
                    logits = tagger.logits(features)
            else:
                logits = tagger.logits(features)
            times[(linear, attention)].append(time.perf_counter() - start)
            scores[(linear, attention)] = torch.sigmoid(logits.float())
    print(f"\nfloor: {floor:.3f} s a window ({flops / 1e12:.3f} TFLOP at {max(fp32_rate, bf16_rate):.3f} TFLOP/s)\n")
    print("| Linear layers | attention | s a window | x floor | max score diff from fp32 |")
    print("|---|---|---|---|---|")
    for combo in combos:
        best = min(times[combo][1:])
        diff = float((scores[combo] - scores[("fp32", "fp32")]).abs().max())
        print(f"| {combo[0]} | {combo[1]} | {best:.3f} | {best / floor:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

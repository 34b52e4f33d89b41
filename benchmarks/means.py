"""The means of speeding up the model on this CPU, each against the default path, in one run.

    python benchmarks/means.py [--rounds 3] [--compile]

Seconds per window of the full-size model (random weights, 1024 frames) through `Tagger.logits`,
one window a call as `ast tag` of a 10-s clip makes it. The default path (inference_mode, SDPA,
bf16 autocast with the Linear/Conv weights cast once where the CPU has native bf16, torch's default
thread count) against one change at a time: precision (fp32, int8), weights left in fp32 under autocast,
intra-op threads, batch size, the attention kernel, and with --compile torch.compile (its compile
time is printed, and after how many windows it pays back). Variants run interleaved in rounds; best
of the rounds. Also the first call of a fresh bf16 model (oneDNN kernel selection) against the next.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, git_revision, machine


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling on 2 cores)")
    args = parser.parse_args()
    import ast_cli
    from ast_cli import allocator
    from ast_cli.devices import autocast

    allocator.tune()  # as the ast process does
    from torch.nn.attention import SDPBackend, sdpa_kernel

    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    model_dir = str(full_size_checkpoint())
    bf16 = ast_cli.load_model(model_dir, device="cpu", precision="auto")
    fp32 = ast_cli.load_model(model_dir, device="cpu", precision="fp32")
    int8 = ast_cli.load_model(model_dir, device="cpu", precision="int8")
    uncast = ast_cli.load_model(model_dir, device="cpu", precision="fp32")
    uncast.dtype = bf16.dtype  # autocast as the default, weights not cast beforehand
    torch.manual_seed(0)
    x = torch.randn(8, bf16.window_frames, 128)

    first = timed(lambda: bf16.logits(x[:1]))
    second = timed(lambda: bf16.logits(x[:1]))
    print(f"first call of a fresh {bf16.precision} model: {first:.2f} s, second: {second:.2f} s (batch 1)\n")

    threads = torch.get_num_threads()

    def with_threads(n, fn):
        def run():
            torch.set_num_threads(n)
            try:
                fn()
            finally:
                torch.set_num_threads(threads)

        return run

    def math_attention():
        with sdpa_kernel([SDPBackend.MATH]):
            bf16.logits(x[:1])

    def no_grad_only():  # what inference_mode adds over no_grad
        with torch.no_grad(), autocast(bf16.device, bf16.dtype):
            bf16.model(x[:1])

    variants = {  # name -> (windows, callable); one window a call, as `ast tag` of a clip
        f"default ({bf16.precision}, {threads} threads, batch 1)": (1, lambda: bf16.logits(x[:1])),
        "fp32": (1, lambda: fp32.logits(x[:1])),
        "int8 (dynamic quantization, opt-in)": (1, lambda: int8.logits(x[:1])),
        f"{bf16.precision} autocast, weights left fp32": (1, lambda: uncast.logits(x[:1])),
        "1 thread": (1, with_threads(1, lambda: bf16.logits(x[:1]))),
        "batch 4 (per window)": (4, lambda: bf16.logits(x[:4])),
        "batch 8 (per window; the --batch-size default on a GPU)": (8, lambda: bf16.logits(x[:8])),
        "math attention instead of SDPA's flash kernel": (1, math_attention),
        "no_grad instead of inference_mode": (1, no_grad_only),
    }
    if args.compile:
        compiled = torch.compile(bf16.model)

        def run_compiled():
            with torch.inference_mode(), autocast(bf16.device, bf16.dtype):
                compiled(x[:1])

        compile_s = timed(run_compiled)
        variants["torch.compile (after compiling)"] = (1, run_compiled)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.rounds):
        for name, (windows, fn) in variants.items():
            best[name] = min(best[name], timed(fn) / windows)
    default = best[next(iter(variants))]
    print("| variant | s per window | x default speed |\n|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.3f} | {default / seconds:.2f} |")
    if args.compile:
        saved = default - best["torch.compile (after compiling)"]
        pays = f"pays back after {compile_s / saved:.0f} windows" if saved > 0 else "never pays back"
        print(f"\ntorch.compile: {compile_s:.0f} s to compile and run the first batch; {pays}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

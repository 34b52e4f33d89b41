"""Today's path against other runtimes on the same exported model, one window at a time, in one run.

    python benchmarks/runtimes.py [--rounds 5] [--threads N] [--work DIR]

Each runtime runs one 1024-frame window (batch 1) of the full-size model with random weights
(`common.full_size_checkpoint`; speed does not depend on the weights' values):
- `ast` as `ast batch` runs it (`Tagger.logits`, `--precision auto`), and its opt-in int8;
- ONNX Runtime on the graph `ast export --format onnx` writes (fp32), and on that graph with its
  Linear layers dynamically quantized to int8 (`onnxruntime.quantization.quantize_dynamic`);
- OpenVINO (when installed) on the same ONNX graph, with inference precision hints f32 and bf16.

All get the same number of threads. After one warm-up call each, the runtimes take turns, one
window each a round, so load from other processes hits them alike; the table gives the best and
the median of the rounds, the ratio to the floor (the window's 0.261 TFLOP at the bf16
matrix-product rate measured at the model's shapes in this run, `limit.py`), the speed relative to
`ast`'s default, and the largest score difference from `ast` in fp32 on the same input (a random
model: a check that each runtime computes the same function, not a measure of label agreement).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, git_revision, machine  # noqa: E402
from limit import LAYERS, LINEAR_SHAPES, TOKENS, matmul_tflops  # noqa: E402

HEADS, HEAD = 12, 64
Run = Callable[[np.ndarray], np.ndarray]  # (1, T, F) features -> (1, C) scores


def ast_runs(model_dir: Path) -> dict[str, Run]:
    """`ast`'s own path: what `ast batch` calls for each window (sigmoid scores, as the export's graph)."""
    from ast_cli.inference import load_model

    runs: dict[str, Run] = {}
    for precision in ("auto", "fp32", "int8"):
        tagger = load_model(str(model_dir), device="cpu", precision=precision)
        name = f"ast, {tagger.precision}" + (" (default: auto)" if precision == "auto" else "")
        runs[name] = lambda x, t=tagger: t.scores(torch.from_numpy(x)).numpy()
    return runs


def onnx_files(model_dir: Path, work: Path) -> tuple[Path, Path | None]:
    """The fp32 graph (as `ast export` writes it) and its int8 dynamic quantization, made once per folder."""
    from ast_cli.export import export
    from ast_cli.options import ExportOptions

    fp32, int8 = work / "ast-fp32.onnx", work / "ast-int8.onnx"
    if not fp32.exists():
        export(str(model_dir), fp32, ExportOptions(fmt="onnx", precision="fp32", verify=False))
    if not int8.exists():
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        except Exception as exc:  # a quantizer that cannot handle the graph: say so and go on
            print(f"onnxruntime int8: not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
            return fp32, None
    return fp32, int8


def onnxruntime_runs(fp32: Path, int8: Path | None, n_threads: int) -> dict[str, Run]:
    import onnxruntime as ort

    runs: dict[str, Run] = {}
    for name, path in (("ONNX Runtime, fp32", fp32), ("ONNX Runtime, int8 (dynamic)", int8)):
        if path is None:
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = n_threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        runs[name] = lambda x, s=session: s.run(None, {"features": x})[0]
    return runs


def openvino_runs(fp32: Path, n_threads: int) -> dict[str, Run]:
    if importlib.util.find_spec("openvino") is None:
        print("OpenVINO: not installed (pip install openvino), not measured", file=sys.stderr)
        return {}
    import openvino as ov

    core = ov.Core()
    runs: dict[str, Run] = {}
    for hint in ("f32", "bf16"):
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": n_threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(str(fp32), "CPU", config)
        request = compiled.create_infer_request()
        runs[f"OpenVINO {ov.__version__.split('-')[0]}, {hint}"] = lambda x, r=request: r.infer({0: x})[0].copy()
    return runs


def timed(runs: dict[str, Run], x: np.ndarray, rounds: int) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds of each run per round (the runs take turns within a round), and each run's scores."""
    out = {name: run(x) for name, run in runs.items()}  # warm-up: kernel selection, allocations
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            seconds[name].append(time.perf_counter() - start)
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: usable CPUs)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ast-bench-runtimes")
    args = parser.parse_args()
    from ast_cli import allocator

    allocator.tune()  # as the ast process does
    n_threads = args.threads or threads.available_cpus()
    torch.set_num_threads(n_threads)
    print(f"machine: {machine()}; ast {git_revision()}; {n_threads} threads for every runtime\n")
    bf16_rate = matmul_tflops(torch.bfloat16, 5)
    flops = LAYERS * (sum(2 * m * k * n for m, k, n in LINEAR_SHAPES) + 4 * TOKENS * TOKENS * HEAD * HEADS)
    floor = flops / bf16_rate / 1e12
    print(f"bf16 matrix products at the model's shapes: {bf16_rate:.3f} TFLOP/s; floor {floor:.3f} s a window\n")

    model_dir = full_size_checkpoint()
    args.work.mkdir(parents=True, exist_ok=True)
    fp32, int8 = onnx_files(model_dir, args.work)
    runs = {**ast_runs(model_dir), **onnxruntime_runs(fp32, int8, n_threads), **openvino_runs(fp32, n_threads)}
    x = torch.randn(1, 1024, 128, generator=torch.Generator().manual_seed(0)).numpy()
    seconds, scores = timed(runs, x, args.rounds)
    reference = scores["ast, fp32"]
    default = min(seconds[next(name for name in runs if "default" in name)])
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}\n")
    print(
        f"| runtime, precision | s a window, best of {args.rounds} | median | x floor ({floor:.3f} s) | "
        "speed vs `ast` default | max score diff vs `ast` fp32 |\n|---|---|---|---|---|---|"
    )
    for name, times in seconds.items():
        best = min(times)
        diff = float(np.abs(scores[name] - reference).max())
        print(
            f"| {name} | {best:.3f} | {statistics.median(times):.3f} | {best / floor:.2f} | "
            f"{default / best:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()

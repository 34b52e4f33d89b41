"""The GPU path, checked on a GPU, in one script that prints one table (under 5 minutes on one GPU).

    python benchmarks/gpu_check.py [--clips 256] [--quick]
    python benchmarks/gpu_check.py --self-test      (every part on the CPU, tiny sizes: checks the script)

1. Parity: a full-size random AST (527 labels) tags generated 10-s clips on the GPU and on the CPU,
   through ``ast_cli.load_model``: fp32 scores within 1e-4 of the CPU's fp32, fp16 (autocast, the
   GPU's `auto`) and bf16 within 1e-2. With transformers installed, its ASTForAudioClassification
   on the GPU (fp32, same weights and features) is compared too (1e-4).
2. `ast batch` throughput on `--clips` generated 10-s clips at --batch-size 1/8/32 with
   --workers 0/2/8: clips/s in the command's own summary line (steady state) and end to end.
3. `ast finetune`: one short epoch from the full-size base with fp16 autocast (GradScaler) and bf16
   autocast: clips/s and the final validation accuracy line (it must run, not learn: one epoch).

Without CUDA (`torch.cuda.is_available()` false) the GPU parts are skipped, saying why, and the
script exits 0; `--self-test` runs every part on the CPU with a tiny model instead, so the script
itself is tested where there is no GPU (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import class_clips, clips, full_size_checkpoint, git_revision, machine

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}


def tiny_checkpoint(directory: Path) -> Path:
    import torch

    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST

    if not (directory / "model.safetensors").exists():
        torch.manual_seed(0)
        config = ASTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_length=128,
            id2label={i: f"class {i}" for i in range(12)},
        )
        save(AST(config), PreprocessorConfig(max_length=128), directory)
    return directory


def parity(model: Path, paths: list[Path], device: str) -> list[tuple[str, str, float, float]]:
    """(what, precision, max |difference| of scores, tolerance) against the CPU's fp32."""
    from ast_cli import load_model

    cpu = load_model(str(model), device="cpu", precision="fp32")
    expected = [_scores(cpu, p) for p in paths]
    rows = []
    precisions = ("fp32", "fp16", "bf16") if device == "cuda" else ("fp32", "bf16")
    for precision in precisions:
        tagger = load_model(str(model), device=device, precision=precision)
        got = [_scores(tagger, p) for p in paths]
        diff = max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True))
        rows.append((f"ast on {device} vs ast on cpu (fp32)", precision, diff, TOLERANCE[precision]))
        del tagger
    rows.extend(_transformers_parity(model, paths, device, cpu))
    return rows


def _scores(tagger, path: Path):
    """Every window's sigmoid scores, in fp32 on the CPU."""
    import torch

    from ast_cli.options import TagOptions

    return torch.stack([s.float().cpu() for s in tagger.run(str(path), TagOptions(activation="sigmoid")).scores])


def _transformers_parity(
    model: Path, paths: list[Path], device: str, cpu_tagger
) -> list[tuple[str, str, float, float]]:
    try:
        from transformers import ASTForAudioClassification
    except ImportError:
        return [("transformers (not installed: skipped)", "fp32", float("nan"), TOLERANCE["fp32"])]
    import torch

    from ast_cli.options import TagOptions

    reference = ASTForAudioClassification.from_pretrained(str(model)).to(device).eval()
    ours = _on(cpu_tagger, device)
    diff = 0.0
    spec = ours.window_spec(TagOptions())
    for path in paths:
        from ast_cli.windows import iter_windows

        for window in iter_windows(str(path), spec):
            features = window.features.unsqueeze(0).to(device)
            with torch.inference_mode():
                a = torch.sigmoid(reference(features).logits.float())
                b = torch.sigmoid(ours.logits(features).float())
            diff = max(diff, float((a - b).abs().max()))
    return [(f"transformers on {device} vs ast on {device}", "fp32", diff, TOLERANCE["fp32"])]


def _on(tagger, device: str):
    from ast_cli.inference import Tagger

    return Tagger(tagger.checkpoint, tagger.spec.replace(device=device, precision="fp32"))


def batch_throughput(model: Path, folder: Path, device: str, sizes, workers) -> list[tuple[int, int, float, float]]:
    """(batch size, workers, steady clips/s, end-to-end clips/s) of `ast batch`."""
    n = len(list(folder.iterdir()))
    rows = []
    for size in sizes:
        for w in workers:
            cmd = [
                sys.executable,
                "-m",
                "ast_cli",
                "batch",
                str(folder),
                "-o",
                str(folder.parent / "out.csv"),
                "-m",
                str(model),
                "--force",
                "--device",
                device,
                "--batch-size",
                str(size),
                "--workers",
                str(w),
            ]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"ast batch failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            match = re.search(r"([\d.]+) files/s", proc.stderr)
            rows.append((size, w, float(match.group(1)) if match else float("nan"), n / seconds))
    return rows


def finetune(model: Path, data: Path, out: Path, device: str, precisions) -> list[tuple[str, float, str]]:
    """(precision, clips/s of the whole command, its last validation line) of one epoch."""
    n = sum(1 for p in data.rglob("*.wav"))
    rows = []
    for precision in precisions:
        cmd = [
            sys.executable,
            "-m",
            "ast_cli",
            "finetune",
            str(data),
            "-o",
            str(out / precision),
            "--base",
            str(model),
            "--epochs",
            "1",
            "--device",
            device,
            "--precision",
            precision,
            "--force",
            "--batch-size",
            "8",
            "--workers",
            "2",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(
                f"ast finetune --precision {precision} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        lines = [line for line in proc.stderr.splitlines() if "val" in line.lower()]
        rows.append((precision, n / seconds, lines[-1].strip() if lines else "?"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="64 clips, batch sizes 8/32, workers 0/8")
    parser.add_argument("--self-test", action="store_true", help="every part on the CPU with a tiny model and 4 clips")
    args = parser.parse_args(argv)
    import torch

    print(f"machine: {machine()}; ast {git_revision()}")
    if args.self_test:
        device, sizes, workers, n = "cpu", (8,), (0, 2), 4
    elif not torch.cuda.is_available():
        why = (
            "this torch has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA device is visible (torch.cuda.is_available() is False)"
        )
        print(f"GPU parts skipped: {why}. Run this on a CUDA machine; --self-test checks the script on the CPU.")
        return 0
    else:
        device = "cuda"
        sizes, workers, n = ((8, 32), (0, 8), 64) if args.quick else ((1, 8, 32), (0, 2, 8), args.clips)
        print(
            f"GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
        )
    work = Path(tempfile.mkdtemp(prefix="ast-gpu-check-"))
    model = tiny_checkpoint(work / "tiny") if args.self_test else full_size_checkpoint()
    started = time.perf_counter()
    paths = clips(work / "clips", n, seconds=2.0 if args.self_test else 10.0)
    table = ["| part | setting | result | check |", "|---|---|---|---|"]
    failed = False
    for what, precision, diff, tolerance in parity(model, paths[:4], device):
        ok = diff != diff or diff <= tolerance  # NaN: skipped
        failed |= not ok
        table.append(
            f"| parity: {what} | {precision} | max |score diff| {diff:.2e} | {'ok' if ok else 'FAILED'} "
            f"(<= {tolerance:g}) |"
        )
    for size, w, steady, end_to_end in batch_throughput(model, work / "clips", device, sizes, workers):
        table.append(
            f"| ast batch, {n} clips | --batch-size {size} --workers {w} | {steady:.1f} clips/s steady, "
            f"{end_to_end:.1f} end to end | ran |"
        )
    class_clips(work / "classes", per_class=4 if args.self_test else 16, seconds=2.0)
    for precision, rate, line in finetune(
        model, work / "classes", work / "ft", device, ("bf16",) if args.self_test else ("fp16", "bf16")
    ):
        table.append(
            f"| ast finetune, 1 epoch | --precision {precision} | {rate:.1f} clips/s (whole command); {line} | ran |"
        )
    print("\n".join(table))
    print(
        f"\n{time.perf_counter() - started:.0f} s in all; "
        f"{'a parity check FAILED' if failed else 'all parity checks passed'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

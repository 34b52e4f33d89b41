"""Where one window's time goes, what each part could cost at its own shapes, and the kernels tried, in one run.

    python benchmarks/attention_kernels.py [--rounds 7] [--profiles 3] [--no-autotune] [--self-test]

1. The floor as `limit.py` states it: the window's FLOPs at the bf16 rate of the Linear layers' shapes.
2. A shape-aware floor: the rate of attention's own matrix products at their shapes (12 heads x 1214
   tokens x 64: QK^T and PV as batched matmuls into preallocated outputs, no softmax), torch's softmax
   on in-cache rows, and each elementwise op (LayerNorm, GELU, residual add, casts, the bias fill of
   addmm) alone at its tensor size against the bandwidth of a large tensor copy.
3. A profile of the default path (`Tagger.logits`, one window, `--precision auto`) by category: time
   (median of the profiled windows), share, FLOPs and TFLOP/s.
4. Every kernel tried, one window each a round, interleaved: SDPA's backends, q/k/v made contiguous,
   attention as chunked bf16 matrix products, flex_attention (compiled), and torch.compile of the
   whole model (inductor: default, with freezing, max-autotune with freezing; compile time given).
   Errors: attention's output against fp32 SDPA on random q/k/v, and scores against `ast` in fp32.

`--self-test` runs every part with a tiny model and one round (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ast_cli import threads

threads.openmp_environment()  # as the ast process does, before torch loads
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="ast-inductor-"))  # compile times: cold
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import full_size_checkpoint, git_revision, machine  # noqa: E402
from shape_floor import Dims, linear_rate, print_floor  # noqa: E402

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (B, h, N, e) q, k, v -> out


CATEGORIES = (
    "Linear GEMMs",
    "attention kernel",
    "LayerNorm",
    "GELU",
    "residual adds",
    "bias fill of addmm",
    "casts, copies, permutes",
    "patch embedding",
    "other",
)


def category(name: str, shapes: list) -> str:
    if name in ("aten::addmm", "aten::mm", "aten::bmm"):
        return "Linear GEMMs"
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention kernel"
    if "layer_norm" in name:
        return "LayerNorm"
    if name == "aten::gelu":
        return "GELU"
    if name == "aten::add":
        return "residual adds"
    if name == "aten::copy_" and shapes and len(shapes[0]) == 2:  # addmm fills its output with the bias
        return "bias fill of addmm"
    if name in ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::cat", "aten::contiguous"):
        return "casts, copies, permutes"
    if "convolution" in name:
        return "patch embedding"
    return "other"


def profile_window(run: Callable[[], object], profiles: int) -> dict[str, float]:
    """Self CPU seconds by category, the median over ``profiles`` profiled windows."""
    from torch.profiler import ProfilerActivity, profile

    run()
    seen: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    for _ in range(profiles):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            run()
        totals = dict.fromkeys(CATEGORIES, 0.0)
        for event in prof.key_averages(group_by_input_shape=True):
            totals[category(event.key, event.input_shapes)] += event.self_cpu_time_total / 1e6
        for name, seconds in totals.items():
            seen[name].append(seconds)
    return {name: statistics.median(values) for name, values in seen.items()}


def module_times(tagger, features: torch.Tensor, windows: int) -> dict[str, float]:
    """Seconds a window by module kind without the profiler (forward hooks and perf_counter), median
    over ``windows``: Linear modules (their input casts and bias fill included), attention's core (the
    Attention module less its qkv and proj Linears), GELU, LayerNorm, and the whole window."""
    from ast_cli.model import Attention

    kinds = {torch.nn.Linear: "Linear layers", torch.nn.GELU: "GELU", torch.nn.LayerNorm: "LayerNorm"}
    kinds[Attention] = "attention core"
    inner = [lin for m in tagger.model.modules() if isinstance(m, Attention) for lin in (m.qkv, m.proj)]
    spent: dict[str, float] = {}
    handles = []
    for module in tagger.model.modules():
        kind = kinds.get(type(module))
        if kind is None:
            continue
        starts: list[float] = []

        def done(*_, kind=kind, starts=starts, inside=module in inner):
            seconds = time.perf_counter() - starts.pop()
            spent[kind] = spent.get(kind, 0.0) + seconds
            if inside:  # counted as a Linear layer, not as attention's core
                spent["attention core"] = spent.get("attention core", 0.0) - seconds

        handles.append(module.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter())))
        handles.append(module.register_forward_hook(done))
    rows: dict[str, list[float]] = {}
    tagger.logits(features)
    for _ in range(windows):
        spent.clear()
        start = time.perf_counter()
        tagger.logits(features)
        spent["window"] = time.perf_counter() - start
        for kind, seconds in spent.items():
            rows.setdefault(kind, []).append(seconds)
    for handle in handles:
        handle.remove()
    return {kind: statistics.median(values) for kind, values in rows.items()}


def attention_forward(module, kernel: Kernel, contiguous: bool = False) -> Callable:
    """ast_cli.model.Attention.forward with another attention kernel (the benchmark's stand-in)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = module.qkv(x).view(B, N, 3, module.n_head, C // module.n_head).permute(2, 0, 3, 1, 4)
        q, k, v = (t.contiguous() for t in qkv.unbind(0)) if contiguous else qkv.unbind(0)
        return module.proj(kernel(q, k, v).transpose(1, 2).reshape(B, N, C))

    return forward


def math_sdpa(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def chunked(rows: int) -> Kernel:
    """Attention as bf16 matrix products, ``rows`` query rows at a time (softmax's input stays in cache)."""

    def kernel(q, k, v):
        out, kt, scale = torch.empty_like(q), k.transpose(-1, -2), q.shape[-1] ** -0.5
        for i in range(0, q.shape[-2], rows):
            scores = torch.matmul(q[..., i : i + rows, :] * scale, kt)
            out[..., i : i + rows, :] = torch.matmul(torch.softmax(scores, -1), v)
        return out

    return kernel


def flex() -> Kernel:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


ATTENTION_KERNELS: dict[str, tuple[Callable[[], Kernel], bool]] = {  # name: (kernel maker, q/k/v contiguous)
    "SDPA flash (the default: ast_cli's own Attention)": (lambda: F.scaled_dot_product_attention, False),
    "SDPA flash, q/k/v made contiguous": (lambda: F.scaled_dot_product_attention, True),
    "SDPA math backend": (lambda: math_sdpa, False),
    "bf16 matmuls, 256 query rows a chunk": (lambda: chunked(256), False),
    "flex_attention, compiled": (flex, False),
}
COMPILE_OPTIONS: dict[str, dict] = {
    "torch.compile, inductor default": {},
    "torch.compile, inductor + freezing": {"freezing": True},
    "torch.compile, max-autotune + freezing": {"freezing": True, "max_autotune": True},
}


def attention_error(dims: Dims, kernel: Kernel) -> float:
    """Largest |difference| of the kernel's output from fp32 SDPA on random bf16 q, k, v at the model's shape."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, dims.heads, dims.tokens, dims.head) for _ in range(3))
    with torch.inference_mode():
        out = kernel(*(t.bfloat16() for t in (q, k, v))).float()
    return float((out - F.scaled_dot_product_attention(q, k, v)).abs().max())


@dataclass
class Variant:
    name: str
    run: Callable[[], torch.Tensor]  # one window -> scores
    attention_error: float | None = None
    compile_s: float | None = None
    times: list[float] | None = None


def variants(model_dir: Path, features: torch.Tensor, dims: Dims, autotune: bool) -> list[Variant]:
    from ast_cli.inference import load_model
    from ast_cli.model import Attention

    eager = load_model(str(model_dir), device="cpu", precision="auto")
    modules = [m for m in eager.model.modules() if isinstance(m, Attention)]
    out = []
    for name, (make, contiguous) in ATTENTION_KERNELS.items():
        kernel = make()

        def run(kernel=kernel, contiguous=contiguous, own=not out):
            for module in modules:
                if own:  # the first: the model's own forward, unpatched
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = attention_forward(module, kernel, contiguous)  # type: ignore[method-assign]
            return eager.scores(features)

        out.append(Variant(name, run, attention_error(dims, kernel)))
    for name, options in COMPILE_OPTIONS.items():
        if options.get("max_autotune") and not autotune:
            continue
        tagger = load_model(str(model_dir), device="cpu", precision="auto")
        tagger.model = torch.compile(tagger.model, options=options, dynamic=False)  # type: ignore[assignment]
        start = time.perf_counter()
        tagger.scores(features)  # compiles
        out.append(Variant(name, lambda t=tagger: t.scores(features), compile_s=time.perf_counter() - start))
    return out


def interleave(runs: list[Variant], rounds: int) -> None:
    for variant in runs:
        variant.run()
        variant.times = []
    for _ in range(rounds):
        for variant in runs:
            start = time.perf_counter()
            variant.run()
            assert variant.times is not None
            variant.times.append(time.perf_counter() - start)


def print_profile(tagger, features: torch.Tensor, dims: Dims, profiles: int) -> None:
    by_category = profile_window(lambda: tagger.logits(features), profiles)
    total = sum(by_category.values())
    flops = {"Linear GEMMs": dims.linear_flops, "attention kernel": dims.attention_flops}
    print(f"\n| default path ({tagger.precision}), profiled | s | share | GFLOP | TFLOP/s |\n|---|---|---|---|---|")
    for name, seconds in by_category.items():
        f = flops.get(name)
        gflop, rate = (f"{f / 1e9:.0f}", f"{f / seconds / 1e12:.3f}") if f and seconds else ("", "")
        print(f"| {name} | {seconds:.4f} | {seconds / total:.0%} | {gflop} | {rate} |")
    print(f"| all (median of {profiles} profiled windows per category) | {total:.4f} | 100% | | |")
    hooked = module_times(tagger, features, max(profiles, 3))
    window = hooked.pop("window")
    hooked["the rest (residual adds, patch embedding, tokens, hooks)"] = window - sum(hooked.values())
    flops["Linear layers"], flops["attention core"] = dims.linear_flops, dims.attention_flops
    print("\n| default path, no profiler (module hooks) | s | share | TFLOP/s |\n|---|---|---|---|")
    for name, seconds in hooked.items():
        f = flops.get(name)
        print(f"| {name} | {seconds:.4f} | {seconds / window:.0%} | {f'{f / seconds / 1e12:.3f}' if f else ''} |")
    rate = (dims.linear_flops + dims.attention_flops) / window / 1e12
    print(f"| the window (median) | {window:.4f} | 100% | {rate:.3f} |")


def print_variants(runs: list[Variant], floor: float, reference: torch.Tensor) -> None:
    default = min(runs[0].times or [0.0])
    print(
        "\n| kernel | s a window, best | median | vs default | floor / time | attention err | score err | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v in runs:
        best, median = min(v.times or [0.0]), statistics.median(v.times or [0.0])
        err = float((v.run() - reference).abs().max())
        attn = "" if v.attention_error is None else f"{v.attention_error:.1e}"
        comp = "" if v.compile_s is None else f"{v.compile_s:.0f}"
        ratios = f"{default / best:.2f}x | {floor / best:.2f}"
        print(f"| {v.name} | {best:.3f} | {median:.3f} | {ratios} | {attn} | {err:.1e} | {comp} |")


def tiny_checkpoint(directory: Path) -> Path:
    from ast_cli.checkpoints import save
    from ast_cli.config import ASTConfig, PreprocessorConfig
    from ast_cli.model import AST

    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, max_length=128
    )
    save(AST(config), PreprocessorConfig(max_length=128), directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profiles", type=int, default=3)
    parser.add_argument("--no-autotune", action="store_true", help="leave out max-autotune (minutes to compile)")
    parser.add_argument("--self-test", action="store_true", help="every part with a tiny model, one round")
    args = parser.parse_args()
    from ast_cli import allocator
    from ast_cli.inference import load_model

    allocator.tune()  # as the ast process does
    if args.self_test:
        args.rounds, args.profiles = 1, 1
    model_dir = tiny_checkpoint(Path(tempfile.mkdtemp())) if args.self_test else full_size_checkpoint()
    print(f"machine: {machine()}; ast {git_revision()}; torch threads {torch.get_num_threads()}\n")
    tagger = load_model(str(model_dir), device="cpu", precision="auto")
    c = tagger.config
    dims = Dims(c.num_patches + 2, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.num_hidden_layers)
    features = torch.randn(1, tagger.window_frames, c.num_mel_bins)
    floor = print_floor(dims, linear_rate(dims, max(args.rounds, 3)), max(args.rounds, 3))
    print_profile(tagger, features, dims, args.profiles)
    reference = load_model(str(model_dir), device="cpu", precision="fp32").scores(features)
    runs = variants(model_dir, features, dims, autotune=not (args.no_autotune or args.self_test))
    interleave(runs, args.rounds)
    print_variants(runs, floor, reference)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Where and in what precision the model runs: device choice, the precision ``auto`` picks for the
CPU or GPU at hand, weights cast once, int8 quantization. No file I/O, no model building.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import UsageError
from .model import AST, Attention
from .options import Device, Precision, check_device


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA, else Metal, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    device = check_device(device)
    if device == Device.auto:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available", hint="use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Metal is not available here", hint="use --device cpu")
    return torch.device(str(device))


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products run natively, not emulated (docs/performance.md gives
    the measured ratios to fp32)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: read the CPU flags
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype: auto is fp16 on CUDA, bf16 on a CPU with native bf16, else fp32.
    (``int8`` is an inference-only mode of ``Tagger``: its non-quantized part runs in fp32.)"""
    precision = Precision.parse(precision, "--precision")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 is for GPUs; on the CPU use bf16 or fp32")
    if precision == "int8" and device.type != "cpu":
        raise UsageError("--precision int8 runs on the CPU only", hint="use --device cpu, or fp16 on the GPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[
        precision.value
    ]


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def quantize_int8(model: AST) -> torch.nn.Module:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized per batch),
    in place: a quantized copy would leave the fp32 model (340 MB full-size) alive beside it."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch deprecates the quantized-tensor API in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device``; nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def cast_matmul_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store Linear and Conv weights in ``dtype`` once. Autocast would otherwise cast all 86 M
    weights on every forward pass; LayerNorms, the tokens and the residual stream stay fp32
    (autocast keeps layer_norm and additions in fp32), which keeps scores close to fp32."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.to(dtype)


ATTENTION_ENV = "AST_ATTENTION_PRECISION"  # fp32: attention in fp32 beside bf16/fp16 Linear layers


def set_attention_precision(model: torch.nn.Module, dtype: torch.dtype, environ=os.environ) -> str:
    """Attention in the Linear layers' precision (the default), or in fp32 where ``AST_ATTENTION_PRECISION=fp32``.

    Which is faster depends on the CPU (AMX, AVX512-BF16 without AMX): benchmarks/attention_precision.py
    measures both on the machine at hand, docs/performance.md records what it found. Returns the
    attention's precision."""
    choice = environ.get(ATTENTION_ENV, "").strip().lower()
    if choice not in ("", "auto", "fp32", "same"):
        raise UsageError(f"{ATTENTION_ENV}={choice!r}: not a choice", hint=f"set {ATTENTION_ENV} to fp32, or unset it")
    compute = torch.float32 if choice == "fp32" and dtype != torch.float32 else None
    for module in model.modules():
        if isinstance(module, Attention):
            module.compute_dtype = compute
    return precision_name(compute or dtype)


def copy_off_the_file(model: torch.nn.Module) -> None:
    """Give the fp32 parameters left after casting or quantizing (LayerNorms, tokens, position table,
    ~1 M values) memory of their own. They were views of the memory-mapped checkpoint, which kept the
    whole mapping, and the file's pages that reading it made resident, alive: 326 MiB of RSS for the
    full-size model in bf16."""
    for param in model.parameters():
        if param.dtype == torch.float32:
            param.data = param.data.clone()

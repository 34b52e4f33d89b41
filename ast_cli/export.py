"""Export a model for runtimes without this package: ONNX, TorchScript, or a clean Hub-layout folder.

The ONNX and TorchScript graphs compute scores, not logits: the model's activation (sigmoid for a
multi-label head such as AudioSet's, softmax for single-label, none for regression) is part of
the graph. Their input is the normalised log-mel ``(batch, frames, mel bins)`` that ``ast tag``
feeds the model, or with ``with_frontend`` 16 kHz mono waveforms ``(batch, samples)`` of equal
length (at least 400 samples), from which the graph computes the features itself (``frontend.py``).
The batch axis is dynamic, and so is the number of samples of a waveform input.

Every export is checked: the exported file is loaded back and run on the same inputs as the
PyTorch model, and the largest absolute difference of the scores is reported against a
tolerance for the precision (``TOLERANCE``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import Checkpoint, load, save
from .errors import ASTError, OutputExistsError, UsageError
from .features import FRAME_LENGTH, FRAME_SHIFT, extract
from .files import AtomicPath, ensure_space
from .frontend import Frontend
from .inference import Tagger
from .model import AST
from .options import Activation, ExportFormat, ExportOptions, ExportPrecision, Precision
from .spec import ModelSpec
from .targets import SAVED_FILES, model_files, refuse_overlap

DTYPES = {
    ExportPrecision.fp32: torch.float32,
    ExportPrecision.fp16: torch.float16,
    ExportPrecision.bf16: torch.bfloat16,
}
# Largest absolute difference of the scores accepted by the check, against the fp32 PyTorch model.
# fp16 keeps 11 significant bits, bf16 8: scores in [0, 1] move by a few units of the last bit.
TOLERANCE = {ExportPrecision.fp32: 1e-4, ExportPrecision.fp16: 1e-2, ExportPrecision.bf16: 5e-2}
RUNTIMES = {ExportFormat.onnx: "onnxruntime", ExportFormat.torchscript: "torch", ExportFormat.hub: "transformers"}
ONNX_OPSET = 17  # the first opset with the STFT operator the front end needs
ONNX_HINT = "pip install 'ast-cli[onnx]'"
VERIFY_BATCH = 3  # not the batch the graph was traced with: checks the batch axis is dynamic


@dataclass
class ExportResult:
    path: Path
    format: str
    precision: str
    with_frontend: bool
    activation: str
    input_shape: str
    output_shape: str
    max_abs_diff: float | None = None  # None: not verified
    tolerance: float | None = None
    verify_note: str = ""

    def summary(self) -> list[str]:
        size = _size(self.path)
        lines = [f"wrote {self.path} ({self.format}, {self.precision}, {size / 1e6:.1f} MB)"]
        if self.format != "hub":
            lines.append(f"input  {self.input_shape}")
            lines.append(f"output {self.output_shape}")
        if self.max_abs_diff is not None:
            lines.append(
                f"verified: max abs diff {self.max_abs_diff:.2e} vs PyTorch fp32 (tolerance {self.tolerance:.0e})"
            )
        elif self.verify_note:
            lines.append(f"not verified: {self.verify_note}")
        return lines


class Scorer(nn.Module):
    """What an exported graph computes: [waveform -> features ->] logits -> scores.

    ``dtype`` is the precision of the network; inputs and scores stay float32 so a caller feeds
    every export the same arrays.
    """

    def __init__(
        self, model: AST, activation: str, frontend: Frontend | None = None, dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        self.model = model.to(dtype).eval()
        self.frontend = frontend
        self.activation = activation
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            x = self.frontend(x)  # (B, samples) -> (B, T, F), in float32 like the reference features
        logits = self.model(x.to(self.dtype)).float()  # (B, C)
        if self.activation == Activation.sigmoid:
            return torch.sigmoid(logits)
        if self.activation == Activation.softmax:
            return torch.softmax(logits, dim=-1)
        return logits


# -- the command's core -------------------------------------------------------------------------------
def export(
    spec: ModelSpec | str, out: str | os.PathLike, options: ExportOptions, status: Callable[[str], None] | None = None
) -> ExportResult:
    """Export the model ``spec`` names (a ``ModelSpec``, or a source: anything ``ast tag -m`` takes) to
    ``out``; the spec's device and precision are not used (``options.precision`` is the graph's).

    ``options.verify`` None: check when the runtime is installed (onnxruntime for ONNX, transformers
    for the Hub layout; torch always for TorchScript). A failed check raises ``ASTError`` (the file is
    kept). ``status`` is told what is being done (a full-size export takes about a minute).
    """
    status = status or (lambda message: None)
    fmt, precision, with_frontend = options.fmt, options.precision, options.with_frontend
    runtime = RUNTIMES[fmt]
    available = importlib.util.find_spec(runtime) is not None
    if fmt == ExportFormat.onnx and importlib.util.find_spec("onnx") is None:
        raise UsageError("--format onnx needs the onnx package", hint=ONNX_HINT)
    if options.verify and not available:
        hint = ONNX_HINT if fmt == ExportFormat.onnx else "pip install transformers"
        raise UsageError(f"--verify needs {runtime}, which is not installed", hint=hint)
    out = Path(out)
    spec = ModelSpec(source=spec) if isinstance(spec, str) else spec
    _check_output(out, fmt, options.force, model_files(spec.source, spec.labels))
    status(f"loading {spec.source}")
    checkpoint = load(
        spec.source,
        labels=spec.labels,
        norm_stats=spec.norm_stats,
        fstride=spec.fstride,
        tstride=spec.tstride,
        input_tdim=spec.input_tdim,
    )
    activation = checkpoint.model.config.default_activation
    status(f"exporting to {out} ({fmt}, {precision}{', with the front end' if with_frontend else ''})")
    if fmt == ExportFormat.hub:
        result = _export_hub(checkpoint, out, activation)
    else:
        result = _export_graph(checkpoint, out, fmt, activation, precision, with_frontend)
    if options.verify is False:
        result.verify_note = "--no-verify"
    elif not available:
        result.verify_note = (
            f"{runtime} is not installed ({ONNX_HINT if fmt == ExportFormat.onnx else 'pip install transformers'})"
        )
    else:
        status(f"checking {out} with {runtime}")
        result.tolerance = TOLERANCE[precision]
        result.max_abs_diff = VERIFIERS[fmt](checkpoint, result)
        if not result.max_abs_diff <= result.tolerance:  # also catches NaN
            raise ASTError(
                f"{out}: the exported model differs from PyTorch by {result.max_abs_diff:.2e} "
                f"(more than {result.tolerance:.0e}); the file was kept for inspection"
            )
    return result


def _check_output(out: Path, fmt: ExportFormat, force: bool, reads: list[str]) -> None:
    written = [out / name for name in SAVED_FILES] if fmt == ExportFormat.hub else [out]
    refuse_overlap(written, reads, no_stream="export writes a file and loads it back to check it")
    if fmt == ExportFormat.hub:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: exists and is not a folder", hint="the Hub layout is a folder")
        if out.is_dir() and any(out.iterdir()) and not force:
            raise OutputExistsError(f"{out}: folder is not empty", hint="pass --force to write into it")
    else:
        if out.is_dir():
            example = out / ("model.onnx" if fmt == ExportFormat.onnx else "model.pt")
            raise UsageError(f"{out}: is a folder", hint=f"give a file name, e.g. {example}")
        if out.exists() and not force:
            raise OutputExistsError(f"{out}: exists", hint="pass --force to overwrite it")
        if not out.parent.is_dir():
            raise UsageError(f"{out.parent}: no such folder")


# -- graphs ----------------------------------------------------------------------------------------
def sample_inputs(
    checkpoint: Checkpoint, batch: int, with_frontend: bool, seed: int = 0, windows: float = 1.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs of the graph, the normalised features the package makes of them) for noisy tones
    ``windows`` model windows long: the export traces 1.25 windows (the front end must cut) and
    the check runs 0.7 (it must pad), so a length baked into the graph would show."""
    config, pre = checkpoint.model.config, checkpoint.preprocessor
    samples = max(int(windows * ((config.max_length - 1) * FRAME_SHIFT + FRAME_LENGTH)), FRAME_LENGTH)
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    waves = np.stack(
        [
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(samples)
            for _ in range(batch)
        ]
    ).astype(np.float32)
    mean, std = (pre.mean, pre.std) if pre.do_normalize else (0.0, 0.5)  # (x - 0) / (2 * 0.5) = x
    features = torch.stack([extract(w, config.max_length, mean, std, config.num_mel_bins) for w in waves])
    return (torch.from_numpy(waves) if with_frontend else features), features


def scorer(
    checkpoint: Checkpoint,
    activation: str,
    precision: ExportPrecision = ExportPrecision.fp32,
    with_frontend: bool = False,
) -> Scorer:
    config, pre = checkpoint.model.config, checkpoint.preprocessor
    frontend = (
        Frontend(config.num_mel_bins, config.max_length, pre.mean, pre.std, pre.do_normalize) if with_frontend else None
    )
    import copy

    model = copy.deepcopy(checkpoint.model) if precision != ExportPrecision.fp32 else checkpoint.model
    return Scorer(model, activation, frontend, DTYPES[precision]).eval()


def _describe(checkpoint: Checkpoint, with_frontend: bool, activation: str) -> tuple[str, str]:
    config = checkpoint.model.config
    if with_frontend:
        inp = "waveform float32 (batch, samples): 16 kHz mono, >= 400 samples"
    else:
        inp = (
            f"features float32 (batch, {config.max_length}, {config.num_mel_bins}): "
            "normalised log-mel, as 'ast tag' makes it"
        )
    meaning = activation if activation != "none" else "logits, no activation"
    out = f"scores float32 (batch, {config.num_labels}): {meaning}"
    return inp, out


def _export_graph(
    checkpoint: Checkpoint, out: Path, fmt: str, activation: str, precision: ExportPrecision, with_frontend: bool
) -> ExportResult:
    module = scorer(checkpoint, activation, precision, with_frontend)
    size = sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
    ensure_space(out.parent, size + (16 << 20), f"the {fmt} file")
    example, _ = sample_inputs(checkpoint, 2, with_frontend)
    with AtomicPath(out) as target, torch.no_grad(), warnings.catch_warnings():
        # tracing warns about shapes read as Python numbers; the verification below checks
        # another batch size and waveform length, which is what those warnings are about
        warnings.simplefilter("ignore")
        try:
            write = _write_onnx if fmt == ExportFormat.onnx else _write_torchscript
            write(module, example, target.tmp, checkpoint, activation, with_frontend)
        except (RuntimeError, ValueError, torch.onnx.errors.OnnxExporterError) as exc:
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ASTError(f"{fmt} export failed: {detail}", hint="run with --debug for the traceback") from exc
    inp, outp = _describe(checkpoint, with_frontend, activation)
    return ExportResult(
        path=out,
        format=fmt,
        precision=precision,
        with_frontend=with_frontend,
        activation=activation,
        input_shape=inp,
        output_shape=outp,
    )


def _metadata(checkpoint: Checkpoint, activation: str, with_frontend: bool) -> dict[str, str]:
    """Everything a runtime needs to use the graph, stored with it (ONNX metadata, TorchScript extra
    files). The model is named by its Hub id or its file or folder name: no local path is recorded."""
    pre = checkpoint.preprocessor
    source = checkpoint.source
    if os.path.exists(os.path.expanduser(source)):
        source = Path(os.path.expanduser(source)).resolve().name
    waveform = {
        "waveform_sample_rate": str(pre.sampling_rate),
        "waveform": "mono float32 at waveform_sample_rate Hz: resample first",
    }
    return {
        **(waveform if with_frontend else {}),
        "labels": json.dumps(checkpoint.model.config.labels, ensure_ascii=False),
        "activation": activation,
        "input": "waveform" if with_frontend else "features",
        "sampling_rate": str(pre.sampling_rate),
        "max_length": str(checkpoint.model.config.max_length),
        "num_mel_bins": str(checkpoint.model.config.num_mel_bins),
        "mean": repr(pre.mean),
        "std": repr(pre.std),
        "normalize": "(x - mean) / (2 * std)" if pre.do_normalize else "none",
        "source": source,
    }


def _write_onnx(
    module: Scorer, example: torch.Tensor, path: Path, checkpoint, activation: str, with_frontend: bool
) -> None:
    import onnx

    name = "waveform" if with_frontend else "features"
    axes = {name: {0: "batch", 1: "samples"} if with_frontend else {0: "batch"}, "scores": {0: "batch"}}
    # The TorchScript-based exporter: the torch.export-based one needs onnxscript, one more dependency.
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=[name],
        output_names=["scores"],
        dynamic_axes=axes,
    )
    graph = onnx.load(str(path))
    for key, value in _metadata(checkpoint, activation, with_frontend).items():
        graph.metadata_props.add(key=key, value=value)
    rate = f" (mono, {checkpoint.preprocessor.sampling_rate} Hz: resample other rates first)" if with_frontend else ""
    graph.doc_string = f"Audio Spectrogram Transformer: {name}{rate} -> scores ({activation}); see metadata"
    onnx.save(graph, str(path))


def _write_torchscript(
    module: Scorer, example: torch.Tensor, path: Path, checkpoint, activation: str, with_frontend: bool
) -> None:
    traced = torch.jit.trace(module, (example,), check_trace=False)
    extra = {
        "config.json": json.dumps(checkpoint.model.config.to_dict(), ensure_ascii=False),
        "preprocessor_config.json": json.dumps(checkpoint.preprocessor.to_dict()),
        "metadata.json": json.dumps(_metadata(checkpoint, activation, with_frontend), ensure_ascii=False),
    }
    torch.jit.save(traced, str(path), _extra_files=extra)


def _export_hub(checkpoint: Checkpoint, out: Path, activation: str) -> ExportResult:
    save(checkpoint.model, checkpoint.preprocessor, out)  # each file written to a temporary name, then renamed
    config = checkpoint.model.config
    return ExportResult(
        path=out,
        format=ExportFormat.hub,
        precision=ExportPrecision.fp32,
        with_frontend=False,
        activation=activation,
        input_shape="",
        output_shape=f"{config.num_labels} labels",
    )


# -- verification ---------------------------------------------------------------------------------
def _reference(checkpoint: Checkpoint, activation: str, features: torch.Tensor) -> torch.Tensor:
    """What ``ast tag`` computes from these features, in fp32."""
    tagger = Tagger(checkpoint, ModelSpec(source=checkpoint.source, device="cpu", precision=Precision.fp32))
    return tagger.activate(tagger.logits(features), activation)


def _verify_onnx(checkpoint: Checkpoint, result: ExportResult) -> float:
    import onnxruntime as ort

    inputs, features = sample_inputs(checkpoint, VERIFY_BATCH, result.with_frontend, seed=1, windows=0.7)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]
    return _diff(got, _reference(checkpoint, result.activation, features))


def _verify_torchscript(checkpoint: Checkpoint, result: ExportResult) -> float:
    inputs, features = sample_inputs(checkpoint, VERIFY_BATCH, result.with_frontend, seed=1, windows=0.7)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
        loaded = torch.jit.load(str(result.path), map_location="cpu")
    with torch.no_grad():
        got = loaded(inputs)
    return _diff(got, _reference(checkpoint, result.activation, features))


def _verify_hub(checkpoint: Checkpoint, result: ExportResult) -> float:
    from transformers import ASTForAudioClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _, features = sample_inputs(checkpoint, VERIFY_BATCH, False, seed=1)
    model = ASTForAudioClassification.from_pretrained(str(result.path)).eval()
    with torch.no_grad():
        logits = model(input_values=features).logits
    return _diff(logits, _reference(checkpoint, "none", features))


VERIFIERS = {
    ExportFormat.onnx: _verify_onnx,
    ExportFormat.torchscript: _verify_torchscript,
    ExportFormat.hub: _verify_hub,
}


def _diff(got, want: torch.Tensor) -> float:
    got = torch.as_tensor(np.asarray(got, dtype=np.float32)) if not isinstance(got, torch.Tensor) else got.float()
    if got.shape != want.shape:
        raise ASTError(f"the exported model returned shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    return float((got - want).abs().max())


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size

"""`ast export`: every format of a tiny model, loaded in a fresh process that never imports ast_cli,
gives the scores the package gives."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_model, tiny_config, tone

from ast_cli.checkpoints import load
from ast_cli.cli import main
from ast_cli.errors import OutputExistsError, UsageError
from ast_cli.export import export
from ast_cli.features import extract
from ast_cli.inference import Tagger
from ast_cli.options import ExportOptions
from ast_cli.spec import ModelSpec

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed (pip install 'ast-cli[onnx]')")

# Runs each export with its own runtime only: onnxruntime, torch.jit, transformers. Never ast_cli.
RUNNER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        x = np.load(job["input"])
        if job["kind"] == "onnx":
            import onnxruntime as ort
            session = ort.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            y = session.run(["scores"], {session.get_inputs()[0].name: x})[0]
            job["labels"] = json.loads(meta["labels"])
        elif job["kind"] == "torchscript":
            import torch
            extra = {"metadata.json": ""}
            model = torch.jit.load(job["path"], _extra_files=extra)
            with torch.no_grad():
                y = model(torch.from_numpy(x)).numpy()
            job["labels"] = json.loads(json.loads(extra["metadata.json"])["labels"])
        else:
            import torch
            from transformers import ASTFeatureExtractor, ASTForAudioClassification
            model = ASTForAudioClassification.from_pretrained(job["path"]).eval()
            fe = ASTFeatureExtractor.from_pretrained(job["path"])
            feats = fe(list(x), sampling_rate=16000, return_tensors="pt")["input_values"]
            with torch.no_grad():
                y = model(input_values=feats).logits.numpy()
            job["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
        np.save(job["output"], y)
    assert "ast_cli" not in sys.modules
    json.dump(jobs, open(sys.argv[1], "w"))
    """
)


def write_authors_pth(model, path: Path) -> None:
    """A checkpoint as the authors' training saved it: DataParallel names, DeiT heads included."""
    sd = {}
    for key, value in model.state_dict().items():
        if key.startswith("fc_norm."):
            sd["module.mlp_head.0." + key[len("fc_norm.") :]] = value
        elif key.startswith("head."):
            sd["module.mlp_head.1." + key[len("head.") :]] = value
        else:
            sd["module.v." + key] = value
    sd["module.v.head.weight"] = torch.zeros(10, model.config.hidden_size)
    sd["module.v.head_dist.weight"] = torch.zeros(10, model.config.hidden_size)
    torch.save(sd, path)


def package_outputs(model_spec: str, waves: np.ndarray, labels: str | None = None) -> dict[str, np.ndarray]:
    """What the package computes for these waveforms: reference features, logits, scores."""
    tagger = Tagger(load(model_spec, labels=labels), ModelSpec(device="cpu", precision="fp32"))
    pre, config = tagger.preprocessor, tagger.config
    feats = torch.stack([extract(w, config.max_length, pre.mean, pre.std, config.num_mel_bins) for w in waves])
    logits = tagger.logits(feats)
    return {"features": feats.numpy(), "logits": logits.numpy(), "scores": tagger.activate(logits, None).numpy()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    """Every export of the tiny model, run once in a fresh process; returns {name: (scores, job)}."""
    tmp = tmp_path_factory.mktemp("export")
    pth = tmp / "authors.pth"
    write_authors_pth(random_model(tiny_config(num_attention_heads=1), seed=3), pth)
    waves = np.stack([tone(1.6, freq=220 * (i + 1), seed=i) for i in range(3)])  # longer than the 1.28-s window
    np.save(tmp / "waves.npy", waves)
    package = package_outputs(str(tiny_model_dir), waves)
    np.save(tmp / "features.npy", package["features"])
    cases = {  # name: (format, options, input, tolerance)
        "torchscript": ("torchscript", {}, "features", 1e-5),
        "torchscript-frontend": ("torchscript", {"with_frontend": True}, "waves", 1e-4),
        "torchscript-bf16": ("torchscript", {"precision": "bf16"}, "features", 5e-2),
        "hub": ("hub", {}, "waves", 1e-4),
    }
    if HAS_ORT:
        cases.update(
            {
                "onnx": ("onnx", {}, "features", 1e-4),
                "onnx-frontend": ("onnx", {"with_frontend": True}, "waves", 1e-4),
                "onnx-fp16": ("onnx", {"precision": "fp16"}, "features", 1e-2),
            }
        )
    jobs, results = [], {}
    for name, (fmt, options, source, tol) in cases.items():
        out = tmp / (name if fmt == "hub" else f"{name}.{'onnx' if fmt == 'onnx' else 'pt'}")
        result = export(str(tiny_model_dir), out, ExportOptions(fmt=fmt, verify=True, **options))
        assert result.max_abs_diff is not None and result.max_abs_diff <= result.tolerance
        jobs.append(
            {
                "name": name,
                "kind": fmt,
                "path": str(out),
                "input": str(tmp / f"{source}.npy"),
                "output": str(tmp / f"{name}.out.npy"),
                "tol": tol,
            }
        )
    hub_pth = tmp / "hub-from-pth"
    labels = tmp / "labels.csv"  # the authors' class_labels_indices.csv layout
    labels.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Class {i}\n" for i in range(5)))
    export(ModelSpec(source=str(pth), labels=str(labels)), hub_pth, ExportOptions(fmt="hub", verify=True))
    jobs.append(
        {
            "name": "hub-pth",
            "kind": "hub",
            "path": str(hub_pth),
            "input": str(tmp / "waves.npy"),
            "output": str(tmp / "hub-pth.out.npy"),
        }
    )
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    (tmp / "runner.py").write_text(RUNNER)
    proc = subprocess.run(
        [sys.executable, str(tmp / "runner.py"), str(tmp / "jobs.json")], capture_output=True, text=True, cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in json.loads((tmp / "jobs.json").read_text()):
        results[job["name"]] = (np.load(job["output"]), job)
    return {
        "results": results,
        "package": package,
        "pth_logits": package_outputs(str(pth), waves, str(labels))["logits"],
    }


@pytest.mark.parametrize(
    "name",
    [
        "torchscript",
        "torchscript-frontend",
        "torchscript-bf16",
        pytest.param("onnx", marks=needs_ort),
        pytest.param("onnx-frontend", marks=needs_ort),
        pytest.param("onnx-fp16", marks=needs_ort),
    ],
)
@pytest.mark.slow
def test_graph_exports_give_the_package_scores(exported, name):
    got, job = exported["results"][name]
    want = exported["package"]["scores"]
    assert got.shape == want.shape == (3, 5)
    assert np.abs(got - want).max() <= job["tol"]
    assert job["labels"] == ["Speech", "Music", "Dog", "Rain", "Siren"]


def test_hub_export_loads_in_transformers(exported, tiny_model_dir):
    got, job = exported["results"]["hub"]
    assert np.abs(got - exported["package"]["logits"]).max() <= 1e-4
    assert sorted(p.name for p in Path(job["path"]).iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    pre = json.loads((Path(job["path"]) / "preprocessor_config.json").read_text())
    assert (pre["mean"], pre["std"]) == (-5.0, 4.0)


def test_hub_export_of_the_authors_pth(exported):
    got, job = exported["results"]["hub-pth"]
    assert np.abs(got - exported["pth_logits"]).max() <= 1e-4
    config = json.loads((Path(job["path"]) / "config.json").read_text())
    assert config["model_type"] == "audio-spectrogram-transformer" and config["max_length"] == 128
    assert job["labels"] == [f"Class {i}" for i in range(5)]


def test_cli_prints_the_check(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--format", "torchscript", "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (torchscript, fp32" in printed
    assert (
        "input  features float32 (batch, 128, 128)" in printed
        and "output scores float32 (batch, 5): sigmoid" in printed
    )
    assert "verified: max abs diff" in printed
    # an existing output is refused without --force
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--format", "torchscript"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(["export", str(tiny_model_dir), "-o", str(out), "--format", "torchscript", "--force", "--no-verify"]) == 0
    )
    assert "not verified: --no-verify" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite"], "--format must be one of onnx, torchscript, hub"),
        (["--format", "onnx", "--precision", "bf16"], "not available for --format onnx"),
        (["--format", "hub", "--with-frontend"], "--with-frontend does not apply to --format hub"),
        (["--format", "hub", "--precision", "fp16"], "not available for --format hub"),
    ],
)
def test_usage_errors(tiny_model_dir, tmp_path, capsys, args, message):
    assert main(["export", str(tiny_model_dir), "-o", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ast: error: ") and message in err and "Traceback" not in err


def test_missing_onnx_runtime_names_the_pip_command(tiny_model_dir, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("onnx") else real(name, *a)
    )
    with pytest.raises(UsageError) as info:
        export(str(tiny_model_dir), tmp_path / "m.onnx", ExportOptions(fmt="onnx"))
    assert "pip install 'ast-cli[onnx]'" in str(info.value)
    assert not (tmp_path / "m.onnx").exists()


def test_hub_refuses_a_non_empty_folder(tiny_model_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        export(str(tiny_model_dir), tmp_path, ExportOptions(fmt="hub"))


def test_no_local_path_in_the_exported_file_and_the_waveform_rate_is_recorded(tiny_model_dir, tmp_path):
    import shutil

    import torch

    model = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(
        json.dumps({**config, "_name_or_path": str(model)})
    )  # as transformers may write it
    out = tmp_path / "m.pt"
    export(str(model), out, ExportOptions(fmt="torchscript", with_frontend=True, verify=False))
    extra = {"metadata.json": "", "config.json": "", "preprocessor_config.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    extra = {name: text.decode() if isinstance(text, bytes) else text for name, text in extra.items()}
    assert all(str(tmp_path) not in text for text in extra.values())
    meta = json.loads(extra["metadata.json"])
    assert meta["source"] == "my-model" and meta["waveform_sample_rate"] == "16000" and meta["input"] == "waveform"
    export(str(model), tmp_path / "f.pt", ExportOptions(fmt="torchscript", verify=False))
    extra = {"metadata.json": ""}
    torch.jit.load(str(tmp_path / "f.pt"), _extra_files=extra)
    assert "waveform_sample_rate" not in json.loads(extra["metadata.json"])  # features in: no rate to state

"""ast_cli/spec.py: a ModelSpec is validated once, when it is built, and names the field it refuses."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ast_cli.config import NORM_STATS
from ast_cli.errors import InvalidValue, UsageError
from ast_cli.hub import DEFAULT_MODEL
from ast_cli.options import Device, FeatureFrontend, Precision
from ast_cli.process import message_of
from ast_cli.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def test_the_defaults_are_the_released_audioset_model_run_as_auto_chooses():
    spec = ModelSpec()
    assert spec.source == DEFAULT_MODEL and spec.labels is None and spec.norm_stats is None
    assert spec.device == "auto" and spec.precision is Precision.auto
    assert spec.frontend is FeatureFrontend.transformers
    assert (spec.fstride, spec.tstride, spec.input_tdim) == (None, None, None)


def test_strings_become_members_and_stats_become_a_pair():
    spec = ModelSpec(precision="bf16", frontend="authors", device="cpu", norm_stats="esc50")
    assert spec.precision is Precision.bf16 and spec.frontend is FeatureFrontend.authors
    assert spec.device == Device.cpu.value and spec.norm_stats == NORM_STATS["esc50"]
    assert ModelSpec(norm_stats="-4.5, 4.25").norm_stats == (-4.5, 4.25)
    assert ModelSpec(norm_stats=(-1, 2)).norm_stats == (-1.0, 2.0)
    assert ModelSpec(device="cuda:3").device == "cuda:3"  # a numbered CUDA device, from Python


@pytest.mark.parametrize(
    "fields,field,problem",
    [
        ({"precision": "fp64"}, "precision", "must be one of auto, fp32, bf16, fp16, int8, got 'fp64'"),
        ({"device": "gpu"}, "device", "must be one of auto, cpu, cuda, mps, got 'gpu'"),
        ({"device": "cuda:x"}, "device", "got 'cuda:x'"),
        ({"frontend": "librosa"}, "frontend", "must be one of transformers, authors, got 'librosa'"),
        ({"norm_stats": "loud"}, "norm_stats", "must be MEAN,STD, or one of audioset, esc50, speechcommands"),
        ({"norm_stats": "1,0"}, "norm_stats", "needs a finite mean and a positive std, got '1,0'"),
        ({"norm_stats": "nan,2"}, "norm_stats", "needs a finite mean and a positive std"),
        ({"norm_stats": (0.0, float("inf"))}, "norm_stats", "needs a finite mean and a positive std"),
        ({"fstride": 0}, "fstride", "must be a positive number, got 0"),
        ({"tstride": -3}, "tstride", "must be a positive number, got -3"),
        ({"input_tdim": 0}, "input_tdim", "must be a positive number, got 0"),
    ],
)
def test_a_bad_field_is_refused_naming_it_and_the_command_line_names_its_flag(fields, field, problem):
    with pytest.raises(InvalidValue) as caught:
        ModelSpec(**fields)
    assert caught.value.field == field and problem in caught.value.problem
    # a usage error (exit 2) and a ValueError for Python callers alike
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)
    assert message_of(caught.value).startswith("--" + field.replace("_", "-") + " ")


def test_frozen_and_replace_validates_again():
    spec = ModelSpec(precision="fp32")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.precision = Precision.bf16
    assert spec.replace(device="cpu").device == "cpu" and spec.device == "auto"
    assert spec.replace(norm_stats="speechcommands").norm_stats == NORM_STATS["speechcommands"]
    with pytest.raises(InvalidValue, match="fstride"):
        spec.replace(fstride=0)


def test_portable_makes_a_local_source_absolute_and_leaves_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    local = ModelSpec(source="model", precision="fp32")
    moved = local.portable()
    assert moved.source == os.path.join(str(tmp_path), "model") and moved.precision is Precision.fp32
    hub = ModelSpec(source="someone/tiny-ast")
    assert hub.portable() == hub


def test_building_a_spec_imports_no_torch():
    code = (
        "import sys; from ast_cli.spec import ModelSpec; ModelSpec(norm_stats='esc50'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "False"

"""``quantize_int8``: bnfold's prep profile, then onnxruntime's ``quant_pre_process`` and
``quantize_static``; ``float_islands`` counts what onnxruntime's level-all graph still runs in
float. On 4 × [Conv → Relu → BN] (onnxruntime issue #9938) onnxruntime alone leaves every BN
in float; ``--target quantize`` first leaves none."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import CalibrationDataReader

from bnfold.errors import OutputWriteError, UsageError
from bnfold.integrations.quantization import (
    float_islands,
    optimized_ops,
    quantize_int8,
    quantize_with_onnxruntime,
)
from tests.targets.graphs import conv_relu_bn_stack

LAYERS = 4
README = Path(__file__).resolve().parents[2] / "README.md"
RECIPE_HEADING = "### Before int8 quantization: `--target quantize`"


class Batches(CalibrationDataReader):
    """Four standard-normal batches of one (N, 3, 10, 10) image."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter(
            [{"x": rng.standard_normal((1, 3, 10, 10)).astype(np.float32)} for _ in range(4)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


@pytest.fixture
def model() -> onnx.ModelProto:
    return conv_relu_bn_stack(layers=LAYERS)


def test_prep_profile_quantizes_every_layer(model: onnx.ModelProto, tmp_path: Path) -> None:
    result = quantize_int8(model, tmp_path / "int8.onnx", Batches())
    assert result.path.is_file() and result.prepared.is_file() and result.preprocessed.is_file()
    assert result.prepared.name == "int8.prep.onnx"
    assert len(result.report.folds) == LAYERS
    assert float_islands(result.path) == {}
    ops = optimized_ops(result.path)
    assert ops["QLinearConv"] == LAYERS and ops["QLinearAdd"] == LAYERS  # the kept shifts


def test_onnxruntime_alone_leaves_each_bn_in_float(model: onnx.ModelProto, tmp_path: Path) -> None:
    onnx.save(model, tmp_path / "float.onnx")
    quantize_with_onnxruntime(tmp_path / "float.onnx", tmp_path / "int8.onnx", Batches())
    assert float_islands(tmp_path / "int8.onnx") == {"BatchNormalization": LAYERS}
    assert optimized_ops(tmp_path / "int8.onnx")["QLinearConv"] == LAYERS


def test_default_profile_keeps_the_bn_after_relu(model: onnx.ModelProto, tmp_path: Path) -> None:
    result = quantize_int8(model, tmp_path / "int8.onnx", Batches(), target="default")
    assert float_islands(result.path) == {"BatchNormalization": LAYERS}


def test_unknown_target_writes_nothing(model: onnx.ModelProto, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown target"):
        quantize_int8(model, tmp_path / "int8.onnx", Batches(), target="tpu")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_one_error_before_any_work(
    model: onnx.ModelProto, tmp_path: Path
) -> None:
    with pytest.raises(OutputWriteError, match="does not exist"):
        quantize_int8(model, tmp_path / "int8.onnx", Batches(), work=tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_quantization_is_imported_only_when_used() -> None:
    code = (
        "import sys, bnfold.integrations.quantization; "
        "print('onnxruntime.quantization' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _recipe() -> str:
    """The README's quantization recipe: its section, up to the next heading of its level."""
    text = README.read_text()
    start = text.index(RECIPE_HEADING)
    end = text.find("\n### ", start + len(RECIPE_HEADING))
    return text[start : end if end != -1 else len(text)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _recipe(), re.S)


def test_the_documented_recipe_runs(model: onnx.ModelProto, tmp_path: Path) -> None:
    """The README's recipe as a user runs it: the shell steps, then every Python block."""
    onnx.save(model, tmp_path / "model.onnx")  # input "x" (N, 3, 10, 10), as the recipe feeds
    programs = {"bnfold": [sys.executable, "-m", "bnfold"], "python": [sys.executable]}
    for line in _blocks("bash")[0].splitlines():
        program, *args = shlex.split(line)
        subprocess.run([*programs[program], *args], cwd=tmp_path, check=True, capture_output=True)
    code = "\n".join(_blocks("python"))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == [f"{LAYERS} folded", "{}"]
    assert float_islands(tmp_path / "model.int8.onnx") == {}

"""The quantize and npu profiles on real networks: the bundled models and onnx's light models
with BatchNormalization (DenseNet's pre-activation BNs lowered, the rest folded), each
written with no BatchNormalization left and computing what the original computes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import bnfold
from tests.builders.graphs import assert_equivalent, batchnorm_count

ROOT = Path(__file__).parents[2]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
BUNDLED = sorted((ROOT / "models").glob("*.onnx"))
# Seconds each under onnxruntime without optimizations: marked slow (-m "not slow" skips).
BIG = {"light_densenet121", "light_inception_v2", "light_resnet50"}
LIGHT_WITH_BN = ["light_shufflenet", *sorted(BIG)]


def _params() -> list:
    models = [pytest.param(path, id=path.stem) for path in BUNDLED]
    for name in LIGHT_WITH_BN:
        marks = [pytest.mark.slow] if name in BIG else []
        models.append(pytest.param(LIGHT / f"{name}.onnx", id=name, marks=marks))
    return models


@pytest.mark.parametrize("target", ["quantize", "npu"])
@pytest.mark.parametrize("path", _params())
def test_no_batchnorm_left_and_the_same_function(path: Path, target: str) -> None:
    if not path.exists():
        pytest.skip(f"onnx {onnx.__version__} ships no {path.name}")
    original = onnx.load(path)
    result = bnfold.optimize(original, target=target)
    assert batchnorm_count(result.model) == 0
    assert not result.report.skipped
    assert_equivalent(original, result.model, seeds=(0,))

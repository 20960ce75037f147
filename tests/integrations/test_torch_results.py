"""``export_torch``'s result speaks verify's language: each output's check holds verify's
``OutputComparison``, generated inputs come from ``bnfold.runtime.generate``, and the result
is written as JSON with the convention of every bnfold report."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import bnfold  # noqa: E402
from bnfold.integrations import torch_export  # noqa: E402
from bnfold.verify.compare import OutputComparison, compare_output  # noqa: E402


def _strict(text: str) -> Any:
    def reject(token: str) -> Any:
        raise ValueError(token)

    return json.loads(text, parse_constant=reject)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():  # statistics a trained net would have, not the identity
            self.bn.running_mean.uniform_(-1.0, 1.0)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_export_result_holds_verify_comparisons_and_writes_strict_json(tmp_path):
    net = ConvBN().eval()
    result = bnfold.export_torch(net, (torch.randn(1, 3, 8, 8),), tmp_path / "m.onnx", dynamo=False)
    check = next(iter(result.verification.outputs.values()))
    assert isinstance(check.module, OutputComparison) and check.judge == "module"
    assert isinstance(check.module_float64, OutputComparison)
    assert check.max_abs_error == check.module.max_abs_error
    assert check.float64_max_abs_error == check.module_float64.max_abs_error
    data = _strict(result.to_json())
    assert data["verification"]["passed"] is True
    output = data["verification"]["outputs"][check.name]
    assert output["total"] == check.module.total and output["judge"] == "module"
    assert data["report"]["folds"][0]["bn"] == "bn"


def test_a_non_finite_check_is_null_with_its_reason():
    check = torch_export._output_check(
        compare_output("y", np.array([1.0, 2.0]), np.array([np.inf, 2.0])), None, math.nan
    )
    verification = torch_export.TorchVerification(outputs={"y": check}, runs=1)
    data = _strict(verification.to_json())["outputs"]["y"]
    assert not data["passed"] and data["tolerance_used_nonfinite"] == "inf"
    assert data["module_float32_error"] is None and data["module_float32_error_nonfinite"] == "nan"


def test_generated_inputs_keep_shapes_dtypes_and_integer_ranges():
    example = [
        np.zeros((2, 3), np.float32),
        np.array([[3, 7], [5, 4]], np.int64),
        np.array([True, False]),
    ]
    first = torch_export._like(["x", "ids", "mask"], example, seed=1)
    again = torch_export._like(["x", "ids", "mask"], example, seed=1)
    other = torch_export._like(["x", "ids", "mask"], example, seed=2)
    for got, want in zip(first, example, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
    assert first[1].min() >= 3 and first[1].max() <= 7
    assert (first[2] == example[2]).all()
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert not (first[0] == other[0]).all()

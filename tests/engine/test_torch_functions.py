"""Issue 22: torch exports with ``export_modules_as_functions`` keep no more BatchNormalization
than onnxruntime BASIC (which inlines every local function), functions included, and the
folded model computes what the export does."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import bnfold
from bnfold.engine.functions import batchnorms_per_call
from tests.builders.torch_nets import NETS


class _LinearBN(nn.Module):
    """Linear → BatchNorm1d → ReLU → Linear → BatchNorm1d: the BN and its layer are sibling
    modules, so each becomes its own function."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(6, 5), nn.BatchNorm1d(5)
        self.fc2, self.bn2 = nn.Linear(5, 4), nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x)))))


def _export(net: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (example,),
            str(path),
            dynamo=False,
            export_modules_as_functions=True,
            do_constant_folding=False,
            opset_version=opset,
        )


def _ort_basic_batchnorms(path: Path, tmp: Path) -> int:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp / "ort_basic.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return batchnorms_per_call(onnx.load(str(tmp / "ort_basic.onnx")))


def _run(model: bytes | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def _cases() -> list[tuple[str, object, tuple[int, ...]]]:
    cases = [(net.name, net.warmed, net.shape) for net in NETS if net.name != "tcn"]
    return [*cases, ("linear_bn", lambda: _LinearBN(), (3, 6))]


@pytest.mark.slow
@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("case", _cases(), ids=lambda case: case[0])
def test_modules_as_functions_keep_no_more_batchnorm_than_onnxruntime_basic(
    case: tuple[str, object, tuple[int, ...]], opset: int, tmp_path: Path
) -> None:
    _, build, shape = case
    torch.manual_seed(0)
    net = build()  # type: ignore[operator]
    example = torch.randn(shape)
    path = tmp_path / "model.onnx"
    _export(net, example, path, opset)
    model = onnx.load(str(path))
    assert model.functions  # the export really has modules as functions
    result = bnfold.optimize(model)
    onnx.checker.check_model(result.model, full_check=True)
    left = batchnorms_per_call(result.model)
    assert left <= _ort_basic_batchnorms(path, tmp_path)
    assert left < batchnorms_per_call(model)
    feeds = {model.graph.input[0].name: example.numpy()}
    want = _run(str(path), feeds)
    got = _run(result.model.SerializeToString(), feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert not bnfold.optimize(result.model).report.folds  # a fixed point

"""torch writes ``x.to(torch.float32)`` on a float32 tensor as a ``Cast`` between a Conv and
the BN-equivalent ``Mul``/``Add`` after it (issue 15's image classifier): the chain folds."""

from __future__ import annotations

import io

import onnx
import pytest

from tests.builders.graphs import assert_equivalent, fold, op_types

torch = pytest.importorskip("torch")


class _CastNet(torch.nn.Module):  # type: ignore[name-defined,misc]
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.scale = torch.nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.shift = torch.nn.Parameter(torch.randn(1, 8, 1, 1))
        self.head = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: object) -> object:
        y = self.conv(x).to(torch.float32)
        return self.head(torch.relu(y * self.scale + self.shift))


def test_torch_noop_cast_then_mul_add_folds_into_the_conv() -> None:
    buffer = io.BytesIO()
    torch.onnx.export(
        _CastNet().eval(),
        torch.randn(1, 3, 8, 8),
        buffer,
        dynamo=False,
        do_constant_folding=False,
        opset_version=17,
    )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    assert op_types(model) == ["Conv", "Cast", "Mul", "Add", "Relu", "Conv"]
    result = fold(model)
    assert [(f.kind, f.pattern) for f in result.report.folds] == [("Mul+Add", "conv-bn")]
    # The float->float Cast is a no-op: removed when bnfold writes (issue 28).
    assert op_types(result.model) == ["Conv", "Relu", "Conv"]
    assert result.report.counts["noop_casts_removed"] == 1
    assert_equivalent(model, result.model)

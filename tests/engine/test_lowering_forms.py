"""``--lower-standalone`` forms: Mul + Add, and a 1×1 depthwise Conv (``dwconv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from bnfold.cli import main
from bnfold.errors import UsageError
from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    op_types,
    random_bn_params,
    tensor,
)

BN = ["gamma", "beta", "mean", "var"]


def _lone_bn(shape: list[int]) -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("BatchNormalization", ["s", *BN], ["z"], name="bn"),
        ],
        [tensor("x", shape)],
        [tensor("z", None)],
        random_bn_params(np.random.default_rng(0), shape[1]),
        names=BN,
    )


@pytest.mark.parametrize("shape", [[1, 4, 5, 5], [2, 4, 7], [1, 4, 2, 3, 3]])
def test_dwconv_form_is_one_depthwise_conv_and_exact(shape: list[int]) -> None:
    model = _lone_bn(shape)
    result = fold(model, lower_standalone="dwconv")
    assert op_types(result.model) == ["Sigmoid", "Conv"]
    conv = result.model.graph.node[1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert attrs == {"group": 4, "kernel_shape": [1] * (len(shape) - 2)}
    assert [(f.pattern, f.into) for f in result.report.folds] == [
        ("lower-standalone", "Conv (1×1 depthwise)")
    ]
    assert not result.report.skipped
    assert_equivalent(model, result.model)


def test_dwconv_needs_a_spatial_axis_so_a_2d_bn_stays() -> None:
    model = _lone_bn([3, 4])
    result = fold(model, lower_standalone="dwconv")
    assert op_types(result.model) == ["Sigmoid", "BatchNormalization"]
    assert [s.reason for s in result.report.skipped] == ["no-linear-producer"]


def test_an_unknown_form_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        fold(_lone_bn([1, 4, 3, 3]), lower_standalone="conv")


@pytest.mark.parametrize(
    ("args", "ops"),
    [
        (["--lower-standalone", "-q"], ["Sigmoid", "Mul", "Add"]),
        (["--lower-as", "mul-add", "-q"], ["Sigmoid", "Mul", "Add"]),
        (["--lower-standalone", "--lower-as", "dwconv", "-q"], ["Sigmoid", "Conv"]),
        (["--lower-as=dwconv", "-q"], ["Sigmoid", "Conv"]),
    ],
)
def test_cli_forms(tmp_path: Path, args: list[str], ops: list[str]) -> None:
    model = _lone_bn([1, 4, 3, 3])
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    # The flag before the model, as users type it: the model is not taken for a form.
    result = CliRunner().invoke(main, ["optimize", *args, str(source)])
    assert result.exit_code == 0, result.output
    assert op_types(onnx.load(tmp_path / "m.folded.onnx")) == ops

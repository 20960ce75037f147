"""BN → MatMul folds that were refused by mistake (issue 22): a channel ``Split`` straight into
MatMuls (the weight was looked for in the wrong operand), and a MatMul followed by an ``Add``
of a scalar bias (refused as ``param-shape-mismatch`` though the folded bias, one value per
feature, fits the Add's output). Each fold is done and equals the unfolded model under
onnxruntime with ``ORT_DISABLE_ALL``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    op_types,
    random_bn_params,
    tensor,
)

BN = ["gamma", "beta", "mean", "var"]


def _split_into_matmuls(sizes: list[int], left: bool) -> onnx.ModelProto:
    """``x [N, C]`` (or ``[C, T]`` for ``W @ x``) → BN → Split of the channels → MatMuls."""
    rng = np.random.default_rng(len(sizes) + left)
    channels = sum(sizes)
    parts = [f"p{i}" for i in range(len(sizes))]
    axis = 0 if left else 1
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["y"], name="bn"),
        helper.make_node("Split", ["y", "sizes"], parts, axis=axis, name="split"),
    ]
    inits: list[np.ndarray] = [*random_bn_params(rng, channels), np.array(sizes, np.int64)]
    names = [*BN, "sizes"]
    for i, (part, size) in enumerate(zip(parts, sizes, strict=True)):
        weight = rng.standard_normal([3, size] if left else [size, 3]).astype(np.float32)
        operands = [f"W{i}", part] if left else [part, f"W{i}"]
        nodes.append(helper.make_node("MatMul", operands, [f"o{i}"], name=f"mm{i}"))
        inits.append(weight)
        names.append(f"W{i}")
    if left:  # W @ x needs x's channels on axis −2: BN over axis 1 of [1, C, T] → reshape
        nodes.insert(0, helper.make_node("Reshape", ["x3", "flat"], ["x"]))
        nodes.insert(2, helper.make_node("Reshape", ["y3", "two"], ["y"]))
        nodes[1] = helper.make_node("BatchNormalization", ["x", *BN], ["y3"], name="bn")
        inits += [np.array([1, channels, 5], np.int64), np.array([channels, 5], np.int64)]
        names += ["flat", "two"]
        inputs = [tensor("x3", [channels, 5])]
    else:
        inputs = [tensor("x", ["N", channels])]
    outputs = [tensor(f"o{i}", None) for i in range(len(sizes))]
    return make_model(nodes, inputs, outputs, inits, names=names)


@pytest.mark.parametrize("sizes", [[2, 4], [3, 1, 2], [5]])
def test_channel_split_into_matmuls_folds_into_each(sizes: list[int]) -> None:
    model = _split_into_matmuls(sizes, left=False)
    result = fold(model)
    assert "BatchNormalization" not in op_types(result.model), result.report.skipped
    assert [f.pattern for f in result.report.folds] in (["bn-consumers"], ["bn-matmul"])
    assert_equivalent(model, result.model)


def test_channel_split_into_left_constant_matmuls_folds_into_each() -> None:
    model = _split_into_matmuls([2, 4], left=True)
    result = fold(model)
    assert "BatchNormalization" not in op_types(result.model), result.report.skipped
    assert_equivalent(model, result.model)


def _bn_matmul_add(bias_shape: tuple[int, ...], bias_first: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(sum(bias_shape) + bias_first)
    add_inputs = ["c", "mm"] if bias_first else ["mm", "c"]
    return make_model(
        [
            helper.make_node("BatchNormalization", ["x", *BN], ["y"], name="bn"),
            helper.make_node("MatMul", ["y", "W"], ["mm"], name="mm"),
            helper.make_node("Add", add_inputs, ["z"], name="add"),
        ],
        [tensor("x", ["N", 4])],
        [tensor("z", None)],
        [
            *random_bn_params(rng, 4),
            rng.standard_normal([4, 3]).astype(np.float32),
            rng.standard_normal(bias_shape).astype(np.float32),
        ],
        names=[*BN, "W", "c"],
    )


@pytest.mark.parametrize("bias_shape", [(), (1,), (1, 1), (3,), (1, 3)])
@pytest.mark.parametrize("bias_first", [False, True])
def test_bn_matmul_add_of_a_scalar_bias_folds(
    bias_shape: tuple[int, ...], bias_first: bool
) -> None:
    model = _bn_matmul_add(bias_shape, bias_first)
    result = fold(model)
    assert op_types(result.model) == ["MatMul", "Add"], result.report.skipped
    assert [f.pattern for f in result.report.folds] == ["bn-matmul"]
    assert list(result.model.graph.output) == list(model.graph.output)
    assert_equivalent(model, result.model)

"""Shapes built at run time (issue 22): tf2onnx writes Keras' ``Flatten`` as
``Shape → Gather → Unsqueeze → Concat → Reshape``; onnx's inference loses the rank there, so
the Dense → BN (a BatchNormalization, or tf2onnx's ``Mul``/``Add``) after it was neither
folded nor, for the chain, reported. ``engine.runtime_shapes`` evaluates the shape subgraph;
a chain whose rank stays unknown is reported as kept (``axis-not-proven``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bnfold.engine.runtime_shapes import _reshaped
from bnfold.engine.shapes import infer_model_shapes
from tests.builders.graphs import assert_equivalent, fold, op_types, random_bn_params

BN = ["gamma", "beta", "mean", "var"]
IR_FOR_OPSET = {13: 7, 15: 8, 17: 8}


def _const(values: object, name: str, dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype), name)


def keras_flatten_dense(
    opset: int, batch: int | str | None, affine: str, target: str = "gather"
) -> onnx.ModelProto:
    """``x [batch, 3, 3, 4]`` → run-time Flatten → MatMul → Add → BN (or Mul → Add) → Relu,
        written the way tf2onnx writes it (``target``: ``gather``, ``slice`` or ``shape-range``,
        three ways to read the batch dim; ``input``: a target of a length only known at run time,
    so no rank can be proven)."""
    rng = np.random.default_rng(opset)
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="Flatten/Shape")]
    inits = [_const([-1], "minus_one")]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 3, 4])]
    if target == "gather":
        nodes += [
            helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        ]
        inits += [_const(0, "zero"), _const([0], "axes")]
    elif target == "slice":
        nodes.append(helper.make_node("Slice", ["shape", "begin", "end"], ["n1"]))
        inits += [_const([0], "begin"), _const([1], "end")]
    elif target == "shape-range":
        nodes[0] = helper.make_node("Shape", ["x"], ["n1"], start=0, end=1)
    else:
        graph_inputs.append(helper.make_tensor_value_info("n1", TensorProto.INT64, ["k"]))
    nodes += [
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="Flatten/Reshape"),
        helper.make_node("MatMul", ["flat", "kernel"], ["mm"], name="dense/MatMul"),
        helper.make_node("Add", ["mm", "bias"], ["dense"], name="dense/BiasAdd"),
    ]
    inits += [
        numpy_helper.from_array(rng.standard_normal([36, 8]).astype(np.float32), "kernel"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bias"),
    ]
    if affine == "bn":
        nodes.append(helper.make_node("BatchNormalization", ["dense", *BN], ["y"], name="bn"))
        params = random_bn_params(rng, 8)
        inits += [numpy_helper.from_array(p, n) for p, n in zip(params, BN, strict=True)]
    else:
        scale = rng.uniform(0.5, 2.0, 8).astype(np.float32)
        shift = rng.standard_normal(8).astype(np.float32)
        nodes += [
            helper.make_node("Mul", ["dense", "scale"], ["scaled"], name="bn/mul"),
            helper.make_node("Add", ["scaled", "shift"], ["y"], name="bn/add"),
        ]
        inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")]
    nodes.append(helper.make_node("Relu", ["y"], ["out"], name="relu"))
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        graph_inputs,
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 8])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tf2onnx"
    )
    model.ir_version = IR_FOR_OPSET[opset]
    onnx.checker.check_model(model, full_check=True)
    return model


CASES = [
    (opset, batch, affine, target)
    for opset in (13, 17)
    for batch in ("unk__0", 2, None)
    for affine in ("bn", "mul-add")
    for target in ("gather", "slice")
] + [(15, "N", affine, "shape-range") for affine in ("bn", "mul-add")]


@pytest.mark.parametrize(("opset", "batch", "affine", "target"), CASES)
def test_dense_bn_after_a_run_time_flatten_folds(
    opset: int, batch: int | str | None, affine: str, target: str
) -> None:
    model = keras_flatten_dense(opset, batch, affine, target)
    assert infer_model_shapes(model).shapes(())["mm"][1:] == (8,)
    result = fold(model)
    assert op_types(result.model)[-3:] == ["MatMul", "Add", "Relu"], result.report.skipped
    assert [(f.bn, f.pattern) for f in result.report.folds] == [
        ("bn" if affine == "bn" else "bn/add", "matmul-bn")
    ]
    assert not result.report.skipped
    assert_equivalent(model, result.model)


@pytest.mark.parametrize("affine", ["bn", "mul-add"])
def test_a_rank_nothing_can_prove_is_reported_not_left_silently(affine: str) -> None:
    """A target of run-time length: no rank. The BN and the BN-like chain stay, reported."""
    model = keras_flatten_dense(17, "N", affine, target="input")
    result = fold(model)
    assert not result.report.folds
    assert [(s.bn, s.reason) for s in result.report.skipped] == [
        ("bn" if affine == "bn" else "bn/add", "axis-not-proven")
    ]
    kinds = [s.kind for s in result.report.skipped]
    assert kinds == (["BatchNormalization"] if affine == "bn" else ["Add+Mul+Add"])


@pytest.mark.parametrize(
    ("data", "target", "allowzero", "expected"),
    [
        (("N", 3, 3, 4), ("N", -1), False, ("N", 36)),
        ((2, 3, 3, 4), (2, -1), False, (2, 36)),
        ((None, 3, 3, 4), (None, -1), False, (None, None)),  # the rank is what is known
        (("N", 3, 4), (0, -1), False, ("N", 12)),
        (("N", 3, 4), (0, 12), True, (0, 12)),
        (("N", 3, 4), ("M", -1), False, (None, None)),  # M may be 0: copies N instead
        (("N", 3, 4), ("M", -1), True, ("M", None)),  # N·12 / M is no known dim
        (("N", 3, 4), (-1, -1), False, None),
        (("N", 3, 4), (-2, 6), False, None),
        (None, (4, -1), False, (4, None)),
    ],
)
def test_reshape_rules(
    data: tuple | None, target: tuple, allowzero: bool, expected: tuple | None
) -> None:
    assert _reshaped(data, target, allowzero) == expected

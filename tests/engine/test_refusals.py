"""A negative test for every refusal reason: the BN stays, the model is unchanged, the reason is reported."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bnfold.engine.constants import standalone_view
from bnfold.engine.outcomes import Skip
from bnfold.patterns.layer_checks import constant_weight
from tests.builders.conv_bn import BN_NAMES, conv_then
from tests.builders.graphs import (
    fold,
    make_model,
    random_bn_params,
    random_feeds,
    run_unoptimized,
    tensor,
)


def _bn_params(channels: int, seed: int = 0) -> list[np.ndarray]:
    return random_bn_params(np.random.default_rng(seed), channels)


def _nan_params() -> list[np.ndarray]:
    params = _bn_params(4)
    params[2][1] = np.nan
    return params


def _negative_var_params() -> list[np.ndarray]:
    params = _bn_params(4)
    params[3][0] = -1.0
    return params


def _matmul_model(
    x_shape: list[int] | None, between: list[onnx.NodeProto], last: str, n: int = 5, k: int = 5
) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul"),
        *between,
        helper.make_node("BatchNormalization", [last, *BN_NAMES], ["z"], name="bn"),
    ]
    inits = [rng.standard_normal([k, n]).astype(np.float32), *_bn_params(n)]
    return make_model(
        nodes, [tensor("x", x_shape)], [tensor("z", None)], inits, names=["W", *BN_NAMES]
    )


def _fp16_overflow_model() -> onnx.ModelProto:
    w = np.full([2, 2, 1, 1], 1000.0, np.float16)
    gamma = np.array([60000.0, 1.0], np.float16)
    beta = np.zeros(2, np.float16)
    mean = np.zeros(2, np.float16)
    var = np.array([1e-3, 1.0], np.float16)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 2, 2, 2], TensorProto.FLOAT16)],
        [tensor("z", None, TensorProto.FLOAT16)],
        [w, gamma, beta, mean, var],
        names=["W", *BN_NAMES],
    )


def _gemm_model(opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Gemm", ["a", "B", "C"], ["y"], name="gemm"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn", is_test=1),
    ]
    inits = [
        rng.standard_normal([3, 4]).astype(np.float32),
        np.zeros([2, 4], np.float32),
        *_bn_params(4),
    ]
    return make_model(
        nodes,
        [tensor("a", [2, 3])],
        [tensor("z", [2, 4])],
        inits,
        names=["B", "C", *BN_NAMES],
        opset=opset,
    )


def _scale_graph_input_model() -> onnx.ModelProto:
    model = conv_then()
    model.graph.input.append(tensor("gamma", [4]))  # an initializer listed as input: overridable
    return model


def _weight_is_graph_input_model() -> onnx.ModelProto:
    model = conv_then()
    model.graph.input.append(tensor("W", [4, 3, 3, 3]))
    return model


def _matmul_weight_rank3_model() -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn"),
    ]
    inits = [rng.standard_normal([2, 3, 5]).astype(np.float32), *_bn_params(4)]
    return make_model(
        nodes, [tensor("x", [2, 4, 3])], [tensor("z", None)], inits, names=["W", *BN_NAMES]
    )


def _without_input_shape(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.input[0].type.tensor_type.ClearField("shape")
    return model


def _computed_input_model(name: str) -> onnx.ModelProto:
    """Conv + BN where ``name`` (the weight or a BN parameter) is Abs of a graph input."""
    model = conv_then()
    tensor_proto = next(t for t in model.graph.initializer if t.name == name)
    model.graph.input.append(tensor(f"{name}_in", list(tensor_proto.dims)))
    model.graph.initializer.remove(tensor_proto)
    model.graph.node.insert(0, helper.make_node("Abs", [f"{name}_in"], [name]))
    onnx.checker.check_model(model)
    return model


def _runtime_reshape_model() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul"),
        helper.make_node("Reshape", ["y", "target"], ["t"]),
        helper.make_node("BatchNormalization", ["t", *BN_NAMES], ["z"], name="bn"),
    ]
    inits = [rng.standard_normal([5, 5]).astype(np.float32), *_bn_params(5)]
    return make_model(
        nodes,
        [tensor("x", [5, 5]), tensor("target", [3], TensorProto.INT64)],
        [tensor("z", ["a", 5, "b"])],
        inits,
        names=["W", *BN_NAMES],
    )


def _bn_on_input_then(
    *after: onnx.NodeProto,
    out: str,
    channels: int = 4,
    extra: dict[str, np.ndarray] | None = None,
    outputs: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """x -> BN -> ``after`` (a BN with no producer: only a consumer fold could apply)."""
    inits = dict(zip(BN_NAMES, _bn_params(channels), strict=True))
    inits.update(extra or {})
    nodes = [helper.make_node("BatchNormalization", ["x", *BN_NAMES], ["z"], name="bn"), *after]
    return make_model(
        nodes,
        [tensor("x", [1, channels, 6, 6])],
        [tensor(name, None) for name in (out, *outputs)],
        list(inits.values()),
        names=list(inits),
    )


def _negative_gamma_params() -> list[np.ndarray]:
    params = _bn_params(4)
    params[0][:] = np.abs(params[0])
    params[0][2] = -0.5
    return params


def _left_constant_matmul_model() -> onnx.ModelProto:
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("MatMul", ["W", "x"], ["y"], name="matmul"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn"),
    ]
    inits = [rng.standard_normal([4, 3]).astype(np.float32), *_bn_params(4)]
    return make_model(
        nodes, [tensor("x", [3, 4])], [tensor("z", None)], inits, names=["W", *BN_NAMES]
    )


def _fp16_subnormal_model() -> onnx.ModelProto:
    """γ = 1e-6 makes every folded float16 weight subnormal (steps of 6e-8)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal([2, 2, 1, 1]).astype(np.float16)
    params = [np.full(2, 1e-6), np.zeros(2), np.zeros(2), np.ones(2)]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 2, 2, 2], TensorProto.FLOAT16)],
        [tensor("z", None, TensorProto.FLOAT16)],
        [w, *(p.astype(np.float16) for p in params)],
        names=["W", *BN_NAMES],
    )


def _fp16_consumer_model() -> onnx.ModelProto:
    rng = np.random.default_rng(8)
    params = [p.astype(np.float16) for p in _bn_params(4)]
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN_NAMES], ["z"], name="bn"),
        helper.make_node("Gemm", ["z", "B"], ["y"], name="gemm"),
    ]
    return make_model(
        nodes,
        [tensor("x", [2, 4], TensorProto.FLOAT16)],
        [tensor("y", None, TensorProto.FLOAT16)],
        [*params, rng.standard_normal([4, 3]).astype(np.float16)],
        names=[*BN_NAMES, "B"],
    )


def _quantized_weight_model() -> onnx.ModelProto:
    """A QDQ Conv whose weight reaches it from DequantizeLinear through an Identity: bnfold
    folds only a DequantizeLinear that feeds the layer directly (tests/engine/test_qdq_folds)."""
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "w_scale", "w_zero"], ["Wd"], name="dq"),
        helper.make_node("Identity", ["Wd"], ["W"], name="same"),
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn"),
    ]
    inits = [
        rng.integers(-100, 100, [4, 3, 3, 3]).astype(np.int8),
        np.array(0.02, np.float32),
        np.array(0, np.int8),
        *_bn_params(4),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z", None)],
        inits,
        names=["Wq", "w_scale", "w_zero", *BN_NAMES],
    )


def _opset6_matmul_bias_model() -> onnx.ModelProto:
    """MatMul → BN at opset 6: the folded bias needs a new Add, whose opset-6 form has legacy
    broadcast/axis rules (refused rather than written)."""
    model = _matmul_model([2, 5], [], "y")
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.attribute.append(helper.make_attribute("is_test", 1))
    model.opset_import[0].version = 6
    model.ir_version = 3
    for init in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
        )
    return model


CASES: dict[str, tuple[str, Callable[[], onnx.ModelProto], bool]] = {
    # name: (reason, model factory, can onnxruntime run it)
    "conv output read twice": (
        "producer-output-shared",
        lambda: conv_then(helper.make_node("Relu", ["y"], ["r"]), outputs=("z", "r")),
        True,
    ),
    "conv output is a graph output": (
        "producer-output-is-graph-output",
        lambda: conv_then(outputs=("z", "y")),
        True,
    ),
    "scale is an overridable graph input": ("param-is-graph-input", _scale_graph_input_model, True),
    "weight is an overridable graph input": (
        "param-is-graph-input",
        _weight_is_graph_input_model,
        True,
    ),
    "training_mode=1": (
        "training-mode",
        lambda: conv_then(bn_attrs={"training_mode": 1}, opset=15),
        False,
    ),
    "BN-6 with is_test=0": ("training-mode", lambda: conv_then(opset=6), False),
    "BN-9 with training outputs": (
        "training-mode",
        lambda: conv_then(bn_outputs=("z", "rm", "rv", "sm", "sv"), opset=9),
        False,
    ),
    "BN-15 running mean read": (
        "bn-outputs-used",
        lambda: conv_then(bn_outputs=("z", "rm", "rv"), outputs=("z", "rm"), opset=15),
        False,
    ),
    "spatial=0": ("spatial-off", lambda: conv_then(bn_attrs={"spatial": 0}, opset=7), False),
    "scale computed at run time": (
        "param-not-constant",
        lambda: _computed_input_model("gamma"),
        True,
    ),
    "parameter lengths differ": (
        "param-shape-mismatch",
        lambda: conv_then(params=[*_bn_params(4)[:3], np.ones(3, np.float32)]),
        False,
    ),
    "NaN in mean": ("param-not-finite", lambda: conv_then(params=_nan_params()), True),
    "var + epsilon <= 0": (
        "nonpositive-variance",
        lambda: conv_then(params=_negative_var_params()),
        True,
    ),
    "BN after Sigmoid (no linear producer)": (
        "no-linear-producer",
        lambda: conv_then(helper.make_node("Sigmoid", ["y"], ["r"]), bn_input="r"),
        True,
    ),
    "BN on a graph input": (
        "no-linear-producer",
        lambda: conv_then(
            bn_input="x2", outputs=("z", "y"), extra_inputs=(tensor("x2", [1, 4, 6, 6]),)
        ),
        True,
    ),
    "weight computed at run time": (
        "weight-not-constant",
        lambda: _computed_input_model("W"),
        True,
    ),
    "channel count differs": ("channel-mismatch", lambda: conv_then(params=_bn_params(2)), False),
    "MatMul rank unknown": (
        "axis-not-proven",
        lambda: _without_input_shape(_matmul_model([3, 5], [], "y")),
        False,
    ),
    "3-D MatMul straight into BN": (
        "channel-axis-mismatch",
        lambda: _matmul_model([2, 5, 5], [], "y"),
        True,
    ),
    "square MatMul transposed into BN": (
        "channel-axis-mismatch",
        lambda: _matmul_model(
            [5, 5], [helper.make_node("Transpose", ["y"], ["t"], perm=[1, 0])], "t"
        ),
        True,
    ),
    "Reshape that moves rows to axis 1 (square)": (
        "channel-axis-mismatch",
        lambda: _matmul_model(
            [5, 5],
            [
                helper.make_node("Constant", [], ["shape"], value_ints=[1, 5, 5]),
                helper.make_node("Reshape", ["y", "shape"], ["t"]),
            ],
            "t",
        ),
        False,
    ),
    "Reshape to a run-time shape": ("axis-not-proven", lambda: _runtime_reshape_model(), False),
    "Add constant on the wrong axis": (
        "not-per-channel",
        lambda: conv_then(
            helper.make_node("Add", ["y", "c"], ["y2"]),
            bn_input="y2",
            extra_inits={"c": np.arange(4, dtype=np.float32)},  # broadcasts over W, not C
        ),
        True,
    ),
    "constant after a Transpose": (
        "unsupported-chain",
        lambda: _matmul_model(
            [2, 5, 5],
            [
                helper.make_node("Constant", [], ["two"], value_float=2.0),
                helper.make_node("Transpose", ["y"], ["t"], perm=[0, 2, 1]),
                helper.make_node("Mul", ["t", "two"], ["t2"]),
            ],
            "t2",
        ),
        True,
    ),
    "Div by zero": (
        "division-by-zero",
        lambda: conv_then(
            helper.make_node("Div", ["y", "d"], ["y2"]),
            bn_input="y2",
            extra_inits={"d": np.array([1, 0, 1, 1], np.float32).reshape(4, 1, 1)},
        ),
        False,
    ),
    "constant divided by the data": (
        "not-affine",
        lambda: conv_then(
            helper.make_node("Div", ["d", "y"], ["y2"]),
            bn_input="y2",
            extra_inits={"d": np.ones([4, 1, 1], np.float32)},
        ),
        True,
    ),
    "folded fp16 weight overflows": ("overflow", _fp16_overflow_model, True),
    "Gemm-6 broadcasting": ("unsupported-opset", lambda: _gemm_model(6), False),
    "MatMul with a 3-D weight": ("unsupported-weight-rank", _matmul_weight_rank3_model, True),
    "BN read by a layer and by an op nothing folds into": (
        "consumer-input-shared",
        lambda: _bn_on_input_then(
            helper.make_node("Conv", ["z", "Wa"], ["a"]),
            helper.make_node("Sigmoid", ["z"], ["b"]),
            out="a",
            outputs=("b",),
            extra={"Wa": np.ones([2, 4, 1, 1], np.float32)},
        ),
        True,
    ),
    "shifting BN before a padded Conv": (
        "padded-consumer",
        lambda: _bn_on_input_then(
            helper.make_node("Conv", ["z", "Wc"], ["c"], pads=[1, 1, 1, 1]),
            out="c",
            extra={"Wc": np.ones([2, 4, 3, 3], np.float32)},
        ),
        True,
    ),
    "negative scale through Relu": (
        "negative-scale",
        lambda: conv_then(
            helper.make_node("Relu", ["y"], ["r"]), bn_input="r", params=_negative_gamma_params()
        ),
        True,
    ),
    "shift through a padded AveragePool counting pads": (
        "padded-average",
        lambda: conv_then(
            helper.make_node(
                "AveragePool",
                ["y"],
                ["p"],
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                count_include_pad=1,
            ),
            bn_input="p",
        ),
        True,
    ),
    "MatMul with the constant on the left, BN on the columns": (
        "channel-axis-mismatch",
        _left_constant_matmul_model,
        True,
    ),
    "float16 fold into subnormal weights": ("precision-loss", _fp16_subnormal_model, True),
    "float16 consumer fold": ("low-precision-consumer", _fp16_consumer_model, True),
    "quantized Conv weight": ("quantized-weight", _quantized_weight_model, True),
    "new Add needed at opset 6": ("unsupported-opset", _opset6_matmul_bias_model, False),
    "Slice of the channel axis between Conv and BN": (
        "channel-axis-sliced",
        lambda: conv_then(
            helper.make_node("Constant", [], ["s0"], value_ints=[0]),
            helper.make_node("Constant", [], ["s1"], value_ints=[4]),
            helper.make_node("Constant", [], ["ax"], value_ints=[1]),
            helper.make_node("Slice", ["y", "s0", "s1", "ax"], ["t"]),
            bn_input="t",
        ),
        True,
    ),
    "shift kept as an Add on a Conv feature map (NCHWc at level all)": (
        "slower-at-level-all",
        lambda: conv_then(
            helper.make_node("Relu", ["y"], ["r"]),
            bn_input="r",
            params=[np.abs(p) + 0.1 for p in _bn_params(4)],
        ),
        True,
    ),
    "MaxPool whose indices are read": (
        "unsupported-attribute",
        lambda: conv_then(
            helper.make_node("MaxPool", ["y"], ["p", "idx"], kernel_shape=[2, 2]),
            bn_input="p",
            outputs=("z", "idx"),
            params=[np.abs(p) for p in _bn_params(4)],
        ),
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusal_keeps_the_model_unchanged_and_says_why(case: str) -> None:
    reason, factory, runnable = CASES[case]
    model = factory()
    original_bytes = model.SerializeToString()
    result = fold(model)
    assert [(s.bn, s.reason) for s in result.report.skipped] == [("bn", reason)], (
        result.report.skipped
    )
    assert result.report.skipped[0].detail
    assert not result.report.folds
    assert result.model.SerializeToString() == original_bytes
    if runnable:
        feeds = random_feeds(model)
        for name, value in run_unoptimized(model, feeds).items():
            np.testing.assert_array_equal(run_unoptimized(result.model, feeds)[name], value)


def test_disabling_every_pattern_is_reported() -> None:
    from bnfold.patterns import PATTERN_NAMES

    result = fold(conv_then(), disable=PATTERN_NAMES)
    assert [s.reason for s in result.report.skipped] == ["no-pattern"]


def test_a_disabled_pattern_does_not_fold() -> None:
    result = fold(conv_then(), disable=["conv-bn"])
    assert not result.report.folds and len(result.report.skipped) == 1


def test_no_linear_layer_on_either_side_names_both() -> None:
    model = _bn_on_input_then(helper.make_node("Sigmoid", ["z"], ["s"]), out="s")
    skipped = fold(model).report.skipped
    assert [s.reason for s in skipped] == ["no-linear-producer"]
    assert "graph input" in skipped[0].detail and "read by Sigmoid" in skipped[0].detail


def test_integer_weights_are_refused_as_unsupported_dtype() -> None:
    node = helper.make_node("MatMulInteger", ["x", "W"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [tensor("x", [2, 2], TensorProto.INT8)],
        [tensor("y", [2, 2], TensorProto.INT32)],
    )
    graph.initializer.append(onnx.numpy_helper.from_array(np.ones([2, 2], np.int8), "W"))
    view = standalone_view(graph, ir_version=10, opset=17)
    skip = constant_weight(view, node, 1, "weight")
    assert isinstance(skip, Skip) and skip.reason == "unsupported-dtype"


def test_every_reason_code_has_a_test() -> None:
    """The README lists these codes; each must be exercised above."""
    import re
    from pathlib import Path

    source = "\n".join(
        p.read_text() for p in Path(__file__).parents[2].joinpath("bnfold").rglob("*.py")
    )
    codes = set(re.findall(r'Skip\(\s*"([a-z0-9-]+)"', source))
    tested = {reason for reason, _, _ in CASES.values()}
    tested |= {
        "self-check-failed",  # test_self_check.py
        "training-info",  # test_format_edges.py
        "quantized-negative-scale",  # test_qdq_folds.py
        "attribute-reference",  # test_function_scopes.py
        "param-is-function-input",  # test_function_scopes.py
        "no-pattern",
        "unsupported-dtype",
        "no-linear-consumer",
        "consumer-input-is-graph-output",
    }
    untested = codes - tested - {"param-missing"}  # BN with < 5 inputs is rejected by the checker
    assert not untested, f"reason codes without a negative test: {sorted(untested)}"

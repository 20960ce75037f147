"""Classes 5 and 6 (issue 10): how a model is written, not what it computes.

5. Tensors in typed fields: weights and BN parameters in ``float_data``, ``double_data``, or
   ``int32_data`` (float16 bit patterns), in initializers and in Constant nodes. Every tensor
   the editor writes must end with exactly one value field (the property checks all tensors).
6. Opset <= 6: Add/Mul with ``broadcast=1, axis=k`` align B with A's dims from ``k`` (not from
   the right), and a new Add/Mul needs ``broadcast=1`` to broadcast at all. Folds must follow
   the legacy rules exactly or refuse with ``unsupported-opset``. These models run under
   ``tests/builders/legacy_runtime.py`` (onnxruntime has no Add-6/BatchNormalization-6).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.builders.edges.build import (
    FOLDED,
    LEGACY_OPSET,
    EdgeCase,
    array,
    bn_node,
    bn_params,
    build_model,
    normal_feeds,
    outcome,
    value,
    weights,
)

FLOAT16, DOUBLE = TensorProto.FLOAT16, TensorProto.DOUBLE


def conv_bn_in_float_data() -> EdgeCase:
    """Conv weight, Conv bias and BN parameters in ``float_data``."""
    rng = np.random.default_rng(60)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", kernel_shape=[3, 3]),
        bn_node("c", "y", name="bn"),
    ]
    inits = [
        array(weights(rng, [4, 3, 3, 3]), "W", "typed"),
        array(rng.standard_normal(4).astype(np.float32), "B", "typed"),
        *bn_params(rng, 4, field_kind="typed"),
    ]
    model = build_model(nodes, [value("x", [1, 3, 5, 5])], ["y"], inits)
    return EdgeCase(
        "conv-bn-float-data",
        model,
        [normal_feeds(rng, {"x": [1, 3, 5, 5]})],
        {"bn": outcome(FOLDED)},
    )


def gemm_bn_matmul_in_double_data() -> EdgeCase:
    """float64: ``Gemm → BN → MatMul`` with every tensor in ``double_data``."""
    rng = np.random.default_rng(61)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "C"], ["gm"], name="gemm"),
        bn_node("gm", "n", name="bn"),
        helper.make_node("MatMul", ["n", "W2"], ["y"], name="matmul"),
    ]
    inits = [
        array(weights(rng, [4, 5], np.float64), "W", "typed"),
        array(rng.standard_normal(5), "C", "typed"),
        *bn_params(rng, 5, np.float64, field_kind="typed"),
        array(weights(rng, [5, 3], np.float64), "W2", "typed"),
    ]
    model = build_model(nodes, [value("x", [2, 4], DOUBLE)], ["y"], inits, elem=DOUBLE)
    return EdgeCase(
        "gemm-bn-matmul-double-data",
        model,
        [normal_feeds(rng, {"x": [2, 4]}, np.float64)],
        {"bn": outcome(FOLDED)},
        dtype=np.dtype(np.float64),
    )


def conv_bn_float16_in_int32_data() -> EdgeCase:
    """float16 Conv weight and BN parameters stored as ``int32_data`` bit patterns."""
    rng = np.random.default_rng(62)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[3, 3]),
        bn_node("c", "y", name="bn"),
    ]
    inits = [
        array(weights(rng, [4, 3, 3, 3], np.float16), "W", "typed"),
        *bn_params(rng, 4, np.float16, field_kind="typed"),
    ]
    model = build_model(nodes, [value("x", [1, 3, 5, 5], FLOAT16)], ["y"], inits, elem=FLOAT16)
    return EdgeCase(
        "conv-bn-float16-int32-data",
        model,
        [normal_feeds(rng, {"x": [1, 3, 5, 5]}, np.float16)],
        {"bn": outcome(FOLDED)},
        dtype=np.dtype(np.float16),
    )


def constant_node_weight_in_float_data() -> EdgeCase:
    """The Conv weight is a Constant node whose value is in ``float_data``; BN → Gemm reads a
    ``float_data`` weight and bias (consumer fold)."""
    rng = np.random.default_rng(63)
    weight = array(weights(rng, [3, 3, 1, 1]), "Wc", "typed")
    nodes = [
        helper.make_node("Constant", [], ["W"], name="weight", value=weight),
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "y", name="bn"),
        helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
        bn_node("f", "fn", prefix="h", name="bn_before_gemm"),
        helper.make_node("Gemm", ["fn", "G", "GC"], ["z"], name="gemm", transB=1),
    ]
    inits = [
        *bn_params(rng, 3, field_kind="typed"),
        *bn_params(rng, 12, prefix="h", field_kind="typed"),
        array(weights(rng, [2, 12]), "G", "typed"),
        array(rng.standard_normal(2).astype(np.float32), "GC", "typed"),
    ]
    model = build_model(nodes, [value("x", [1, 3, 2, 2])], ["y", "z"], inits)
    return EdgeCase(
        "constant-node-float-data",
        model,
        [normal_feeds(rng, {"x": [1, 3, 2, 2]})],
        {"bn": outcome(FOLDED), "bn_before_gemm": outcome(FOLDED)},
    )


def _legacy(op: str, inputs: list[str], output: str, axis: int, name: str):  # type: ignore[no-untyped-def]
    return helper.make_node(op, inputs, [output], name=name, broadcast=1, axis=axis)


def opset6_matmul_row_affine_then_bn() -> EdgeCase:
    """Opset 6: ``MatMul → [4, 4] → Mul(c[4], axis=0) → Add(d[4], axis=0) → BN``: the Mul/Add
    act per *row*; read with numpy's rules (per column) they look like a per-channel affine
    of the square output and fold onto the wrong axis."""
    rng = np.random.default_rng(64)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
        _legacy("Mul", ["mm", "c"], "mc", 0, "row_scale"),
        _legacy("Add", ["mc", "d"], "md", 0, "row_shift"),
        bn_node("md", "y", name="bn", is_test=1),
    ]
    inits = [
        array(weights(rng, [4, 4]), "W"),
        array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "c"),
        array(rng.standard_normal(4).astype(np.float32), "d"),
        *bn_params(rng, 4),
    ]
    model = build_model(nodes, [value("x", [4, 4])], ["y"], inits, opset=6)
    return EdgeCase(
        "opset6-matmul-row-mul-add-bn",
        model,
        [normal_feeds(rng, {"x": [4, 4]})],
        {"bn": outcome(FOLDED, LEGACY_OPSET, "not-per-channel")},
    )


def opset6_matmul_row_affine_into_matmul() -> EdgeCase:
    """Opset 6, no BN: ``MatMul → Mul(c[4], axis=0) → Add(d[4], axis=0) → MatMul``: a per-row
    chain is not a per-feature affine of the second MatMul's input."""
    rng = np.random.default_rng(65)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
        _legacy("Mul", ["mm", "c"], "mc", 0, "row_scale"),
        _legacy("Add", ["mc", "d"], "md", 0, "row_shift"),
        helper.make_node("MatMul", ["md", "W2"], ["y"], name="matmul2"),
    ]
    inits = [
        array(weights(rng, [4, 4]), "W"),
        array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "c"),
        array(rng.standard_normal(4).astype(np.float32), "d"),
        array(weights(rng, [4, 4]), "W2"),
    ]
    model = build_model(nodes, [value("x", [4, 4])], ["y"], inits, opset=6)
    return EdgeCase("opset6-row-mul-add-matmul", model, [normal_feeds(rng, {"x": [4, 4]})], {})


def opset6_conv_channel_affine_bn_conv() -> EdgeCase:
    """Opset 6: ``Conv → Mul(c[4], axis=1) → Add(d[4], axis=1) → BN → Conv`` on
    ``[1, 4, 4, 4]`` (W == C, so numpy's reading would act on columns)."""
    rng = np.random.default_rng(66)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c0"], name="conv", kernel_shape=[1, 1]),
        _legacy("Mul", ["c0", "c"], "mc", 1, "channel_scale"),
        _legacy("Add", ["mc", "d"], "md", 1, "channel_shift"),
        bn_node("md", "n", name="bn", is_test=1),
        helper.make_node("Conv", ["n", "W2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    inits = [
        array(weights(rng, [4, 4, 1, 1]), "W"),
        array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "c"),
        array(rng.standard_normal(4).astype(np.float32), "d"),
        *bn_params(rng, 4),
        array(weights(rng, [3, 4, 1, 1]), "W2"),
    ]
    model = build_model(nodes, [value("x", [1, 4, 4, 4])], ["y"], inits, opset=6)
    return EdgeCase(
        "opset6-conv-mul-add-bn-conv",
        model,
        [normal_feeds(rng, {"x": [1, 4, 4, 4]})],
        {"bn": outcome(FOLDED, LEGACY_OPSET)},
    )


def _matmul_bn(opset: int, bn_first: bool, seed: int) -> EdgeCase:
    rng = np.random.default_rng(seed)
    legacy = {"is_test": 1} if opset <= 6 else {}
    if bn_first:
        nodes = [
            bn_node("x", "n", name="bn", **legacy),
            helper.make_node("MatMul", ["n", "W"], ["y"], name="matmul"),
        ]
        inits = [*bn_params(rng, 4), array(weights(rng, [4, 3]), "W")]
    else:
        nodes = [
            helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
            bn_node("mm", "y", name="bn", **legacy),
        ]
        inits = [array(weights(rng, [4, 3]), "W"), *bn_params(rng, 3)]
    model = build_model(nodes, [value("x", [2, 4])], ["y"], inits, opset=opset)
    expect = outcome(FOLDED) if opset >= 7 else outcome(FOLDED, LEGACY_OPSET)
    order = "bn-matmul" if bn_first else "matmul-bn"
    return EdgeCase(
        f"opset{opset}-{order}", model, [normal_feeds(rng, {"x": [2, 4]})], {"bn": expect}
    )


def opset6_matmul_bn() -> EdgeCase:
    """Opset 6 MatMul → BN: a new bias Add needs ``broadcast=1`` (or the fold is refused)."""
    return _matmul_bn(6, False, 67)


def opset6_bn_matmul() -> EdgeCase:
    """Opset 6 BN → MatMul: the consumer fold's new bias Add needs ``broadcast=1``."""
    return _matmul_bn(6, True, 68)


def opset7_matmul_bn() -> EdgeCase:
    """Opset 7 (numpy broadcasting, onnxruntime runs it): MatMul → BN folds."""
    return _matmul_bn(7, False, 69)


def opset7_bn_matmul() -> EdgeCase:
    return _matmul_bn(7, True, 70)


def _conv_bn(opset: int, seed: int, gemm: bool = False) -> EdgeCase:
    rng = np.random.default_rng(seed)
    legacy = {"is_test": 1} if opset <= 6 else {}
    if gemm:
        extra = {"broadcast": 1} if opset <= 6 else {}
        nodes = [
            helper.make_node("Gemm", ["x", "W", "B"], ["c"], name="gemm", **extra),
            bn_node("c", "y", name="bn", **legacy),
        ]
        inits = [array(weights(rng, [4, 3]), "W"), array(np.zeros(3, np.float32), "B")]
        shape = [2, 4]
    else:
        nodes = [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", kernel_shape=[3, 3]),
            bn_node("c", "y", name="bn", **legacy),
        ]
        inits = [array(weights(rng, [3, 2, 3, 3]), "W"), array(np.ones(3, np.float32), "B")]
        shape = [1, 2, 5, 5]
    inits += bn_params(rng, 3)
    model = build_model(nodes, [value("x", shape)], ["y"], inits, opset=opset)
    # Gemm-6 broadcasts C by its own rule: refused today with unsupported-opset.
    expect = outcome(FOLDED, LEGACY_OPSET) if gemm and opset <= 6 else outcome(FOLDED)
    layer = "gemm" if gemm else "conv"
    return EdgeCase(
        f"opset{opset}-{layer}-bn", model, [normal_feeds(rng, {"x": shape})], {"bn": expect}
    )


def opset6_conv_bn() -> EdgeCase:
    """Opset 6 Conv → BN: the bias is a Conv input, no broadcasting involved: folds."""
    return _conv_bn(6, 71)


def opset6_gemm_bn() -> EdgeCase:
    return _conv_bn(6, 72, gemm=True)


def opset9_conv_bn() -> EdgeCase:
    return _conv_bn(9, 73)


def opset9_gemm_bn() -> EdgeCase:
    return _conv_bn(9, 74, gemm=True)


def opset11_conv_bn() -> EdgeCase:
    return _conv_bn(11, 75)


CASES = [
    conv_bn_in_float_data,
    gemm_bn_matmul_in_double_data,
    conv_bn_float16_in_int32_data,
    constant_node_weight_in_float_data,
    opset6_matmul_row_affine_then_bn,
    opset6_matmul_row_affine_into_matmul,
    opset6_conv_channel_affine_bn_conv,
    opset6_matmul_bn,
    opset6_bn_matmul,
    opset7_matmul_bn,
    opset7_bn_matmul,
    opset6_conv_bn,
    opset6_gemm_bn,
    opset9_conv_bn,
    opset9_gemm_bn,
    opset11_conv_bn,
]

"""Class 7 (issue 10): every statement of a report is true of the written model.

Unnamed nodes are labelled ``<OpType:first output>``; a fold that renames an output (the BN's
graph output moves to the layer) changes the label, and the report must use the label the
written model has (the property checks every ``into`` and every kept BN). A MatMul whose
constant is its *left* operand (``W @ x``) has a constant weight: it may be refused, but not
as ``weight-not-constant``. (Outer-scope inputs reported as constants: ``edge_scopes``.)
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.builders.edges.build import (
    ANY_REASON,
    FOLDED,
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


def unnamed_conv_bn_graph_output() -> EdgeCase:
    """Unnamed ``Conv → BN → y`` (a graph output): the fold renames the Conv's output to
    ``y``, so the Conv's label in the written model is ``<Conv:y>``."""
    rng = np.random.default_rng(80)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3, 3]),
        bn_node("c", "y"),
    ]
    inits = [array(weights(rng, [4, 3, 3, 3]), "W"), *bn_params(rng, 4)]
    model = build_model(nodes, [value("x", [1, 3, 5, 5])], ["y"], inits)
    return EdgeCase(
        "unnamed-conv-bn-output",
        model,
        [normal_feeds(rng, {"x": [1, 3, 5, 5]})],
        {"<BatchNormalization:y>": outcome(FOLDED)},
    )


def unnamed_chain_of_two_folds() -> EdgeCase:
    """Unnamed ``Conv → BN → y1 (output) → Conv → BN → y2``: two renames in one model."""
    rng = np.random.default_rng(81)
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["c1"], kernel_shape=[1, 1]),
        bn_node("c1", "y1", prefix="a"),
        helper.make_node("Conv", ["y1", "W2"], ["c2"], kernel_shape=[1, 1]),
        bn_node("c2", "y2", prefix="b"),
    ]
    inits = [
        array(weights(rng, [3, 3, 1, 1]), "W1"),
        *bn_params(rng, 3, prefix="a"),
        array(weights(rng, [2, 3, 1, 1]), "W2"),
        *bn_params(rng, 2, prefix="b"),
    ]
    model = build_model(nodes, [value("x", [1, 3, 4, 4])], ["y1", "y2"], inits)
    return EdgeCase(
        "unnamed-two-renames",
        model,
        [normal_feeds(rng, {"x": [1, 3, 4, 4]})],
        {"<BatchNormalization:y1>": outcome(FOLDED), "<BatchNormalization:y2>": outcome(FOLDED)},
    )


def unnamed_bn_into_unnamed_gemm() -> EdgeCase:
    """Unnamed ``BN → Flatten → Gemm → y``, and an unnamed BN that stays (graph input and
    graph output on both sides): its label must exist in the written model."""
    rng = np.random.default_rng(82)
    nodes = [
        bn_node("x", "n", prefix="a"),
        helper.make_node("Flatten", ["n"], ["f"]),
        helper.make_node("Gemm", ["f", "G"], ["y"], transB=1),
        bn_node("u", "kept", prefix="b"),
    ]
    inits = [
        *bn_params(rng, 3, prefix="a"),
        array(weights(rng, [2, 12]), "G"),
        *bn_params(rng, 3, prefix="b"),
    ]
    model = build_model(
        nodes, [value("x", [1, 3, 2, 2]), value("u", [1, 3, 2, 2])], ["y", "kept"], inits
    )
    return EdgeCase(
        "unnamed-bn-gemm-and-kept",
        model,
        [normal_feeds(rng, {"x": [1, 3, 2, 2], "u": [1, 3, 2, 2]})],
        {
            "<BatchNormalization:n>": outcome(FOLDED),
            "<BatchNormalization:kept>": outcome(
                "no-linear-producer", "consumer-input-is-graph-output"
            ),
        },
    )


def _not_weight_not_constant(label: str):  # type: ignore[no-untyped-def]
    def check(original: object, result: object) -> None:
        for skip in result.report.skipped:  # type: ignore[attr-defined]
            if skip.bn == label:
                assert skip.reason != "weight-not-constant", f"false: {skip.detail}"

    return check


def left_constant_matmul_then_bn_on_its_rows() -> EdgeCase:
    """``MatMul(W[5,4], x[2,4,3]) → [2,5,3] → BN(5)``: the BN's channels are W's rows, so
    ``diag(s)·W`` and a ``t[5,1]`` bias fold it exactly; refusing is allowed, but W is a
    constant (never ``weight-not-constant``)."""
    rng = np.random.default_rng(83)
    nodes = [
        helper.make_node("MatMul", ["W", "x"], ["mm"], name="matmul"),
        bn_node("mm", "y", name="bn"),
    ]
    inits = [array(weights(rng, [5, 4]), "W"), *bn_params(rng, 5)]
    model = build_model(nodes, [value("x", [2, 4, 3])], ["y"], inits)
    return EdgeCase(
        "W-at-x-bn-on-rows",
        model,
        [normal_feeds(rng, {"x": [2, 4, 3]})],
        {"bn": outcome(FOLDED, ANY_REASON)},
        extra=_not_weight_not_constant("bn"),
    )


def left_constant_matmul_then_bn_on_columns() -> EdgeCase:
    """``MatMul(W[3,4], x[4,2]) → [3,2] → BN(2)``: the BN acts on x's columns, which W does
    not touch; refused, with a true reason (not ``weight-not-constant``)."""
    rng = np.random.default_rng(84)
    nodes = [
        helper.make_node("MatMul", ["W", "x"], ["mm"], name="matmul"),
        bn_node("mm", "y", name="bn"),
    ]
    inits = [array(weights(rng, [3, 4]), "W"), *bn_params(rng, 2)]
    model = build_model(nodes, [value("x", [4, 2])], ["y"], inits)
    return EdgeCase(
        "W-at-x-bn-on-columns",
        model,
        [normal_feeds(rng, {"x": [4, 2]})],
        {"bn": outcome(ANY_REASON)},
        extra=_not_weight_not_constant("bn"),
    )


def bn_then_left_constant_matmul() -> EdgeCase:
    """``BN(x[2,4]) → MatMul(W[3,2], ·) → [3,4]``: the BN's features are the columns W @ ·
    keeps; exact only as a column scale after the MatMul. Folded exactly or refused, never
    as ``weight-not-constant``."""
    rng = np.random.default_rng(85)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("MatMul", ["W", "n"], ["y"], name="matmul"),
    ]
    inits = [*bn_params(rng, 4), array(weights(rng, [3, 2]), "W")]
    model = build_model(nodes, [value("x", [2, 4])], ["y"], inits)
    return EdgeCase(
        "bn-then-W-at-x",
        model,
        [normal_feeds(rng, {"x": [2, 4]})],
        {"bn": outcome(FOLDED, ANY_REASON)},
        extra=_not_weight_not_constant("bn"),
    )


CASES = [
    unnamed_conv_bn_graph_output,
    unnamed_chain_of_two_folds,
    unnamed_bn_into_unnamed_gemm,
    left_constant_matmul_then_bn_on_its_rows,
    left_constant_matmul_then_bn_on_columns,
    bn_then_left_constant_matmul,
]

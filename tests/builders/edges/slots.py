"""Class 1 (issue 10): one tensor read in several input slots, by several nodes, by a
subgraph, or as a graph output. A fold may rewrite a tensor in place only when every use of
it belongs to the fold; here none is private, so each exact fold must copy and still fold."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.builders.edges.build import (
    FOLDED,
    EdgeCase,
    array,
    bn_node,
    bn_params,
    branch,
    build_model,
    normal_feeds,
    outcome,
    value,
    weights,
)


def gemm_same_weight_and_bias_then_bn() -> EdgeCase:
    """``Gemm(x, B, B)`` with square B (M == K == N) followed by BN: B is weight and bias."""
    rng = np.random.default_rng(10)
    nodes = [
        helper.make_node("Gemm", ["x", "B", "B"], ["y"], name="gemm"),
        bn_node("y", "z", name="bn"),
    ]
    inits = [array(weights(rng, [4, 4]), "B"), *bn_params(rng, 4)]
    model = build_model(nodes, [value("x", [4, 4])], ["z"], inits)
    return EdgeCase(
        "gemm-x-B-B-then-bn", model, [normal_feeds(rng, {"x": [4, 4]})], {"bn": outcome(FOLDED)}
    )


def bn_then_gemm_same_weight_and_bias() -> EdgeCase:
    """BN before ``Gemm(x, B, B)``: the consumer fold scales B's rows and shifts C = B."""
    rng = np.random.default_rng(11)
    nodes = [
        bn_node("x", "a", name="bn"),
        helper.make_node("Gemm", ["a", "B", "B"], ["z"], name="gemm"),
    ]
    inits = [array(weights(rng, [4, 4]), "B"), *bn_params(rng, 4)]
    model = build_model(nodes, [value("x", [4, 4])], ["z"], inits)
    return EdgeCase(
        "bn-then-gemm-x-B-B", model, [normal_feeds(rng, {"x": [4, 4]})], {"bn": outcome(FOLDED)}
    )


def gemm_transposed_same_weight_and_bias_then_bn() -> EdgeCase:
    """``Gemm(x, B, B, transB=1)`` then BN: the weight is read transposed, the bias not."""
    rng = np.random.default_rng(12)
    nodes = [
        helper.make_node("Gemm", ["x", "B", "B"], ["y"], name="gemm", transB=1, alpha=0.5),
        bn_node("y", "z", name="bn"),
    ]
    inits = [array(weights(rng, [3, 3]), "B"), *bn_params(rng, 3)]
    model = build_model(nodes, [value("x", [3, 3])], ["z"], inits)
    return EdgeCase(
        "gemm-x-B-B-transB-then-bn",
        model,
        [normal_feeds(rng, {"x": [3, 3]})],
        {"bn": outcome(FOLDED)},
    )


def conv_weight_read_by_another_conv() -> EdgeCase:
    """Conv → BN, and a second Conv reading the same weight (its output must not change)."""
    rng = np.random.default_rng(13)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[3, 3]),
        bn_node("c", "z", name="bn"),
        helper.make_node("Conv", ["x", "W"], ["other"], name="conv2", kernel_shape=[3, 3]),
    ]
    inits = [array(weights(rng, [3, 3, 3, 3]), "W"), *bn_params(rng, 3)]
    model = build_model(nodes, [value("x", [1, 3, 5, 5])], ["z", "other"], inits)
    return EdgeCase(
        "conv-weight-shared-with-conv",
        model,
        [normal_feeds(rng, {"x": [1, 3, 5, 5]})],
        {"bn": outcome(FOLDED)},
    )


def conv_weight_read_by_the_same_node_twice() -> EdgeCase:
    """``Conv(x, W, b)`` then BN, where the bias ``b`` is also the BN's β (one tensor, two
    roles): the folded bias ``s·b + (β − μ·s)`` must be computed from the original values."""
    rng = np.random.default_rng(14)
    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["z"], name="bn"),
    ]
    params = bn_params(rng, 3)
    inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *params]
    model = build_model(nodes, [value("x", [1, 3, 4, 4])], ["z"], inits)
    return EdgeCase(
        "conv-bias-is-bn-beta",
        model,
        [normal_feeds(rng, {"x": [1, 3, 4, 4]})],
        {"bn": outcome(FOLDED)},
    )


def conv_weight_captured_by_a_branch() -> EdgeCase:
    """Conv → BN in the main graph; an If branch reads the same weight from outer scope."""
    rng = np.random.default_rng(15)
    then = branch(
        [helper.make_node("Conv", ["x", "W"], ["t"], name="then_conv", kernel_shape=[1, 1])],
        [("t", [1, 2, 4, 4])],
        name="then",
    )
    other = branch(
        [
            helper.make_node("Relu", ["x"], ["e0"], name="else_relu"),
            helper.make_node("Conv", ["e0", "W"], ["e"], name="else_conv", kernel_shape=[1, 1]),
        ],
        [("e", [1, 2, 4, 4])],
        name="else",
    )
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "z", name="bn"),
        helper.make_node(
            "If", ["cond"], ["branch_out"], name="if", then_branch=then, else_branch=other
        ),
    ]
    inits = [array(weights(rng, [2, 3, 1, 1]), "W"), *bn_params(rng, 2)]
    model = build_model(
        nodes, [value("x", [1, 3, 4, 4]), value("cond", [], 9)], ["z", "branch_out"], inits
    )
    feeds = [
        {**normal_feeds(rng, {"x": [1, 3, 4, 4]}), "cond": np.array(flag)} for flag in (True, False)
    ]
    return EdgeCase("conv-weight-captured-by-if", model, feeds, {"bn": outcome(FOLDED)})


def conv_weight_is_graph_output() -> EdgeCase:
    """Conv → BN where the weight initializer is also a graph output (an output is a use)."""
    rng = np.random.default_rng(16)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "z", name="bn"),
        helper.make_node("Identity", ["W"], ["W_out"], name="weight_out"),
    ]
    inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
    model = build_model(nodes, [value("x", [1, 3, 4, 4])], ["z", "W_out"], inits)
    return EdgeCase(
        "conv-weight-also-output",
        model,
        [normal_feeds(rng, {"x": [1, 3, 4, 4]})],
        {"bn": outcome(FOLDED)},
    )


def bn_parameter_read_elsewhere() -> EdgeCase:
    """Conv → BN whose γ and μ are also read by a Mul and an Add (outputs must not change)."""
    rng = np.random.default_rng(17)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "z", name="bn"),
        helper.make_node("Mul", ["u", "g"], ["gu"], name="uses_gamma"),
        helper.make_node("Add", ["m", "m"], ["mm"], name="uses_mean_twice"),
    ]
    inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
    model = build_model(
        nodes, [value("x", [1, 3, 4, 4]), value("u", [3])], ["z", "gu", "mm"], inits
    )
    feeds = [normal_feeds(rng, {"x": [1, 3, 4, 4], "u": [3]})]
    return EdgeCase("bn-params-read-elsewhere", model, feeds, {"bn": outcome(FOLDED)})


def two_bns_share_parameters_into_shared_gemm() -> EdgeCase:
    """Two Gemm → BN pairs sharing one weight B (read as weight and bias by both) and one set
    of BN parameters: each fold copies; the two copies must not be merged into one."""
    rng = np.random.default_rng(18)
    nodes = [
        helper.make_node("Gemm", ["x", "B", "B"], ["y1"], name="gemm1"),
        bn_node("y1", "z1", name="bn1"),
        helper.make_node("Gemm", ["z1", "B", "B"], ["y2"], name="gemm2"),
        bn_node("y2", "z2", name="bn2"),
    ]
    inits = [array(weights(rng, [4, 4]), "B"), *bn_params(rng, 4)]
    model = build_model(nodes, [value("x", [4, 4])], ["z2"], inits)
    return EdgeCase(
        "two-gemm-x-B-B-bn-share-everything",
        model,
        [normal_feeds(rng, {"x": [4, 4]})],
        {"bn1": outcome(FOLDED), "bn2": outcome(FOLDED)},
    )


CASES = [
    gemm_same_weight_and_bias_then_bn,
    bn_then_gemm_same_weight_and_bias,
    gemm_transposed_same_weight_and_bias_then_bn,
    conv_weight_read_by_another_conv,
    conv_weight_read_by_the_same_node_twice,
    conv_weight_captured_by_a_branch,
    conv_weight_is_graph_output,
    bn_parameter_read_elsewhere,
    two_bns_share_parameters_into_shared_gemm,
]

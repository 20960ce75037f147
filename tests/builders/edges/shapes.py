"""Classes 3 and 4 (issue 10): shapes a fold must prove and keep.

3. Broadcast-up chains: ``x[N, 1, H, W] · c[1, C, 1, 1] + d`` has C channels only after the
   broadcast, so it is not a per-channel affine of ``x``; a consumer rewired onto ``x`` reads 1
   channel. A BN *after* the broadcast is per channel and folds as usual.
4. Rank-changing paths (Squeeze, Unsqueeze, Reshape, Flatten between BN and the layer): every
   tensor keeps its shape and rank, e.g. the bias ``b[1, K]`` after a MatMul of a squeezed
   ``[C]`` vector keeps the output ``[1, K]``.
"""

from __future__ import annotations

import numpy as np
import onnx
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


def _case(name, nodes, inputs, outputs, inits, expect, seed=0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    model = build_model(nodes, [value(n, s) for n, s in inputs.items()], outputs, inits)
    return EdgeCase(name, model, [normal_feeds(rng, inputs)], expect)


def broadcast_up_mul_add_into_conv() -> EdgeCase:
    """``x[1,1,4,4]·c[1,3,1,1] + d[1,3,1,1] → Conv(3 → 5)``: no BN; the chain must not be
    folded into the Conv as a 3-channel affine of the 1-channel x."""
    rng = np.random.default_rng(40)
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["xc"], name="mul"),
        helper.make_node("Add", ["xc", "d"], ["xd"], name="add"),
        helper.make_node("Conv", ["xd", "W"], ["y"], name="conv", kernel_shape=[3, 3]),
    ]
    inits = [
        array(rng.uniform(0.5, 2, [1, 3, 1, 1]).astype(np.float32), "c"),
        array(rng.standard_normal([1, 3, 1, 1]).astype(np.float32), "d"),
        array(weights(rng, [5, 3, 3, 3]), "W"),
    ]
    return _case("broadcast-up-mul-add-conv", nodes, {"x": [1, 1, 4, 4]}, ["y"], inits, {}, 40)


def broadcast_up_mul_then_bn_into_conv() -> EdgeCase:
    """``x[1,1,4,4]·c[1,3,1,1] → BN(3) → Conv``: the BN is per channel on the 3-channel
    product and folds into the Conv (no padding); the Mul must stay in front of it."""
    rng = np.random.default_rng(41)
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["xc"], name="mul"),
        bn_node("xc", "n", name="bn"),
        helper.make_node("Conv", ["n", "W"], ["y"], name="conv", kernel_shape=[3, 3]),
    ]
    inits = [
        array(rng.uniform(0.5, 2, [1, 3, 1, 1]).astype(np.float32), "c"),
        *bn_params(rng, 3),
        array(weights(rng, [5, 3, 3, 3]), "W"),
    ]
    return _case(
        "broadcast-up-mul-bn-conv",
        nodes,
        {"x": [1, 1, 4, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        41,
    )


def broadcast_up_add_then_bn_into_conv() -> EdgeCase:
    """``x[2,1,4,4] + d[1,3,1,1] → BN(3) → Conv`` (symbolic-free batch 2)."""
    rng = np.random.default_rng(42)
    nodes = [
        helper.make_node("Add", ["x", "d"], ["xd"], name="add"),
        bn_node("xd", "n", name="bn"),
        helper.make_node("Conv", ["n", "W"], ["y"], name="conv", kernel_shape=[1, 1]),
    ]
    inits = [
        array(rng.standard_normal([1, 3, 1, 1]).astype(np.float32), "d"),
        *bn_params(rng, 3),
        array(weights(rng, [4, 3, 1, 1]), "W"),
    ]
    return _case(
        "broadcast-up-add-bn-conv",
        nodes,
        {"x": [2, 1, 4, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        42,
    )


def broadcast_up_mul_add_into_matmul() -> EdgeCase:
    """``x[2,1]·c[1,4] + d[1,4] → MatMul(W[4,3])``: no BN; must not become a 4-feature
    affine of the 1-feature x."""
    rng = np.random.default_rng(43)
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["xc"], name="mul"),
        helper.make_node("Add", ["xc", "d"], ["xd"], name="add"),
        helper.make_node("MatMul", ["xd", "W"], ["y"], name="matmul"),
    ]
    inits = [
        array(rng.uniform(0.5, 2, [1, 4]).astype(np.float32), "c"),
        array(rng.standard_normal([1, 4]).astype(np.float32), "d"),
        array(weights(rng, [4, 3]), "W"),
    ]
    return _case("broadcast-up-mul-add-matmul", nodes, {"x": [2, 1]}, ["y"], inits, {}, 43)


def broadcast_up_mul_then_bn_into_matmul() -> EdgeCase:
    """``x[2,1]·c[1,4] → BN(4) → MatMul(W[4,3])``: the BN folds into the MatMul."""
    rng = np.random.default_rng(44)
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["xc"], name="mul"),
        bn_node("xc", "n", name="bn"),
        helper.make_node("MatMul", ["n", "W"], ["y"], name="matmul"),
    ]
    inits = [
        array(rng.uniform(0.5, 2, [1, 4]).astype(np.float32), "c"),
        *bn_params(rng, 4),
        array(weights(rng, [4, 3]), "W"),
    ]
    return _case(
        "broadcast-up-mul-bn-matmul",
        nodes,
        {"x": [2, 1]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        44,
    )


def one_channel_conv_broadcast_up_then_bn() -> EdgeCase:
    """``Conv(3 → 1) → ·c[1,3,1,1] → BN(3)``: the BN's channels appear only after the
    broadcast, so it cannot fold into the 1-channel Conv (refused, any reason)."""
    rng = np.random.default_rng(45)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y1"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Mul", ["y1", "c"], ["yc"], name="mul"),
        bn_node("yc", "z", name="bn"),
    ]
    inits = [
        array(weights(rng, [1, 3, 1, 1]), "W"),
        array(rng.uniform(0.5, 2, [1, 3, 1, 1]).astype(np.float32), "c"),
        *bn_params(rng, 3),
    ]
    return _case(
        "conv-1ch-broadcast-up-bn",
        nodes,
        {"x": [1, 3, 4, 4]},
        ["z"],
        inits,
        {"bn": outcome(ANY_REASON)},
        45,
    )


def _squeeze_axes() -> onnx.TensorProto:
    return array(np.array([0], np.int64), "axes0")


def bn_squeeze_matmul_add_keeps_rank() -> EdgeCase:
    """``x[1,C] → BN → Squeeze → [C] → MatMul → [K] → Add(b[1,K]) → [1,K]`` (the issue's
    case): folded, and the output stays ``[1, K]``."""
    rng = np.random.default_rng(46)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("Squeeze", ["n", "axes0"], ["sq"], name="squeeze"),
        helper.make_node("MatMul", ["sq", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b1"], ["y"], name="bias"),
    ]
    inits = [
        *bn_params(rng, 4),
        _squeeze_axes(),
        array(weights(rng, [4, 3]), "W"),
        array(rng.standard_normal([1, 3]).astype(np.float32), "b1"),
    ]
    return _case(
        "bn-squeeze-matmul-add-1xK",
        nodes,
        {"x": [1, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        46,
    )


def bn_squeeze_matmul_without_bias() -> EdgeCase:
    """``x[1,C] → BN → Squeeze → MatMul → [K]``: a new bias must be ``[K]``, not ``[1, K]``."""
    rng = np.random.default_rng(47)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("Squeeze", ["n", "axes0"], ["sq"], name="squeeze"),
        helper.make_node("MatMul", ["sq", "W"], ["y"], name="matmul"),
    ]
    inits = [*bn_params(rng, 4), _squeeze_axes(), array(weights(rng, [4, 3]), "W")]
    return _case(
        "bn-squeeze-matmul-K",
        nodes,
        {"x": [1, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        47,
    )


def bn_unsqueeze_matmul_add() -> EdgeCase:
    """``x[1,C] → BN → Unsqueeze(0) → [1,1,C] → MatMul → Add(b[K]) → [1,1,K]``."""
    rng = np.random.default_rng(48)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["us"], name="unsqueeze"),
        helper.make_node("MatMul", ["us", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b1"], ["y"], name="bias"),
    ]
    inits = [
        *bn_params(rng, 4),
        _squeeze_axes(),
        array(weights(rng, [4, 3]), "W"),
        array(rng.standard_normal([3]).astype(np.float32), "b1"),
    ]
    return _case(
        "bn-unsqueeze-matmul-add",
        nodes,
        {"x": [1, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        48,
    )


def bn_reshape_matmul_rank1_bias() -> EdgeCase:
    """``x[1,C,1,1] → BN → Reshape[1,C] → MatMul → Add(b[K]) → [1,K]``."""
    rng = np.random.default_rng(49)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("Reshape", ["n", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b1"], ["y"], name="bias"),
    ]
    inits = [
        *bn_params(rng, 4),
        array(np.array([1, 4], np.int64), "shape"),
        array(weights(rng, [4, 3]), "W"),
        array(rng.standard_normal([3]).astype(np.float32), "b1"),
    ]
    return _case(
        "bn-reshape-matmul-add",
        nodes,
        {"x": [1, 4, 1, 1]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        49,
    )


def matmul_unsqueeze_bn_producer() -> EdgeCase:
    """``x[C] → MatMul → [K] → Unsqueeze(0) → [1,K] → BN(K)``: a producer fold puts the bias
    before the Unsqueeze, where it must be ``[K]`` (a ``[1,K]`` bias would make the Unsqueeze
    output rank 3). Folded exactly, or refused."""
    rng = np.random.default_rng(50)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
        helper.make_node("Unsqueeze", ["mm", "axes0"], ["us"], name="unsqueeze"),
        bn_node("us", "y", name="bn"),
    ]
    inits = [array(weights(rng, [4, 3]), "W"), _squeeze_axes(), *bn_params(rng, 3)]
    return _case(
        "matmul-K-unsqueeze-bn",
        nodes,
        {"x": [4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED, ANY_REASON)},
        50,
    )


def matmul_rank_raising_bias_then_bn() -> EdgeCase:
    """``MatMul(x[2,C]) → Add(b[1,1,K]) → [1,2,K] → Reshape[2,K] → BN(K)``: a producer fold
    that rewrites the bias must keep it ``[1,1,K]`` (the Add raises the rank)."""
    rng = np.random.default_rng(51)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b3"], ["a"], name="bias"),
        helper.make_node("Reshape", ["a", "shape"], ["r"], name="reshape"),
        bn_node("r", "y", name="bn"),
    ]
    inits = [
        array(weights(rng, [4, 3]), "W"),
        array(rng.standard_normal([1, 1, 3]).astype(np.float32), "b3"),
        array(np.array([2, 3], np.int64), "shape"),
        *bn_params(rng, 3),
    ]
    return _case(
        "matmul-rank-raising-bias-reshape-bn",
        nodes,
        {"x": [2, 4]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED, ANY_REASON)},
        51,
    )


def bn_flatten_gemm_without_bias() -> EdgeCase:
    """``x[1,C,2,2] → BN → Flatten → Gemm(no C) → [1,K]``: the new C must broadcast to
    ``[1, K]`` and leave the output rank alone."""
    rng = np.random.default_rng(52)
    nodes = [
        bn_node("x", "n", name="bn"),
        helper.make_node("Flatten", ["n"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W"], ["y"], name="gemm", transB=1),
    ]
    inits = [*bn_params(rng, 3), array(weights(rng, [5, 12]), "W")]
    return _case(
        "bn-flatten-gemm-no-bias",
        nodes,
        {"x": [1, 3, 2, 2]},
        ["y"],
        inits,
        {"bn": outcome(FOLDED)},
        52,
    )


CASES = [
    broadcast_up_mul_add_into_conv,
    broadcast_up_mul_then_bn_into_conv,
    broadcast_up_add_then_bn_into_conv,
    broadcast_up_mul_add_into_matmul,
    broadcast_up_mul_then_bn_into_matmul,
    one_channel_conv_broadcast_up_then_bn,
    bn_squeeze_matmul_add_keeps_rank,
    bn_squeeze_matmul_without_bias,
    bn_unsqueeze_matmul_add,
    bn_reshape_matmul_rank1_bias,
    matmul_unsqueeze_bn_producer,
    matmul_rank_raising_bias_then_bn,
    bn_flatten_gemm_without_bias,
]

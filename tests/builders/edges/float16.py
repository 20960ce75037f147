"""Class 8 (issue 10): float16 folds beyond the promised bound.

- A tiny BN scale makes the folded weights float16 subnormals (few significant bits): the
  fold's own rounding error is several percent, so it is refused (``FLOAT16_ROUNDING``), not
  applied with a large ``rounding_error``.
- A consumer fold on a float16 path hands the *un-normalised* activations (here ~2000) to
  the layer, with weights scaled up by s = γ/√(σ²+ε) (here ~100): products and partial sums
  pass float16's 65504 where the original's stay small. Unless the activation range is proven
  safe, such folds are refused (``FLOAT16_CONSUMER``); BN → Flatten → Gemm, BN → MatMul, and
  the same after a ``Cast`` to float16.
- An ordinary float16 Conv → BN still folds.

The property compares float16 outputs with the same model run in float32 (README bound).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.builders.edges.build import (
    FLOAT16_CONSUMER,
    FLOAT16_ROUNDING,
    FOLDED,
    EdgeCase,
    array,
    bn_node,
    build_model,
    outcome,
    value,
    weights,
)

HALF = np.float16
FLOAT16 = TensorProto.FLOAT16


def _bn(
    prefix: str, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> list:
    return [
        array(np.asarray(v).astype(HALF), prefix + role)
        for role, v in zip("gbmv", (gamma, beta, mean, var), strict=True)
    ]


def conv_bn_tiny_scale_subnormal_weights() -> EdgeCase:
    """float16 ``Conv → BN`` with γ = ±1e-4 and σ² = 1e4, so s ≈ 1e-6: the folded weights
    (~2e-7) are float16 subnormals a few steps of 6e-8 apart: tens of percent per weight."""
    rng = np.random.default_rng(90)
    channels = 4
    gamma = 1e-4 * rng.choice([-1.0, 1.0], channels)
    params = _bn("", gamma, np.zeros(channels), np.zeros(channels), np.full(channels, 1e4))
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[3, 3]),
        bn_node("c", "y", name="bn"),
    ]
    inits = [array(weights(rng, [channels, 3, 3, 3], HALF), "W"), *params]
    model = build_model(nodes, [value("x", [1, 3, 5, 5], FLOAT16)], ["y"], inits, elem=FLOAT16)
    feeds = {"x": rng.standard_normal([1, 3, 5, 5]).astype(HALF)}
    return EdgeCase(
        "fp16-conv-bn-subnormal-weights",
        model,
        [feeds],
        {"bn": outcome(FLOAT16_ROUNDING)},
        dtype=np.dtype(HALF),
    )


def gemm_bn_large_cancelling_bias() -> EdgeCase:
    """float16 ``Gemm → BN`` on inputs ~100: the Gemm output ~100·ΣW is removed again by a
    BN with μ at that value and s = 100, so the folded bias ``−μ·s`` (~1e4, float16 step 8)
    cancels down to outputs of a few units. Folded within the README bound, or refused."""
    rng = np.random.default_rng(91)
    weight = weights(rng, [6, 4], HALF)
    mean = (100.0 * weight.astype(np.float64).sum(axis=0)).astype(HALF)
    params = _bn("", np.ones(4), rng.standard_normal(4), mean, np.full(4, 1e-4))
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["g0"], name="gemm"),
        bn_node("g0", "y", name="bn"),
    ]
    model = build_model(
        nodes, [value("x", [3, 6], FLOAT16)], ["y"], [array(weight, "W"), *params], elem=FLOAT16
    )
    feeds = {"x": (100.0 + 0.05 * rng.standard_normal([3, 6])).astype(HALF)}
    return EdgeCase(
        "fp16-gemm-bn-cancelling-bias",
        model,
        [feeds],
        {"bn": outcome(FOLDED, FLOAT16_ROUNDING)},
        dtype=np.dtype(HALF),
    )


def _consumer_case(name: str, consumer: str, cast: bool, seed: int) -> EdgeCase:
    """``x (~2000) → [Cast to float16] → BN(μ = 2000, s ≈ 100) → Flatten → Gemm/MatMul``,
    weights of alternating sign so the folded bias stays finite while the products do not."""
    rng = np.random.default_rng(seed)
    channels, features, outputs = 2, 8, 3
    params = _bn(
        "",
        np.ones(channels),
        np.zeros(channels),
        np.full(channels, 2000.0),
        np.full(channels, 1e-4),
    )
    signs = np.where(np.arange(features) % 2 == 0, 1.0, -1.0)
    weight = (0.35 * signs[:, None] * rng.uniform(0.9, 1.1, [features, outputs])).astype(HALF)
    nodes = []
    source = "x"
    if cast:
        nodes.append(helper.make_node("Cast", ["x"], ["x16"], name="to_half", to=FLOAT16))
        source = "x16"
    nodes += [
        bn_node(source, "n", name="bn"),
        helper.make_node("Flatten", ["n"], ["f"], name="flatten"),
    ]
    if consumer == "Gemm":
        nodes.append(helper.make_node("Gemm", ["f", "W", "C"], ["y"], name="gemm"))
    else:
        nodes += [
            helper.make_node("MatMul", ["f", "W"], ["mm"], name="matmul"),
            helper.make_node("Add", ["mm", "C"], ["y"], name="bias"),
        ]
    inits = [*params, array(weight, "W"), array(np.zeros(outputs, HALF), "C")]
    input_elem = TensorProto.FLOAT if cast else FLOAT16
    model = build_model(
        nodes, [value("x", [1, channels, 2, 2], input_elem)], ["y"], inits, elem=FLOAT16
    )
    x = 2000.0 + rng.integers(-3, 4, [1, channels, 2, 2])  # exact in float16 (step 1 or 2)
    feeds = {"x": x.astype(np.float32 if cast else HALF)}
    return EdgeCase(name, model, [feeds], {"bn": outcome(FLOAT16_CONSUMER)}, dtype=np.dtype(HALF))


def bn_flatten_gemm_unnormalised_overflow() -> EdgeCase:
    return _consumer_case("fp16-bn-flatten-gemm-range", "Gemm", False, 92)


def bn_flatten_matmul_unnormalised_overflow() -> EdgeCase:
    return _consumer_case("fp16-bn-flatten-matmul-range", "MatMul", False, 93)


def cast_bn_flatten_gemm_unnormalised_overflow() -> EdgeCase:
    return _consumer_case("fp16-cast-bn-flatten-gemm-range", "Gemm", True, 94)


def cast_bn_flatten_matmul_unnormalised_overflow() -> EdgeCase:
    return _consumer_case("fp16-cast-bn-flatten-matmul-range", "MatMul", True, 95)


def conv_bn_float16_ordinary() -> EdgeCase:
    """An ordinary float16 Conv → BN (γ ~ 1, σ² ~ 1): folds, as it does today."""
    rng = np.random.default_rng(96)
    params = _bn(
        "",
        rng.uniform(0.5, 2, 4),
        rng.standard_normal(4),
        rng.standard_normal(4),
        rng.uniform(0.2, 3, 4),
    )
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[3, 3]),
        bn_node("c", "y", name="bn"),
    ]
    inits = [array(weights(rng, [4, 3, 3, 3], HALF), "W"), *params]
    model = build_model(nodes, [value("x", [1, 3, 5, 5], FLOAT16)], ["y"], inits, elem=FLOAT16)
    feeds = {"x": rng.standard_normal([1, 3, 5, 5]).astype(HALF)}
    return EdgeCase(
        "fp16-conv-bn-ordinary", model, [feeds], {"bn": outcome(FOLDED)}, dtype=np.dtype(HALF)
    )


CASES = [
    conv_bn_tiny_scale_subnormal_weights,
    gemm_bn_large_cancelling_bias,
    bn_flatten_gemm_unnormalised_overflow,
    bn_flatten_matmul_unnormalised_overflow,
    cast_bn_flatten_gemm_unnormalised_overflow,
    cast_bn_flatten_matmul_unnormalised_overflow,
    conv_bn_float16_ordinary,
]

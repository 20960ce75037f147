"""Every failure the fuzzer found, as an explicit test (smallest form found by hand).

Each case is a chain of layers on a ``[1, width]`` (or ``[1, C, H, W]``) input, checked with
the fuzzer's own property (``check_optimize_is_safe``: no crash, exact or refused with a
reason, idempotent). Engine bugs that are not fixed yet are ``xfail(strict=True)``: when the
engine is fixed the test passes, strict mode fails it, and the mark must go.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.helpers import make_model, random_bn_params, tensor
from tests.reliability.fuzz_property import assert_no_worse_in_float16, check_optimize_is_safe


def chain(ops: list[str], *, width: int = 2, seed: int = 0) -> onnx.ModelProto:
    """``x -> ops[0] -> ops[1] -> ...``: ``BN``, ``MatMul``/``Gemm`` (``width`` square), ``Mul``."""
    rng = np.random.default_rng(seed)
    nodes, values, names = [], [], []
    current = "x"
    for index, op in enumerate(ops):
        output = f"t{index}"
        if op == "BN":
            params = [f"{role}{index}" for role in ("gamma", "beta", "mean", "var")]
            values += random_bn_params(rng, width)
            names += params
            nodes.append(
                helper.make_node(
                    "BatchNormalization", [current, *params], [output], name=f"bn{index}"
                )
            )
        elif op == "Mul":  # by a per-channel constant
            values.append(rng.uniform(0.5, 2.0, width).astype(np.float32))
            names.append(f"k{index}")
            nodes.append(
                helper.make_node("Mul", [current, f"k{index}"], [output], name=f"mul{index}")
            )
        else:
            values.append(rng.standard_normal([width, width]).astype(np.float32))
            names.append(f"W{index}")
            nodes.append(
                helper.make_node(op, [current, f"W{index}"], [output], name=f"{op}{index}")
            )
        current = output
    return make_model(
        nodes, [tensor("x", [1, width])], [tensor(current, None)], values, names=names
    )


def _check(model: onnx.ModelProto, seed: int = 1) -> None:
    feeds = {"x": np.random.default_rng(seed).standard_normal([1, 2]).astype(np.float32)}
    check_optimize_is_safe(model, feeds, np.dtype(np.float32))


@pytest.mark.parametrize(
    "ops",
    [
        # found by the fuzzer (shrunk): BN(x) -> MatMul -> Gemm
        ["BN", "MatMul", "Gemm"],
        ["BN", "MatMul", "BN", "Gemm"],
        # found by the fuzzer (shrunk): BN(x) -> MatMul -> BN -> Mul by a per-channel constant
        ["BN", "MatMul", "BN", "Mul"],
        ["BN", "MatMul", "Mul"],
        # found by the fuzzer (shrunk): MatMul -> BN -> MatMul -> BN -> Gemm gave a wrong
        # result: a consumer fold rewrote the next bias Add, which another fold of the same
        # round read with its old constant
        ["MatMul", "BN", "MatMul", "BN", "Gemm"],
        # neighbours of those, which always passed
        ["BN", "MatMul"],
        ["BN", "MatMul", "MatMul"],
        ["BN", "Gemm", "Gemm"],
        ["BN", "MatMul", "BN"],
        ["MatMul", "BN", "MatMul", "BN"],
        ["MatMul", "BN", "MatMul", "BN", "MatMul"],
        ["MatMul", "BN", "MatMul", "Gemm"],
    ],
    ids="-".join,
)
def test_matmul_gemm_chains(ops: list[str]) -> None:
    _check(chain(ops))


def test_bn_reshape_matmul_mul_with_symbolic_batch_is_a_fixed_point() -> None:
    """Found by the fuzzer (shrunk by hand): BN(x[N,1,3,3]) -> Reshape[0,-1] -> MatMul -> Mul."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["a"], name="bn"),
        helper.make_node("Reshape", ["a", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "W"], ["y"], name="matmul"),
        helper.make_node("Mul", ["y", "k"], ["out"], name="mul"),
    ]
    values = [
        *random_bn_params(rng, 1),
        np.array([0, -1], np.int64),
        rng.standard_normal([9, 2]).astype(np.float32),
        np.array([-1.8, 0.9], np.float32),
    ]
    names = ["g", "b", "m", "v", "shape", "W", "k"]
    model = make_model(
        nodes, [tensor("x", ["N", 1, 3, 3])], [tensor("out", None)], values, names=names
    )
    feeds = {"x": rng.standard_normal([1, 1, 3, 3]).astype(np.float32)}
    check_optimize_is_safe(model, feeds, np.dtype(np.float32))


@pytest.mark.parametrize(
    ("tail", "channels"),
    [
        (["BN", "BN"], 1),
        (["BN", "BN"], 3),
        (["BN", "Mul"], 3),  # one channel: the Mul is a scalar, which is not a site
        (["BN", "Reshape", "BN", "Mul"], 3),
    ],
    ids=["BN-BN-1ch", "BN-BN-3ch", "BN-Mul", "BN-Reshape-BN-Mul"],
)
def test_matmul_reshape_then_two_affine_ops_is_a_fixed_point(
    tail: list[str], channels: int
) -> None:
    """Found by the fuzzer (shrunk by hand): MatMul -> Reshape[2,C,1,1] -> BN -> BN (or Mul)."""
    rng = np.random.default_rng(0)
    values: list[np.ndarray] = [
        rng.standard_normal([9, channels]).astype(np.float32),
        np.array([2, channels, 1, 1], np.int64),
    ]
    names = ["W", "shape"]
    ops = ["MatMul", "Reshape", *tail] if tail[1] != "Reshape" else ["MatMul", *tail]
    nodes, current = [], "x"
    for index, op in enumerate(ops):
        output = f"t{index}"
        if op == "MatMul":
            inputs = [current, "W"]
        elif op == "Reshape":
            inputs = [current, "shape"]
        elif op == "Mul":
            values.append(rng.uniform(0.5, 2.0, [channels, 1, 1]).astype(np.float32))
            names.append(f"k{index}")
            inputs = [current, f"k{index}"]
        else:
            params = [f"{role}{index}" for role in ("g", "b", "m", "v")]
            values += random_bn_params(rng, channels)
            names += params
            op, inputs = "BatchNormalization", [current, *params]
        nodes.append(helper.make_node(op, inputs, [output], name=f"{op.lower()}{index}"))
        current = output
    model = make_model(nodes, [tensor("x", [2, 9])], [tensor(current, None)], values, names=names)
    feeds = {"x": rng.standard_normal([2, 9]).astype(np.float32)}
    check_optimize_is_safe(model, feeds, np.dtype(np.float32))


def test_float16_oracle_tolerates_the_originals_own_rounding_and_overflow() -> None:
    """Found by the fuzzer as false alarms (AveragePool -> 3 BN -> ConvTranspose -> 4 BN,
    float16, tiny variances): the unfolded float16 model rounds after every BN, the tiny
    variances amplify that, and values near float16's limit overflow on one side only. The
    oracle therefore compares with the float32 model and allows twice the original's error,
    ignoring values past half of float16's range; a wrong fold still fails."""
    truth = np.array([1000.0, -2000.0, 40000.0, 1.0], np.float32)
    original = np.array([1000.0, -1990.0, np.inf, 1.0], np.float16)  # its own error: 10
    close = np.array([1015.0, -2000.0, 40000.0, 1.0], np.float16)  # 15 <= 2 * 10
    assert_no_worse_in_float16("y", close, original, truth, 2e-3, 2e-3)
    wrong = np.array([1000.0, -1900.0, 40000.0, 1.0], np.float16)  # 100 > 2 * 10 and 2e-3
    with pytest.raises(AssertionError, match="float16 folded error"):
        assert_no_worse_in_float16("y", wrong, original, truth, 2e-3, 2e-3)

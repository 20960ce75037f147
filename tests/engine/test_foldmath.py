"""Property-based tests of the folding math against a direct BatchNormalization."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bnfold.engine.foldmath import (
    Affine,
    bn_to_affine,
    conv_transpose_output_scale,
    round_to,
    scale_along,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
positive = st.floats(0.0010000000474974513, 1e3, allow_nan=False, allow_infinity=False, width=32)
channels = st.integers(1, 8)


def direct_bn(x: np.ndarray, gamma, beta, mean, var, eps) -> np.ndarray:  # type: ignore[no-untyped-def]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g, b, m, v = (np.asarray(a, np.float64).reshape(shape) for a in (gamma, beta, mean, var))
    return g * (x - m) / np.sqrt(v + np.float64(np.float32(eps))) + b


@st.composite
def bn_params(draw):  # type: ignore[no-untyped-def]
    c = draw(channels)
    vec = lambda elements: draw(hnp.arrays(np.float32, c, elements=elements))  # noqa: E731
    return vec(finite), vec(finite), vec(finite), vec(positive), draw(st.floats(1e-6, 1e-1))


@settings(max_examples=200, deadline=None)
@given(bn_params(), st.integers(0, 2**31 - 1))
def test_bn_to_affine_equals_direct_bn(params, seed) -> None:  # type: ignore[no-untyped-def]
    gamma, beta, mean, var, eps = params
    x = np.random.default_rng(seed).standard_normal((2, gamma.size, 3)) * 10
    affine = bn_to_affine(gamma, beta, mean, var, eps)
    folded = affine.scale.reshape(1, -1, 1) * x + affine.shift.reshape(1, -1, 1)
    np.testing.assert_allclose(
        folded,
        direct_bn(x, gamma, beta, mean, var, eps),
        rtol=1e-9,
        atol=1e-9 * np.max(np.abs(folded)) + 1e-9,
    )


@settings(max_examples=200, deadline=None)
@given(bn_params(), st.integers(1, 6), st.booleans(), st.integers(0, 2**31 - 1))
def test_producer_fold_of_a_dense_layer_equals_layer_then_bn(params, k, with_bias, seed) -> None:  # type: ignore[no-untyped-def]
    """``s·(W x + b) + t == (s ⊙ W) x + (s·b + t)`` with W's output channels on axis 0."""
    gamma, beta, mean, var, eps = params
    c = gamma.size
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((c, k))
    bias = rng.standard_normal(c) if with_bias else np.zeros(c)
    x = rng.standard_normal((4, k))
    affine = bn_to_affine(gamma, beta, mean, var, eps)
    folded_w = scale_along(weight, affine.scale, 0)
    folded_b = affine.scale * bias + affine.shift
    expected = direct_bn((x @ weight.T + bias)[:, :, None], gamma, beta, mean, var, eps)[:, :, 0]
    got = x @ folded_w.T + folded_b
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-7 * (1 + np.max(np.abs(expected))))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_conv_transpose_scale_matches_brute_force(group, in_per_group, out_per_group) -> None:  # type: ignore[no-untyped-def]
    scale = np.arange(1, group * out_per_group + 1, dtype=np.float64)
    factors = conv_transpose_output_scale(scale, group * in_per_group, group)
    for i in range(group * in_per_group):
        for j in range(out_per_group):
            assert factors[i, j] == scale[(i // in_per_group) * out_per_group + j]


@settings(max_examples=100, deadline=None)
@given(bn_params(), bn_params())
def test_affine_composition_is_function_composition(first, second) -> None:  # type: ignore[no-untyped-def]
    a = bn_to_affine(*first)
    b = bn_to_affine(*second)
    c = min(a.channels, b.channels)
    a, b = Affine(a.scale[:c], a.shift[:c]), Affine(b.scale[:c], b.shift[:c])
    x = np.linspace(-3, 3, c)
    np.testing.assert_allclose(
        a.then(b).scale * x + a.then(b).shift,
        b.scale * (a.scale * x + a.shift) + b.shift,
        rtol=1e-9,
        atol=1e-6,
    )


def test_round_to_reports_the_float16_rounding_error() -> None:
    exact = np.array([1.0, 1.0 + 2**-12, 3.0])
    rounded = round_to(exact, np.dtype(np.float16))
    assert rounded.value.dtype == np.float16
    assert rounded.max_abs_error == 2**-12
    assert rounded.max_rel_error == 2**-12 / 3.0
    assert round_to(exact, np.dtype(np.float64)).max_abs_error == 0.0
    # float32 rounding is within one ulp and not measured
    assert round_to(exact, np.dtype(np.float32)).max_rel_error == 0.0

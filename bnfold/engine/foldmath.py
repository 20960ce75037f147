"""The arithmetic of folding, in pure numpy, computed in float64 and rounded once.

Notation, per channel ``c``: BatchNormalization with scale γ, bias β, running mean μ,
running variance σ² and epsilon ε computes

    BN(x) = γ · (x − μ) / sqrt(σ² + ε) + β = s · x + t,
    s = γ / sqrt(σ² + ε),   t = β − μ · s.

Every per-channel affine (BN, or Mul/Add/Sub/Div by per-channel constants) is kept as such an
``(s, t)`` pair. A linear layer ``y = W x + b`` followed by the affine becomes

    s · (W x + b) + t = (s ⊙ W) x + (s · b + t)          (fold into the producer)

where ``s ⊙ W`` scales the output-channel slices of W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Affine:
    """``y = scale · x + shift`` per channel, both float64 vectors of one length."""

    scale: np.ndarray
    shift: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.scale.shape[0])

    def then(self, later: Affine) -> Affine:
        """The affine ``later ∘ self``: ``l.s · (s · x + t) + l.t``."""
        return Affine(later.scale * self.scale, later.scale * self.shift + later.shift)

    @staticmethod
    def identity(channels: int) -> Affine:
        return Affine(np.ones(channels), np.zeros(channels))


def bn_to_affine(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float
) -> Affine:
    """``s = γ / sqrt(σ² + ε)``, ``t = β − μ · s``, in float64."""
    gamma64, beta64, mean64, var64 = (
        np.asarray(a, dtype=np.float64).reshape(-1) for a in (gamma, beta, mean, var)
    )
    # ε is a float attribute (float32 in the proto); use the value the runtime uses.
    eps = float(np.float32(epsilon))
    scale = gamma64 / np.sqrt(var64 + eps)
    return Affine(scale, beta64 - mean64 * scale)


def along_axis(scale: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """``scale`` shaped to multiply the slices along ``axis`` of an ``ndim``-D tensor."""
    shape = [1] * ndim
    shape[axis] = scale.shape[0]
    return np.asarray(scale, dtype=np.float64).reshape(shape)


def scale_along(weight: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """Multiply the slices of ``weight`` along ``axis`` by ``scale`` (float64 result)."""
    return np.asarray(weight, dtype=np.float64) * along_axis(scale, axis, weight.ndim)


def conv_transpose_output_scale(scale: np.ndarray, in_channels: int, group: int) -> np.ndarray:
    """Per-element factors ``[C_in, C_out/group]`` for a ConvTranspose weight.

    ConvTranspose weights are ``[C_in, C_out/group, k...]``: input channel ``i`` belongs to
    group ``g = i // (C_in/group)`` and its slice ``j`` produces output channel
    ``g · (C_out/group) + j``.
    """
    out_per_group = scale.shape[0] // group
    in_per_group = in_channels // group
    group_of_input = np.arange(in_channels) // in_per_group
    index = group_of_input[:, None] * out_per_group + np.arange(out_per_group)[None, :]
    return scale[index]


@dataclass(frozen=True)
class Rounded:
    """A float64 result rounded once to the target dtype, with the error that cost.

    ``value`` is the array, or for a large weight still in its file a
    ``bnfold.storage.recipes.ScaledTensor`` that computes it while the output is written (it has the
    array's ``shape`` and ``dtype``; ``all_finite`` accepts it).
    """

    value: Any
    max_abs_error: float
    max_rel_error: float


# Rounding to these costs precision worth reporting; float32/float64 results of a float64
# computation are within one ulp, so their error is not measured (it would cost several
# passes over every weight of a large model).
LOW_PRECISION = frozenset({"float16", "bfloat16"})


def round_to(exact: np.ndarray, dtype: np.dtype) -> Rounded:
    """Cast ``exact`` (float64) to ``dtype`` once; for float16/bfloat16 measure the error.

    ``max_rel_error`` is relative to the largest magnitude in the tensor, which is what the
    rounding can cost the layer's output in the worst case.
    """
    with np.errstate(over="ignore"):  # an overflow is caught by the callers (reason "overflow")
        value = np.asarray(exact, dtype=np.float64).astype(dtype)
    if exact.size == 0 or np.dtype(dtype).name not in LOW_PRECISION:
        return Rounded(value, 0.0, 0.0)
    error = np.abs(value.astype(np.float64) - exact)
    peak = float(np.max(np.abs(exact)))
    max_abs = float(np.max(error))
    return Rounded(value, max_abs, max_abs / peak if peak > 0 else 0.0)


# The most a fold may lose by rounding its exact float64 result to a low-precision weight,
# relative to the tensor's largest magnitude: one unit in the last place (2^-10 for float16's
# 10-bit mantissa, 2^-7 for bfloat16's 7). Rounding a normal-range value costs at most half
# of that, so only folds that push a tensor into the subnormal range (a tiny BN scale) or
# cancel it down to nearly nothing exceed it; those are refused (``precision-loss``).
PRECISION_BOUND = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


def precision_lost(rounded: Rounded) -> bool:
    """Whether rounding cost more than ``PRECISION_BOUND`` of the tensor's dtype."""
    bound = PRECISION_BOUND.get(np.dtype(rounded.value.dtype).name)
    return bound is not None and rounded.max_rel_error > bound


# A low-precision producer fold is refused when its folded bias is more than this many times
# the BN's own output scale |γ| + |β|: the layer then computes a large value that the bias
# cancels, and the fold's one rounding of the weight (2^-11 relative in float16) is
# amplified by the same factor. A channel whose running mean lies this many standard
# deviations from the layer's bias is all but constant; real networks stay far below.
CANCELLATION_BOUND = 32.0


def cancellation(bias: np.ndarray, output_scale: np.ndarray) -> float:
    """``max |b'| / (|γ| + |β|)`` over channels (how much the folded layer must cancel)."""
    magnitude = np.abs(np.asarray(bias, np.float64))  # channels on the last axis
    ratio = magnitude / np.maximum(output_scale, np.finfo(np.float64).tiny)
    return float(np.max(ratio)) if ratio.size else 0.0


def all_finite(values: Any) -> bool:
    """No NaN or Inf, checked in the array's own dtype (no float64 copy of a large weight).

    A recipe (``Rounded.value`` of a large weight) answers from what its fold measured.
    """
    if not isinstance(values, np.ndarray) and hasattr(values, "all_finite"):
        return bool(values.all_finite())
    return bool(np.all(np.isfinite(values)))

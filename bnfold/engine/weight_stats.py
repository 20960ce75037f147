"""What a fold does to a weight's range, per output channel, and to its int8 rounding.

Folding a BN scale ``s`` into ``W`` multiplies output channel ``c`` by ``s[c]``; a consumer
fold scales input slices, which moves every output channel's range too. For a quantizer the
range is what matters. For channel ``c`` (the slice ``w_c`` of ``W`` along the output axis):

    max_c    = max |w_c|          median_c = median |w_c|
    Q_Δ(w)   = Δ · clip(round(w / Δ), −127, 127)        (symmetric int8)
    per-tensor:  Δ = max |W| / 127      per-channel:  Δ_c = max |w_c| / 127
    error_c  = ‖w_c − Q(w_c)‖₂ / ‖w_c‖₂                (0 for an all-zero channel)

Under per-tensor quantization one channel's large range sets ``Δ`` for all: a channel whose
scale was small keeps few of the 255 steps and its error grows. Per-channel quantization
gives each channel its own ``Δ_c``: a producer fold, which scales whole output channels,
leaves that error as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_STEPS = 127  # symmetric int8: [−127, 127]
WORST = 3  # channels named in a summary


@dataclass
class ChannelStats:
    """One state of a weight: ``max|W|`` and ``median|W|`` over the whole tensor, then per
    output channel (lists indexed by channel) the module doc's statistics."""

    max_abs: float
    median_abs: float
    channel_max_abs: list[float]
    channel_median_abs: list[float]
    per_tensor_error: list[float]
    per_channel_error: list[float]


@dataclass
class WeightRange:
    """A weight before and after one fold: ``layer``'s input ``weight``, output axis ``axis``."""

    layer: str
    weight: str
    axis: int
    before: ChannelStats
    after: ChannelStats

    def worst_channels(self, count: int = WORST) -> list[int]:
        """The channels with the largest per-tensor int8 error after the fold, worst first."""
        errors = self.after.per_tensor_error
        return sorted(range(len(errors)), key=lambda c: (-errors[c], c))[:count]

    def range_text(self) -> str:
        """``0.481→1.23``: ``max|W|`` before and after."""
        return f"{self.before.max_abs:.3g}→{self.after.max_abs:.3g}"

    def median_text(self) -> str:
        """``0.128→0.0937``: ``median|W|`` before and after."""
        return f"{self.before.median_abs:.3g}→{self.after.median_abs:.3g}"

    def worst_text(self, separator: str = ", ") -> str:
        """``5: 5.8% (was 0.51%), 1: 3.6% (was 0.64%), …``: per-tensor int8 error of the worst
        channels after the fold, and before it, one entry per channel joined by ``separator``."""
        before, after = self.before.per_tensor_error, self.after.per_tensor_error
        return separator.join(
            f"{c}: {_percent(after[c])} (was {_percent(before[c])})" for c in self.worst_channels()
        )

    def per_channel_text(self) -> str:
        """``≤ 0.56%``: the largest per-channel int8 error after (and before, if it moved)."""
        after = _percent(max(self.after.per_channel_error, default=0.0))
        before = _percent(max(self.before.per_channel_error, default=0.0))
        return f"≤ {after}" if after == before else f"≤ {after} (was ≤ {before})"


def _percent(error: float) -> str:
    return f"{100 * error:.2g}%"


def by_channel(weight: np.ndarray, axis: int, group: int = 1) -> np.ndarray:
    """``weight`` as ``[C_out, rest]`` in float64. A grouped ConvTranspose (``axis`` 1,
    ``[C_in, C_out/g, k…]``) has output channel ``g·(C_out/g) + j`` in group ``g``."""
    values = np.asarray(weight, dtype=np.float64)
    if group > 1:
        c_in, per_group = values.shape[0], values.shape[1]
        values = values.reshape(group, c_in // group, per_group, -1)
        return values.transpose(0, 2, 1, 3).reshape(group * per_group, -1)
    return np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)


def channel_stats(channels: np.ndarray) -> ChannelStats:
    """The module doc's statistics of ``channels`` (``[C, rest]``)."""
    magnitude = np.abs(channels)
    if not channels.size:
        empty = [0.0] * len(channels)
        return ChannelStats(0.0, 0.0, empty, empty, empty, empty)
    peaks = magnitude.max(axis=1)
    tensor_step = np.full(len(channels), peaks.max() / INT8_STEPS)
    return ChannelStats(
        _significant(float(peaks.max())),
        _significant(float(np.median(magnitude))),
        _rounded(peaks),
        _rounded(np.median(magnitude, axis=1)),
        _rounded(_int8_error(channels, tensor_step)),
        _rounded(_int8_error(channels, peaks / INT8_STEPS)),
    )


def _int8_error(channels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``‖w_c − Q_Δc(w_c)‖₂ / ‖w_c‖₂`` per channel, ``steps`` the ``Δ`` of each channel."""
    step = np.where(steps > 0, steps, 1.0)[:, None]
    quantized = np.clip(np.round(channels / step), -INT8_STEPS, INT8_STEPS) * step
    norms = np.linalg.norm(channels, axis=1)
    errors = np.linalg.norm(channels - quantized, axis=1)
    return np.divide(errors, norms, out=np.zeros_like(norms), where=norms > 0)


def _significant(value: float) -> float:
    """Four significant digits: a report, not a copy of the weight."""
    return float(f"{value:.4g}")


def _rounded(values: np.ndarray) -> list[float]:
    return [_significant(float(value)) for value in values]

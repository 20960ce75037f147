"""Latency statistics: pure numpy, no onnxruntime, no I/O.

Speedup is the ratio of medians ``speedup = median(original) / median(candidate)``; above 1
the candidate is faster. Its uncertainty comes from a percentile bootstrap: both samples are
resampled independently with replacement, the ratio of medians is recomputed for each
resample, and the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those
ratios bound the confidence interval (Efron & Tibshirani, *An Introduction to the Bootstrap*,
ch. 13). The median is used rather than the mean because latency samples carry rare large
outliers (scheduler preemption, page faults) that would dominate a mean.

Verdict rule (``verdict``): interval entirely above 1 (``ci_low > 1``) -> ``faster``;
entirely below 1 (``ci_high < 1``) -> ``slower``; containing 1 -> ``no significant
difference``. Ties count as containing 1.

Cost: ``resamples x n`` per sample. For a sample longer than ``m =
DEFAULT_MAX_BOOTSTRAP_SAMPLES`` each replicate draws only ``m`` values from the full sample
(the m-out-of-n bootstrap without rescaling): the replicates are still centred on the full
sample's median, and their spread is that of an ``m``-round run, wider than the full run's
(the median's standard error shrinks as 1/sqrt(n)). The interval is then conservative: in
a very long run it errs toward ``no significant difference``, not toward a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FASTER = "faster"
SLOWER = "slower"
NO_DIFFERENCE = "no significant difference"
VERDICTS = (FASTER, SLOWER, NO_DIFFERENCE)

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
DEFAULT_MAX_BOOTSTRAP_SAMPLES = 20_000
# Upper bound on resamples x draws held in memory at once (int64 indices + float64 values:
# 64 MiB).
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class LatencySummary:
    """Order statistics and moments of one latency sample, all in milliseconds.

    Percentiles use numpy's default linear interpolation between order statistics;
    ``std_ms`` is the sample standard deviation (``ddof=1``; 0 for a single sample).
    """

    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float


@dataclass(frozen=True)
class SpeedupEstimate:
    """``speedup = median(original) / median(candidate)`` and its bootstrap interval."""

    speedup: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    verdict: str


def summarize(samples_ms: ArrayLike) -> LatencySummary:
    """Summarize one latency sample (milliseconds); raise ValueError when it is empty."""
    values = _as_sample(samples_ms, "samples_ms")
    p50, p90, p99 = np.percentile(values, [50.0, 90.0, 99.0])
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return LatencySummary(
        samples=int(values.size),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(np.mean(values)),
        std_ms=std,
        min_ms=float(np.min(values)),
    )


def bootstrap_median_ratios(
    original_ms: ArrayLike,
    candidate_ms: ArrayLike,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    max_samples: int = DEFAULT_MAX_BOOTSTRAP_SAMPLES,
) -> NDArray[np.float64]:
    """Return ``resamples`` bootstrap replicates of ``median(original*) / median(candidate*)``.

    Each replicate draws ``min(len(original), max_samples)`` values from ``original`` and
    ``min(len(candidate), max_samples)`` from ``candidate``, uniformly with replacement and
    independently (see the module docstring for why at most ``max_samples``). The same
    ``seed`` and inputs always give the same replicates. Work is vectorized in chunks of
    resamples so that memory stays bounded.
    """
    original = _as_sample(original_ms, "original_ms")
    candidate = _as_sample(candidate_ms, "candidate_ms")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    rng = np.random.default_rng(seed)
    original_medians = _bootstrap_medians(original, resamples, min(original.size, max_samples), rng)
    candidate_medians = _bootstrap_medians(
        candidate, resamples, min(candidate.size, max_samples), rng
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return original_medians / candidate_medians


def speedup_estimate(
    original_ms: ArrayLike,
    candidate_ms: ArrayLike,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    max_samples: int = DEFAULT_MAX_BOOTSTRAP_SAMPLES,
) -> SpeedupEstimate:
    """Point estimate, percentile-bootstrap interval and verdict for the candidate's speedup.

    ``speedup = median(original) / median(candidate)``;
    ``[ci_low, ci_high]`` = quantiles ``(1 - confidence)/2`` and ``(1 + confidence)/2`` of
    ``bootstrap_median_ratios``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    original = _as_sample(original_ms, "original_ms")
    candidate = _as_sample(candidate_ms, "candidate_ms")
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(np.median(original) / np.median(candidate))
    ratios = bootstrap_median_ratios(
        original, candidate, resamples=resamples, seed=seed, max_samples=max_samples
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return SpeedupEstimate(
        speedup=point,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        verdict=verdict(float(low), float(high)),
    )


def verdict(ci_low: float, ci_high: float) -> str:
    """``faster`` when ``ci_low > 1``, ``slower`` when ``ci_high < 1``, else no difference."""
    if ci_low > 1.0:
        return FASTER
    if ci_high < 1.0:
        return SLOWER
    return NO_DIFFERENCE


def slower_beyond(ci_high: float, percent: float) -> bool:
    """True when the candidate is significantly slower by more than ``percent`` percent.

    Defined on the speedup interval: ``ci_high < 1 - percent / 100``. In words, even the most
    favourable end of the confidence interval says the candidate runs at less than
    ``(100 - percent)`` % of the original's speed (1/latency). ``percent = 0`` trips on any
    significant slowdown; ``percent = 10`` trips when the candidate's median latency is,
    with the stated confidence, above ``1 / 0.9 = 1.11`` times the original's.
    """
    if not 0.0 <= percent < 100.0:
        raise ValueError(f"percent must be in [0, 100), got {percent}")
    return ci_high < 1.0 - percent / 100.0


def thin(sample: NDArray[np.float64], max_samples: int) -> NDArray[np.float64]:
    """At most ``max_samples`` values of ``sample``, evenly spaced over it (order kept);
    for plots of long runs."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    if sample.size <= max_samples:
        return sample
    return sample[np.linspace(0, sample.size - 1, max_samples).round().astype(np.intp)]


def _bootstrap_medians(
    sample: NDArray[np.float64], resamples: int, draw_size: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // draw_size)
    medians = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        indices = rng.integers(0, sample.size, size=(stop - start, draw_size))
        medians[start:stop] = np.median(sample[indices], axis=1)
    return medians


def _as_sample(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array

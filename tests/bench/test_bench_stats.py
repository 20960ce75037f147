"""Statistics on synthetic latency samples whose true answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnfold.bench import stats
from bnfold.bench.stats import (
    FASTER,
    NO_DIFFERENCE,
    SLOWER,
    bootstrap_median_ratios,
    slower_beyond,
    speedup_estimate,
    summarize,
    verdict,
)


def lognormal_latencies(median_ms: float, size: int, seed: int, sigma: float = 0.25) -> np.ndarray:
    """Right-skewed samples like real latencies; the true median is exactly ``median_ms``."""
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(sigma * rng.standard_normal(size))


def test_summarize_known_sample() -> None:
    summary = summarize(np.arange(1, 101, dtype=float))  # 1, 2, ..., 100
    assert summary.samples == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p90_ms == pytest.approx(90.1)  # linear interpolation: 1 + 0.9 * 99
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.mean_ms == pytest.approx(50.5)
    assert summary.std_ms == pytest.approx(np.sqrt(100 * 101 / 12))  # ddof=1 of 1..n: n(n+1)/12
    assert summary.min_ms == 1.0


def test_summarize_single_sample_has_zero_spread() -> None:
    summary = summarize([2.5])
    assert (summary.p50_ms, summary.p99_ms, summary.std_ms, summary.min_ms) == (2.5, 2.5, 0.0, 2.5)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_summarize_rejects_empty_or_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(bad)


def test_point_estimate_is_ratio_of_medians() -> None:
    original = [10.0, 11.0, 12.0, 100.0, 9.0]  # median 11
    candidate = [5.0, 5.5, 6.0, 4.0]  # median 5.25
    estimate = speedup_estimate(original, candidate, resamples=200)
    assert estimate.speedup == pytest.approx(11.0 / 5.25)


def test_interval_contains_true_ratio_and_says_faster() -> None:
    original = lognormal_latencies(10.0, 400, seed=1)
    candidate = lognormal_latencies(8.0, 400, seed=2)
    estimate = speedup_estimate(original, candidate)
    assert estimate.ci_low < 1.25 < estimate.ci_high
    assert estimate.ci_low > 1.0
    assert estimate.verdict == FASTER


def test_clearly_slower_candidate_is_slower() -> None:
    estimate = speedup_estimate(lognormal_latencies(8.0, 300, 3), lognormal_latencies(10.0, 300, 4))
    assert estimate.ci_low < 0.8 < estimate.ci_high
    assert estimate.ci_high < 1.0
    assert estimate.verdict == SLOWER


def test_coverage_of_the_interval_is_near_nominal() -> None:
    """Over 40 independent experiments with true ratio 1.1, a 95% interval should miss the
    truth about twice; a broken (too narrow, or biased) interval misses far more often."""
    misses = 0
    for trial in range(40):
        original = lognormal_latencies(1.1, 150, seed=1000 + trial)
        candidate = lognormal_latencies(1.0, 150, seed=5000 + trial)
        estimate = speedup_estimate(original, candidate, resamples=1000, seed=trial)
        misses += not (estimate.ci_low <= 1.1 <= estimate.ci_high)
    assert misses <= 6


def test_equal_distributions_are_rarely_called_different() -> None:
    """Same distribution on both sides: at 95% confidence about 1 in 20 verdicts is a false
    'faster'/'slower'; far more would mean the interval is too narrow."""
    verdicts = [
        speedup_estimate(
            lognormal_latencies(2.0, 200, seed=100 + trial),
            lognormal_latencies(2.0, 200, seed=900 + trial),
            resamples=1000,
            seed=trial,
        ).verdict
        for trial in range(30)
    ]
    assert verdicts.count(NO_DIFFERENCE) >= 25


def test_same_seed_same_answer_other_seed_other_replicates() -> None:
    original = lognormal_latencies(3.0, 120, seed=7)
    candidate = lognormal_latencies(2.9, 120, seed=8)
    first = bootstrap_median_ratios(original, candidate, resamples=500, seed=42)
    again = bootstrap_median_ratios(original, candidate, resamples=500, seed=42)
    other = bootstrap_median_ratios(original, candidate, resamples=500, seed=43)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert speedup_estimate(original, candidate, seed=42) == speedup_estimate(
        original, candidate, seed=42
    )


def test_long_samples_draw_fewer_values_and_widen_the_interval() -> None:
    """m-out-of-n: with max_samples below the sample size the replicates stay centred on the
    full-sample ratio but spread as for a shorter run, so the interval only gets wider."""
    original = lognormal_latencies(1.5, 4_000, seed=21)
    candidate = lognormal_latencies(1.0, 4_000, seed=22)
    full = speedup_estimate(original, candidate, resamples=600, max_samples=4_000)
    capped = speedup_estimate(original, candidate, resamples=600, max_samples=250)
    assert capped.speedup == full.speedup  # the point estimate always uses every sample
    assert capped.ci_low < full.ci_low and capped.ci_high > full.ci_high
    assert capped.ci_low < full.speedup < capped.ci_high
    assert (capped.ci_high - capped.ci_low) > 2.5 * (full.ci_high - full.ci_low)  # ~sqrt(16)


def test_thin_keeps_evenly_spaced_values_in_order() -> None:
    values = np.arange(10.0)
    np.testing.assert_array_equal(stats.thin(values, 4), [0.0, 3.0, 6.0, 9.0])
    assert stats.thin(values, 50) is values


def test_chunked_bootstrap_handles_long_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long samples are resampled in chunks; force many small chunks and check the result."""
    monkeypatch.setattr(stats, "_BOOTSTRAP_CHUNK_ELEMENTS", 5_000)
    original = lognormal_latencies(2.0, 3_000, seed=11)
    candidate = lognormal_latencies(1.0, 2_000, seed=12)
    ratios = bootstrap_median_ratios(original, candidate, resamples=300, seed=0)
    assert ratios.shape == (300,)
    assert np.all(np.isfinite(ratios))
    low, high = np.quantile(ratios, [0.025, 0.975])
    assert low < 2.0 < high
    np.testing.assert_array_equal(
        ratios, bootstrap_median_ratios(original, candidate, resamples=300, seed=0)
    )


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (1.01, 1.30, FASTER),
        (0.70, 0.99, SLOWER),
        (0.95, 1.05, NO_DIFFERENCE),
        (1.00, 1.20, NO_DIFFERENCE),  # touching 1 does not exclude it
        (0.80, 1.00, NO_DIFFERENCE),
    ],
)
def test_verdict_rule(low: float, high: float, expected: str) -> None:
    assert verdict(low, high) == expected


@pytest.mark.parametrize(
    ("ci_high", "percent", "trips"),
    [
        (0.85, 10, True),  # even the best case is 15% slower
        (0.95, 10, False),  # could be only 5% slower
        (0.90, 10, False),  # exactly at the limit: not beyond it
        (0.999, 0, True),  # any significant slowdown
        (1.02, 0, False),
    ],
)
def test_slower_beyond_threshold(ci_high: float, percent: float, trips: bool) -> None:
    assert slower_beyond(ci_high, percent) is trips


@pytest.mark.parametrize("percent", [-1, 100, 250])
def test_slower_beyond_rejects_bad_percent(percent: float) -> None:
    with pytest.raises(ValueError):
        slower_beyond(0.5, percent)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        speedup_estimate([1.0], [1.0], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_median_ratios([1.0], [1.0], resamples=0)
    with pytest.raises(ValueError):
        speedup_estimate([], [1.0])


latencies = st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(original=latencies, candidate=latencies)
def test_interval_is_ordered_positive_and_swapping_inverts(
    original: list[float], candidate: list[float]
) -> None:
    forward = speedup_estimate(original, candidate, resamples=200)
    backward = speedup_estimate(candidate, original, resamples=200)
    assert 0 < forward.ci_low <= forward.ci_high
    assert forward.speedup == pytest.approx(1.0 / backward.speedup)
    assert forward.verdict in (FASTER, SLOWER, NO_DIFFERENCE)

"""Latency statistics: pure numpy, no onnxruntime, no I/O.

**Why pairs, not iterations.** Two sessions of the *same* graph differ by a few percent from
one creation to the next (memory placement, allocator state, thread scheduling), and the
machine drifts over time. Iterations of one session pair share that offset, so treating
them as independent (a bootstrap over iterations) gives an interval far too narrow: on a
shared two-core machine it called the same graph faster or slower in 15 of 20 comparisons.
The design here is hierarchical (Kalibera & Jones, "Rigorous Benchmarking in Reasonable
Time", ISMM 2013): ``K`` fresh session pairs per setting, each timed in interleaved rounds;
each pair gives one number and the statistic and its interval are computed over the pairs.

**Statistic.** Pair ``k`` gives ``d_k = ln(median(original_k) / median(candidate_k))`` (the
median within a pair is robust to preemption outliers; the log makes "2× faster" and "2×
slower" symmetric). Over the ``K`` pairs, a 20%-trimmed mean with the Tukey-McLaughlin
(Yuen) t-interval (Wilcox, *Introduction to Robust Estimation and Hypothesis Testing*, 4th
ed., §4.4.1), with ``g = floor(0.2 K)`` pairs trimmed from each end::

    m    = mean of d_(g+1) ... d_(K-g)                    (sorted; the trimmed mean)
    s_w  = sd of the d_k winsorized at d_(g+1) and d_(K-g)   (ddof 1)
    n    = K - 2g                                           (pairs kept)
    se   = s_w · sqrt((K - 1) / (n (n - 1)))
    half = t_{n-1, (1+c)/2} · se
    speedup = exp(m),  interval = [exp(m - half), exp(m + half)]

``se`` is Tukey & McLaughlin's (1963) form, the winsorized sum of squares over
``n (n - 1)``; the common large-sample form ``s_w / ((1 - 2g/K) sqrt(K))`` is 2-9% narrower
below 20 pairs, and on simulated normal pairs it missed 1 in 6.6% of runs at 6 pairs and
6.5% at 10 where this one misses 5.9% and 5.8% (the t approximation of a trimmed mean is
still a little liberal for light-tailed pairs; on the heavy-tailed pairs measured on a busy
machine both are at or below 5%). With no trimming (``K < 5``) this is the plain Student-t
interval of the mean. Why trimmed:
on a busy machine a multi-threaded session sometimes has most of a pair's runs preempted
(a 1 ms model measured at 29 ms), which makes that one pair's ratio 20× or 0.1×; a plain
mean and sd let one such pair widen the interval to [0.93, 1.93], while the trimmed
interval keeps the other pairs' answer and stays valid (its coverage holds for heavy-tailed
data). Above 1 the candidate is faster.

**Verdict with a margin of practical equivalence δ** (``L = ln(1 + δ)``)::

    faster       m - half >  L       (the whole interval beyond +δ)
    slower       m + half < -L       (the whole interval beyond -δ: latency up by more than δ)
    equivalent   -L <= m - half  and  m + half <= L   (the whole interval within ±δ)
    inconclusive otherwise; ``pairs_needed`` says how many pairs would decide

A difference smaller than δ is never called faster or slower, however precise: this is what
keeps the noise a machine makes between sessions from becoming a verdict. ``reading`` says
in words what an interval establishes beside its verdict ("at least 1.7% faster, not shown
to exceed the 3% margin"). ``sequential`` looks at the same interval after every batch of
pairs, each look at the level its share of the error rate allows (``trimmed_interval``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FASTER = "faster"
SLOWER = "slower"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
VERDICTS = (FASTER, SLOWER, EQUIVALENT, INCONCLUSIVE)
DECISIVE = (FASTER, SLOWER)  # the verdicts that claim a difference

DEFAULT_CONFIDENCE = 0.95
# ±3%: in 90 A/A comparisons on a shared two-core machine (a model against a byte-different
# copy of itself) two sessions of one graph differed systematically by up to 1.5%; 3% is
# twice that, rounded up, and none of the 90 got a verdict at it (docs/bench-verdicts.md).
# With sequential looks (issue 26) it still meets the bar at the per-pair noise measured
# under load: 0 of 2,000 simulated A/A runs 1.5% apart decisive, a 5% gain `faster` in
# 98.7% and a 10% gain in 100% with 16 pairs ("Choosing the plan").
DEFAULT_MARGIN = 0.03
# No run recommends more pairs than this: beyond it the effect is the margin itself.
MAX_PAIRS_NEEDED = 1000
# Fraction of pairs trimmed from each end before averaging (Wilcox's usual 20%).
TRIM = 0.2


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
    """``speedup = exp(trimmed mean of d_k)`` over ``pairs`` session pairs, its interval and
    verdict.

    ``pair_sd``: winsorized standard deviation of the per-pair log speedups ``d_k`` (≈ the
    relative spread of one pair's speedup: the noise between sessions, outlier pairs
    clipped). ``margin``: δ as a fraction.
    ``pairs_needed``: for ``inconclusive``, about how many pairs a decisive run would need
    (None when decided, or when the estimate sits on the margin so no run length decides).
    """

    speedup: float
    ci_low: float
    ci_high: float
    confidence: float
    pairs: int
    pair_sd: float
    margin: float
    verdict: str
    pairs_needed: int | None = None

    @property
    def half_width(self) -> float:
        """Relative half-width of the interval, ``(ci_high / ci_low) ** 0.5 - 1``."""
        if self.ci_low <= 0 or not math.isfinite(self.ci_high / self.ci_low):
            return math.inf
        return math.sqrt(self.ci_high / self.ci_low) - 1.0


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


def pair_log_speedup(original_ms: ArrayLike, candidate_ms: ArrayLike) -> float:
    """``d = ln(median(original) / median(candidate))`` for one session pair."""
    original = _as_sample(original_ms, "original_ms")
    candidate = _as_sample(candidate_ms, "candidate_ms")
    low = min(float(np.median(original)), float(np.median(candidate)))
    if low <= 0.0:
        raise ValueError("a median latency is zero: the timer cannot resolve this model")
    return math.log(float(np.median(original)) / float(np.median(candidate)))


def speedup_over_pairs(
    log_speedups: ArrayLike,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    margin: float = DEFAULT_MARGIN,
) -> SpeedupEstimate:
    """Speedup, trimmed-mean t-interval over pairs and verdict from per-pair log speedups.

    See the module docstring for the formulas. With a single pair there is no spread to
    estimate: the interval is unbounded and the verdict ``inconclusive``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    d = _as_sample(log_speedups, "log_speedups")
    pairs = int(d.size)
    if pairs < 2:
        return SpeedupEstimate(
            math.exp(float(d[0])), 0.0, math.inf, confidence, pairs, math.nan, margin, INCONCLUSIVE
        )
    mean, half, sd = trimmed_interval(d, confidence)
    low, high = mean - half, mean + half
    decision = verdict(math.exp(low), math.exp(high), margin)
    needed = pairs_needed(mean, sd, margin, confidence, pairs) if decision == INCONCLUSIVE else None
    return SpeedupEstimate(
        speedup=math.exp(mean),
        ci_low=math.exp(low),
        ci_high=math.exp(high),
        confidence=confidence,
        pairs=pairs,
        pair_sd=sd,
        margin=margin,
        verdict=decision,
        pairs_needed=needed,
    )


def trimmed_interval(log_speedups: ArrayLike, confidence: float) -> tuple[float, float, float]:
    """``(m, h, s_w)`` of at least two per-pair log speedups: the 20%-trimmed mean, the
    half-width of its Yuen t-interval at ``confidence`` and the winsorized sd (module
    docstring). The interval is ``[m - h, m + h]`` in logs."""
    d = np.sort(_as_sample(log_speedups, "log_speedups"))
    pairs = int(d.size)
    if pairs < 2:
        raise ValueError("the interval needs at least two pairs")
    g = trimmed_count(pairs)
    mean = float(np.mean(d[g : pairs - g]))
    sd = float(np.std(np.clip(d, d[g], d[pairs - g - 1]), ddof=1))
    kept = pairs - 2 * g
    return mean, t_quantile(confidence, kept - 1) * sd * standard_error_factor(pairs), sd


def standard_error_factor(pairs: int) -> float:
    """``se / s_w = sqrt((K - 1) / (n (n - 1)))`` for ``K`` pairs, ``n = K - 2g`` kept (about
    ``1 / ((1 - 2γ) sqrt(K))``)."""
    kept = pairs - 2 * trimmed_count(pairs)
    return math.sqrt((pairs - 1) / (kept * (kept - 1)))


def trimmed_count(pairs: int) -> int:
    """Pairs trimmed from each end: ``floor(TRIM · K)`` (0 below 5 pairs)."""
    return math.floor(TRIM * pairs)


def verdict(ci_low: float, ci_high: float, margin: float = DEFAULT_MARGIN) -> str:
    """``faster`` when ``ci_low > 1 + δ``; ``slower`` when ``ci_high < 1 / (1 + δ)``;
    ``equivalent`` when ``1 / (1 + δ) <= ci_low`` and ``ci_high <= 1 + δ``; otherwise
    ``inconclusive``. Ties at ±δ are not beyond it."""
    upper = 1.0 + margin
    lower = 1.0 / upper
    if ci_low > upper:
        return FASTER
    if ci_high < lower:
        return SLOWER
    if lower <= ci_low and ci_high <= upper:
        return EQUIVALENT
    return INCONCLUSIVE


# Where pairs_needed starts its search: the fewest pairs bench's sequential looks decide at
# (sequential.DEFAULT_FIRST_LOOK).
SEARCH_FROM_PAIRS = 6


def pairs_needed(
    mean: float, sd: float, margin: float, confidence: float, pairs: int
) -> int | None:
    """About how many pairs make the interval decisive if mean and spread stay as measured.

    The interval must shrink to the distance between the estimate and the margin,
    ``gap = | |m| - L |``: ``t · s_w · f(K') < gap`` with ``f = standard_error_factor``
    (about ``1 / ((1 - 2γ) sqrt(K'))``, ``γ = TRIM``) gives
    ``K' > K · (t · s_w · f(K) / gap)²`` (t and ``f`` at the new K', found by iterating). None when the answer exceeds ``MAX_PAIRS_NEEDED`` (the estimate sits on the
    margin: no practical run decides). The search starts at ``SEARCH_FROM_PAIRS`` at least:
    from 2 or 3 pairs its first t quantile (12.7 at one degree of freedom) overshoots
    ``MAX_PAIRS_NEEDED`` and a 1% difference with 7.5% noise read as undecidable.
    """
    pairs = max(pairs, SEARCH_FROM_PAIRS)
    gap = abs(abs(mean) - math.log1p(margin))
    if sd == 0.0:
        return pairs
    if gap == 0.0:
        return None
    needed = pairs
    for _ in range(20):
        df = max(needed - 2 * trimmed_count(needed) - 1, 1)
        half = t_quantile(confidence, df) * sd * standard_error_factor(needed)
        guess = math.ceil(needed * (half / gap) ** 2) + 1
        if guess > MAX_PAIRS_NEEDED:
            return None
        if guess == needed:
            break
        needed = max(guess, 2)
    return max(needed, pairs + 1)


def reading(low: float, high: float, margin: float) -> str:
    """What the interval ``[low, high]`` establishes against the margin, in words.

    Faster by x% is ``speedup - 1``; slower by x% is ``1 / speedup - 1`` (latency up by
    x%), the convention of the ``slower`` rule. At δ = 3%::

        [1.017, 1.043]  at least 1.7% faster, not shown to exceed the 3% margin
        [1.061, 1.102]  at least 6.1% faster, beyond the 3% margin           (faster)
        [0.900, 0.950]  at least 5.3% slower, beyond the 3% margin           (slower)
        [0.980, 0.990]  at least 1.0% slower, within the ±3% margin          (equivalent)
        [0.988, 1.014]  between 1.2% slower and 1.4% faster, within the ±3% margin
        [0.950, 1.100]  between 5.3% slower and 10.0% faster, no difference shown

    There is no verdict argument: the verdict is a function of the same three numbers
    (``verdict``), so the words cannot contradict it; "beyond" is ``faster``/``slower`` and
    "within" is ``equivalent``. An unbounded interval (one pair, or before the first look)
    establishes nothing.
    """
    if not 0.0 < low <= high < math.inf:
        return "no interval: nothing established"
    bound = f"{margin * 100:g}%"
    claim = {
        FASTER: f"beyond the {bound} margin",
        SLOWER: f"beyond the {bound} margin",
        EQUIVALENT: f"within the ±{bound} margin",
    }.get(verdict(low, high, margin))
    if low > 1.0:
        established = f"at least {_percent(low - 1.0, margin)} faster"
    elif high < 1.0:
        established = f"at least {_percent(1.0 / high - 1.0, margin)} slower"
    else:
        slower, faster = _percent(1.0 / low - 1.0, margin), _percent(high - 1.0, margin)
        return f"between {slower} slower and {faster} faster, {claim or 'no difference shown'}"
    return f"{established}, {claim or f'not shown to exceed the {bound} margin'}"


def _percent(fraction: float, margin: float) -> str:
    """``0.017`` -> ``1.7%``; one more digit where one would read as the margin itself
    (``3.04%`` beside a 3% margin); from 100% on, as a factor: ``1.0`` -> ``2×``."""
    if fraction >= 1.0:
        return f"{1.0 + fraction:.3g}×"
    text = f"{fraction * 100:.1f}"
    if float(text) == round(margin * 100, 1) and fraction != margin:
        text = f"{fraction * 100:.2f}"
    return f"{text}%"


def slower_beyond(ci_high: float, percent: float) -> bool:
    """True when the whole interval lies beyond ``percent`` % slower: ``ci_high < 1/(1 + p)``.

    The ``slower`` rule of ``verdict`` with ``δ = percent / 100``: the candidate's latency is,
    with the stated confidence, more than ``(1 + p)`` times the original's.
    """
    if not 0.0 <= percent < 100.0:
        raise ValueError(f"percent must be in [0, 100), got {percent}")
    return ci_high < 1.0 / (1.0 + percent / 100.0)


@functools.lru_cache(maxsize=4096)
def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student-t quantile: ``t`` with ``P(|T_df| <= t) = confidence``.

    Bisection on the exact CDF for integer ``df`` (Abramowitz & Stegun 26.7.3-4, finite sums
    in ``θ = atan(t / sqrt(df))``); no scipy needed. Known values: ``df = 9`` -> 2.2622,
    ``df = 1`` -> 12.706 at 95%. Cached: a sequential run asks for the same few levels at
    every look, and a simulation of thousands of runs asks for them thousands of times.
    """
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    low, high = 0.0, 1.0
    while _t_central(high, df) < confidence:
        high *= 2.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if _t_central(mid, df) < confidence:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def _t_central(t: float, df: int) -> float:
    """``P(|T_df| <= t)`` for integer ``df`` (A&S 26.7.3 odd, 26.7.4 even)."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    cos2 = cos * cos
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term = cos
        total = cos
        for k in range(1, (df - 1) // 2):
            term *= cos2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + sin * total)
    term = 1.0
    total = 1.0
    for k in range(1, df // 2):
        term *= cos2 * (2 * k - 1) / (2 * k)
        total += term
    return sin * total


def thin(sample: NDArray[np.float64], max_samples: int) -> NDArray[np.float64]:
    """At most ``max_samples`` values of ``sample``, evenly spaced over it (order kept);
    for plots of long runs."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    if sample.size <= max_samples:
        return sample
    return sample[np.linspace(0, sample.size - 1, max_samples).round().astype(np.intp)]


def _as_sample(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array

"""Group-sequential verdicts: look after every batch of pairs, stop as soon as it is decided.

**Why.** A fixed design times a setting for a planned number of pairs and judges once. A
large gain is clear after a handful of pairs; a model on a quiet machine is clearly
equivalent after a few more. Looking at the 95% interval after every batch and stopping at
the first verdict would, however, give noise many chances to cross a boundary: at margin 0
on simulated A/A runs it errs in 22% of runs instead of 5% (``tests/bench``). The looks
must share one error budget.

**The loop** (one ``decide`` call per look; each call is pure)::

    plan = SequentialPlan()                  # confidence, margin, max_pairs, first_look, batch
    decision = None
    while True:
        ... time plan.batch more session pairs, append each pair's d_k to log_ratios ...
        decision = decide(log_ratios, plan, previous=decision, final=budget_spent)
        if decision.final:                   # decided, or the budget or max_pairs reached
            break

``final`` must be decided without looking at the data (the wall-clock budget, the plan's
``max_pairs``); a decision that is not final is always ``inconclusive``.

**Alpha spending** (Lan & DeMets 1983, O'Brien–Fleming type). With ``α = 1 - confidence``
and the information fraction ``t = min(1, n / max_pairs)`` after ``n`` pairs::

    α(t) = 2 - 2 Φ(z_{1-α/2} / √t)          spent by information t; α(1) = α

Looks before ``first_look`` pairs spend nothing and decide nothing. Look ``j`` after ``n_j``
pairs (previous look ``n_{j-1}``, or 0 at the first look) spends the increment
``Δ_j = α(t_j) - α(t_{j-1})``; a final look before ``max_pairs`` (the budget ran out)
spends all that is left, ``Δ_j = α - α(t_{j-1})``. Its interval is the fixed design's
(``stats.trimmed_interval``: 20%-trimmed mean, Yuen t-interval) at the level::

    level_j = 1 - Δ_j

and the verdict is the fixed design's rule against the margin at that level.

**Why this is valid (a union bound).** Every false verdict needs the interval of the look
that gave it to miss the true speedup: ``faster`` when the truth is at most ``1 + δ`` needs
``low > truth``; ``equivalent`` when the truth lies beyond ``1 + δ`` needs ``high < truth``
(and likewise on the slow side). So ``P(false verdict) <= Σ_j P(look j misses) <= Σ_j Δ_j
<= α``, and only half of that for an error on one side. The bound holds whatever the
correlation between looks (the pairs of look ``j`` include those of every earlier look), for
a t-type statistic with an estimated spread, for any number of looks and for look times that
were not planned, as long as they do not depend on the data (each level is a function of
the look times alone, so the spends of any schedule, a final look that takes what is left
included, sum to at most α); it needs only that each look's
interval has its stated coverage, which the simulations in ``tests/bench`` check for the
trimmed interval on the noise measured on this machine. The exact recursive boundaries of
Armitage, McPherson & Rowe (1969) spend the same α with narrower intervals, but they assume
normal statistics with independent increments and a known variance; with 6 to 40 pairs, an
estimated spread and trimming, that is an approximation whose error this design would have
to measure, not a bound. The price of the bound is small where it matters: the
O'Brien–Fleming function spends almost nothing early (a look at 10% of ``max_pairs`` runs
at level 1 - 6e-10), so early looks stop only for large effects, and a budget that ends
well before ``max_pairs`` makes its final look at close to the nominal level (see
``docs/bench-verdicts.md`` for the table of the default plan).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from .stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGIN,
    EQUIVALENT,
    FASTER,
    INCONCLUSIVE,
    SLOWER,
    trimmed_interval,
    verdict,
)

# The default plan (chosen with the simulator calibrated to this machine's noise:
# docs/bench-verdicts.md, "Choosing the plan").
DEFAULT_MAX_PAIRS = 40
DEFAULT_FIRST_LOOK = 6
DEFAULT_BATCH = 2

_NORMAL = NormalDist()


@dataclass(frozen=True)
class SequentialPlan:
    """How a setting's looks spend the error rate ``1 - confidence``.

    ``margin``: δ as a fraction; ``max_pairs``: the planned maximum (information fraction 1);
    ``first_look``: pairs before any verdict (at least 2: the interval needs a spread);
    ``batch``: pairs timed between two looks (what the measurement loop should use).

    ``max_pairs`` is the most pairs a setting may take (``--pairs``), not what its share of
    the budget is expected to fit: a budget that ends first makes a final look that spends
    all the α left. Shrinking ``max_pairs`` to the pairs that fit stops sooner but makes the
    last looks stricter: with 16 pairs in the budget, on the simulated ``loaded`` noise, a 5%
    gain is ``faster`` in 96.6% of runs after 10.3 pairs on average with ``max_pairs=16``,
    and in 98.3% after 14.3 with 40 (``stress`` noise: 58% against 75%).
    """

    confidence: float = DEFAULT_CONFIDENCE
    margin: float = DEFAULT_MARGIN
    max_pairs: int = DEFAULT_MAX_PAIRS
    first_look: int = DEFAULT_FIRST_LOOK
    batch: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if self.first_look < 2:
            raise ValueError(f"first_look must be at least 2 pairs, got {self.first_look}")
        if self.max_pairs < self.first_look:
            raise ValueError(
                f"max_pairs ({self.max_pairs}) must be at least first_look ({self.first_look})"
            )
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1 pair, got {self.batch}")

    @property
    def alpha(self) -> float:
        """The error rate the whole procedure may spend, ``1 - confidence``."""
        return 1.0 - self.confidence

    def spent(self, pairs: int) -> float:
        """``α(t) = 2 - 2 Φ(z_{1-α/2} / √t)`` at ``t = min(1, pairs / max_pairs)``; 0 before
        ``first_look``."""
        if pairs < self.first_look:
            return 0.0
        fraction = min(1.0, pairs / self.max_pairs)
        z = _NORMAL.inv_cdf(1.0 - self.alpha / 2.0)
        return 2.0 - 2.0 * _NORMAL.cdf(z / math.sqrt(fraction))

    def level_at(self, pairs: int, previous_pairs: int | None, *, final: bool = False) -> float:
        """Confidence of the interval at a look after ``pairs`` pairs whose previous look was
        after ``previous_pairs`` (None: this is the first): ``1 - (α(t) - α(t_prev))``, or
        ``1 - (α - α(t_prev))`` at a ``final`` look. 1.0 (no verdict) before ``first_look``."""
        previous = 0 if previous_pairs is None else previous_pairs
        if pairs <= previous:
            raise ValueError(f"a look needs new pairs: {pairs} after {previous}")
        if pairs < self.first_look:
            return 1.0
        reached = self.alpha if final or pairs >= self.max_pairs else self.spent(pairs)
        return 1.0 - (reached - self.spent(previous))


@dataclass(frozen=True)
class Decision:
    """One look: the verdict (``stats`` constants), ``speedup`` and the interval
    ``[low, high]`` at ``confidence_used``, after ``pairs`` pairs and ``looks`` looks that
    could decide. ``final``: stop measuring (decided, or no more looks: budget or
    ``max_pairs`` reached). ``reason``: why it stopped or why it is not decided, in words.
    ``pair_sd``: the winsorized sd of the ``d_k`` (nan with one pair)."""

    verdict: str
    speedup: float
    low: float
    high: float
    confidence_used: float
    pairs: int
    looks: int
    final: bool
    reason: str
    pair_sd: float = math.nan


def decide(
    log_ratios: Sequence[float],
    plan: SequentialPlan,
    *,
    previous: Decision | None,
    final: bool,
) -> Decision:
    """The look after ``len(log_ratios)`` pairs (``d_k = ln(median_orig / median_cand)``).

    ``previous``: this setting's last decision (None at its first call); ``final``: no more
    pairs will be timed (the budget is spent), so this look spends all the α left. A look at
    or beyond ``plan.max_pairs`` is final whatever ``final`` says. Raises ValueError when
    the previous decision was already final or no pair was added since.
    """
    if previous is not None and previous.final:
        raise ValueError("the previous look was final: this setting is already decided")
    pairs = len(log_ratios)
    if pairs == 0:
        raise ValueError("a look needs at least one pair")
    final = final or pairs >= plan.max_pairs
    previous_pairs = None if previous is None or previous.looks == 0 else previous.pairs
    looks = 0 if previous is None else previous.looks
    level = plan.level_at(pairs, previous_pairs, final=final)
    if pairs < plan.first_look:
        return _before_first_look(log_ratios, plan, looks=looks, final=final)
    mean, half, sd = trimmed_interval(log_ratios, level)
    low, high = math.exp(mean - half), _exp_or_inf(mean + half)
    outcome = verdict(low, high, plan.margin)
    return Decision(
        verdict=outcome,
        speedup=math.exp(mean),
        low=low,
        high=high,
        confidence_used=level,
        pairs=pairs,
        looks=looks + 1,
        final=final or outcome != INCONCLUSIVE,
        reason=_reason(outcome, low, high, pairs, plan.margin),
        pair_sd=sd,
    )


def _before_first_look(
    log_ratios: Sequence[float], plan: SequentialPlan, *, looks: int, final: bool
) -> Decision:
    """No verdict and no interval yet; the speedup is already the trimmed mean (the one
    statistic of every table)."""
    pairs = len(log_ratios)
    if pairs == 1:
        mean, sd = log_ratios[0], math.nan
    else:
        mean, _, sd = trimmed_interval(log_ratios, plan.confidence)
    return Decision(
        verdict=INCONCLUSIVE,
        speedup=math.exp(mean),
        low=0.0,
        high=math.inf,
        confidence_used=1.0,
        pairs=pairs,
        looks=looks,
        final=final,
        reason=f"no verdict before {plan.first_look} pairs: only {pairs} measured",
        pair_sd=sd,
    )


def _exp_or_inf(x: float) -> float:
    """``exp(x)``, infinite where it overflows (an early look's interval at a level of
    1 - 1e-9 with 3 degrees of freedom can reach ``exp(800)``)."""
    return math.exp(x) if x < 700.0 else math.inf


def _reason(outcome: str, low: float, high: float, pairs: int, margin: float) -> str:
    """Why a look stopped or did not: ``decided after 8 pairs: the interval [1.061, 1.102]
    lies wholly above the 3% margin``."""
    bound = f"{margin * 100:g}% margin"
    where = {
        FASTER: f"lies wholly above the {bound}",
        SLOWER: f"lies wholly below the -{bound}",
        EQUIVALENT: f"lies wholly within the ±{bound}",
    }.get(outcome)
    if where is not None:
        return f"decided after {pairs} pairs: the interval [{low:.3f}, {high:.3f}] {where}"
    if low > 1.0:
        where = f"is beyond 1 but not wholly beyond the {bound}"
    elif high < 1.0:
        where = f"is below 1 but not wholly beyond the -{bound}"
    else:
        where = f"contains 1 and reaches beyond the ±{bound}"
    return f"not decided after {pairs} pairs: the interval [{low:.3f}, {high:.3f}] {where}"


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_FIRST_LOOK",
    "DEFAULT_MAX_PAIRS",
    "Decision",
    "SequentialPlan",
    "decide",
]

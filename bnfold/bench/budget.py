"""The wall-clock budget of a bench run and the pair schedule of each setting.

**What the budget covers.** Everything ``bench()`` does after its arguments are checked:
loading both models, making the inputs, and for every setting (provider × level) creating
the sessions, their first runs, warm-up and the timed rounds of every batch size. The
budget is shared out one setting at a time: a setting gets what is left divided by the
settings still to run, so the time a setting saves by deciding early goes to the next.

**Planning a setting from its first pair.** The first pair of a setting measures what a
pair costs before anything is timed: ``setup`` (creating its sessions and their first
runs, all batch sizes) and ``round`` (one run of every session, all batch sizes, from the
warm-up). A pair then costs::

    cost(τ) = setup + warm-up + (1 + w) · B · τ      τ: timed seconds per batch size
                                                    w = WARMUP_FRACTION, B batch sizes

and the setting's share ``S`` of the budget buys ``n`` pairs of ``τ`` seconds:

    τ_min = max(MIN_PAIR_SECONDS, MIN_ROUNDS · round)          a median worth the name
    n     = clamp(floor(S / cost(τ_min)), 2, max_pairs)          as many pairs as fit
    τ     = max(τ_min, (S / n - setup - warm-up) / ((1 + w) B))  the rest spread over them

Pairs, not rounds, narrow the interval (the noise lies between sessions, see ``stats``),
so pairs come first; when sessions are expensive fewer pairs fit and each is timed longer
(``4 pairs of 0.8 s: creating a pair's sessions took 1.9 s``). Explicit ``--iters`` or
``--min-time`` fix ``τ`` and the budget only decides how many pairs fit.

The first pair is then timed with that ``τ``, and ``n`` is re-planned once from what the
whole first pair really took (session teardown and a busy machine are in it), before the
first look.

**Default budget.** ``DEFAULT_BUDGET_S`` for a model whose pairs are cheap; when the first
pair shows that ``MIN_PLANNED_PAIRS`` pairs of every setting do not fit in it, the default
grows to what they need, at most ``MAX_DEFAULT_BUDGET_S``. An explicit ``--budget`` is
never stretched.

**Stopping.** Before each further pair the setting checks that another pair of the mean
cost so far still ends before its deadline; it never starts one that does not. Every
setting takes at least two pairs (an interval needs a spread), so a run can overrun when
one pair costs more than the budget allows; the report says so, and by how much. Time is
read from an injectable clock, so the planning is tested without timing anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

DEFAULT_BUDGET_S = 7.0  # a small model's default bench, ~1.5 s of imports aside: <= 10 s
# What the default may grow to for a model with costly pairs: with the ~3 s outside the
# budget (imports, reading the files), onnx's light resnet50 ends within a minute.
MAX_DEFAULT_BUDGET_S = 50.0
MIN_PLANNED_PAIRS = 10  # the default grows until this many pairs of each setting fit
MIN_PAIRS = 2  # an interval needs a spread: every setting takes at least this many
MIN_PAIR_SECONDS = 0.05  # shortest timed phase of a pair (one batch size)
MIN_ROUNDS = 4  # fewest timed rounds of a pair: two of each order (runner.order_cycle)
WARMUP_FRACTION = 0.1  # each session is warmed up for this fraction of its timed phase

Clock = Callable[[], float]


@dataclass(frozen=True)
class PairCost:
    """What one pair of a setting costs, measured on its first pair: ``setup_s`` (creating
    its sessions and their first runs), ``round_s`` (one round of every session, summed
    over the batch sizes) and ``warmup_s`` (its minimum warm-up), in seconds;
    ``batches``: the batch sizes each pair times."""

    setup_s: float
    round_s: float
    warmup_s: float = 0.0
    batches: int = 1

    def total(self, timed_s: float) -> float:
        """``cost(τ) = setup + warm-up + (1 + w) · B · τ`` for ``timed_s`` = τ."""
        return self.setup_s + self.warmup_s + (1 + WARMUP_FRACTION) * self.batches * timed_s

    def shortest_timed_s(self) -> float:
        """``τ_min = max(MIN_PAIR_SECONDS, MIN_ROUNDS · round)``; ``round`` is summed over
        the batch sizes, so this is an upper bound for each."""
        return max(MIN_PAIR_SECONDS, MIN_ROUNDS * self.round_s / self.batches)


@dataclass(frozen=True)
class PairSchedule:
    """A setting's plan: at most ``pairs`` pairs, each timing every batch size for
    ``timed_s`` seconds (``rounds``: exactly that many rounds instead), bought with
    ``share_s`` seconds at ``cost`` per pair."""

    pairs: int
    timed_s: float | None
    rounds: int | None
    share_s: float
    cost: PairCost
    pair_s: float

    def after_first_pair(self, first_pair_s: float, max_pairs: int) -> PairSchedule:
        """The schedule with its pair count re-planned from what the whole first pair
        took (tearing sessions down and a loaded machine cost what no estimate sees);
        before any look, so the looks still follow a plan fixed in advance."""
        count = _pairs_that_fit(self.share_s, max(first_pair_s, self.pair_s), max_pairs)
        return replace(self, pairs=min(self.pairs, count), pair_s=max(first_pair_s, self.pair_s))

    def describe(self) -> str:
        """``12 pairs of 0.31 s in 4.0 s (creating a pair's sessions took 0.03 s)``."""
        each = f"{self.rounds} rounds" if self.rounds is not None else f"{self.timed_s:.2g} s"
        return (
            f"{self.pairs} pairs of {each} planned in {self.share_s:.3g} s (a pair costs "
            f"{self.pair_s:.2g} s; creating its sessions and first runs took "
            f"{self.cost.setup_s:.2g} s)"
        )


def plan_pairs(
    share_s: float,
    cost: PairCost,
    *,
    max_pairs: int,
    timed_s: float | None = None,
    rounds: int | None = None,
) -> PairSchedule:
    """The pairs ``share_s`` seconds buy at ``cost`` (module docstring). ``timed_s`` or
    ``rounds`` given: each pair is that long and only the number of pairs is planned."""
    if rounds is not None:
        fixed = rounds * cost.round_s / cost.batches
        count = _pairs_that_fit(share_s, cost.total(fixed), max_pairs)
        return PairSchedule(count, None, rounds, share_s, cost, cost.total(fixed))
    if timed_s is not None:
        count = _pairs_that_fit(share_s, cost.total(timed_s), max_pairs)
        return PairSchedule(count, timed_s, None, share_s, cost, cost.total(timed_s))
    shortest = cost.shortest_timed_s()
    count = _pairs_that_fit(share_s, cost.total(shortest), max_pairs)
    spare = share_s / count - cost.setup_s - cost.warmup_s
    timed = max(shortest, spare / ((1 + WARMUP_FRACTION) * cost.batches))
    return PairSchedule(count, timed, None, share_s, cost, cost.total(timed))


def _pairs_that_fit(share_s: float, pair_s: float, max_pairs: int) -> int:
    """``clamp(floor(share / pair), MIN_PAIRS, max_pairs)``."""
    fit = math.floor(share_s / pair_s) if pair_s > 0 else max_pairs
    return max(MIN_PAIRS, min(max_pairs, fit))


def default_budget(cost: PairCost, settings: int, spent_s: float) -> float:
    """The default budget once the first pair's ``cost`` is known: ``DEFAULT_BUDGET_S``,
    grown to ``spent_s`` plus ``MIN_PLANNED_PAIRS`` shortest pairs of each of ``settings``
    when that is more, at most ``MAX_DEFAULT_BUDGET_S``."""
    needed = spent_s + settings * MIN_PLANNED_PAIRS * cost.total(cost.shortest_timed_s())
    return min(MAX_DEFAULT_BUDGET_S, max(DEFAULT_BUDGET_S, needed))


@dataclass
class Budget:
    """The run's wall-clock budget, shared out one setting at a time.

    ``seconds`` None: the default, fixed by ``settle_default`` once the first pair's cost is
    known. ``settings``: how many settings share it (set once the providers are known).
    ``clock`` returns seconds (``time.perf_counter``; tests pass a fake).
    """

    seconds: float | None
    settings: int = 1
    clock: Clock = time.perf_counter
    started: float = field(init=False)
    settings_done: int = field(default=0, init=False)
    explicit: bool = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.explicit = self.seconds is not None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def settle_default(self, cost: PairCost) -> None:
        """Fix the default budget from the first pair's ``cost`` (no-op when explicit or
        already fixed)."""
        if self.seconds is None:
            self.seconds = default_budget(cost, self.settings, self.elapsed())

    def share(self, setting_started: float) -> float:
        """Seconds for the setting that started at ``setting_started`` (a clock reading):
        what was left then over the settings still to run (``DEFAULT_BUDGET_S`` stands in
        while the default is not fixed)."""
        total = DEFAULT_BUDGET_S if self.seconds is None else self.seconds
        left = max(0.0, total - (setting_started - self.started))
        return left / max(1, self.settings - self.settings_done)

    def setting_done(self) -> None:
        self.settings_done += 1

    def overrun(self) -> float:
        """Seconds spent beyond the budget (0 when within it)."""
        total = DEFAULT_BUDGET_S if self.seconds is None else self.seconds
        return max(0.0, self.elapsed() - total)


@dataclass
class SettingClock:
    """One setting's deadline and the pairs timed against it."""

    deadline: float
    clock: Clock
    pair_seconds: list[float] = field(default_factory=list)

    def pair_done(self, seconds: float) -> None:
        self.pair_seconds.append(seconds)

    def another_fits(self) -> bool:
        """Another pair of the mean cost so far ends before the deadline; always True
        before ``MIN_PAIRS`` pairs."""
        if len(self.pair_seconds) < MIN_PAIRS:
            return True
        mean = sum(self.pair_seconds) / len(self.pair_seconds)
        return self.clock() + mean <= self.deadline

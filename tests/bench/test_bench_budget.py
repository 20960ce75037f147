"""The wall-clock budget: planning pairs from a first pair's cost, sharing it out between
settings and stopping at it, all on fake clocks (nothing here asserts a timing)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest

from bnfold.bench import bench
from bnfold.bench.budget import (
    DEFAULT_BUDGET_S,
    MAX_DEFAULT_BUDGET_S,
    MIN_PAIR_SECONDS,
    MIN_PAIRS,
    Budget,
    PairCost,
    SettingClock,
    default_budget,
    plan_pairs,
)
from bnfold.bench.sequential import DEFAULT_FIRST_LOOK
from tests.builders.bench_models import fast_model


class FakeClock:
    """Seconds that advance only when told to (``tick`` per reading, and ``advance``)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 100.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CHEAP = PairCost(setup_s=0.02, round_s=0.0002, warmup_s=0.001)  # a 100 µs model
COSTLY = PairCost(setup_s=1.9, round_s=0.05, warmup_s=0.1)  # large sessions, 25 ms runs


def test_cheap_pairs_buy_the_planned_maximum_and_share_the_rest() -> None:
    schedule = plan_pairs(4.0, CHEAP, max_pairs=40)
    assert schedule.pairs == 40
    assert schedule.timed_s is not None and schedule.timed_s > MIN_PAIR_SECONDS
    assert schedule.pairs * CHEAP.total(schedule.timed_s) == pytest.approx(4.0)


def test_costly_sessions_buy_fewer_longer_pairs_and_say_so() -> None:
    schedule = plan_pairs(10.0, COSTLY, max_pairs=40)
    assert schedule.pairs == 4  # floor(10 / (1.9 + 0.1 + 1.1 * 0.25))
    assert schedule.timed_s == pytest.approx((10.0 / 4 - 2.0) / 1.1)
    assert schedule.describe().startswith("4 pairs of 0.45 s planned in 10 s")
    assert "creating its sessions and first runs took 1.9 s" in schedule.describe()


def test_a_share_below_two_pairs_still_plans_two() -> None:
    assert plan_pairs(1.0, COSTLY, max_pairs=40).pairs == MIN_PAIRS


def test_explicit_iters_or_min_time_fix_the_pair_and_the_budget_counts_them() -> None:
    by_rounds = plan_pairs(10.0, COSTLY, max_pairs=40, rounds=20)
    assert (by_rounds.rounds, by_rounds.timed_s) == (20, None)
    assert by_rounds.pairs == 3  # 10 s / (2.0 + 1.1 * 20 * 0.05)
    by_time = plan_pairs(10.0, CHEAP, max_pairs=40, timed_s=1.0)
    assert (by_time.pairs, by_time.timed_s) == (8, 1.0)


def test_a_first_pair_dearer_than_planned_cuts_the_pairs_before_any_look() -> None:
    schedule = plan_pairs(4.0, CHEAP, max_pairs=40)
    dearer = schedule.after_first_pair(0.2, max_pairs=40)
    assert dearer.pairs == 20 and dearer.timed_s == schedule.timed_s
    assert schedule.after_first_pair(0.01, max_pairs=40).pairs == 40  # never more


def test_default_budget_grows_for_costly_pairs_up_to_its_cap() -> None:
    assert default_budget(CHEAP, settings=2, spent_s=0.5) == DEFAULT_BUDGET_S
    grown = default_budget(COSTLY, settings=2, spent_s=3.0)
    assert DEFAULT_BUDGET_S < grown < MAX_DEFAULT_BUDGET_S
    huge = PairCost(setup_s=30.0, round_s=1.0)
    assert default_budget(huge, settings=2, spent_s=3.0) == MAX_DEFAULT_BUDGET_S


def test_each_setting_gets_what_is_left_over_the_settings_to_run() -> None:
    clock = FakeClock()
    budget = Budget(12.0, settings=3, clock=clock)
    assert budget.share(clock()) == pytest.approx(4.0)
    clock.advance(1.0)  # the first setting decided early
    budget.setting_done()
    assert budget.share(clock()) == pytest.approx(5.5)  # (12 - 1) / 2
    clock.advance(13.0)
    assert budget.share(clock()) == 0.0
    assert budget.overrun() == pytest.approx(2.0)


def test_an_unsettled_default_budget_is_fixed_by_the_first_pair() -> None:
    clock = FakeClock()
    budget = Budget(None, settings=2, clock=clock)
    assert not budget.explicit
    budget.settle_default(COSTLY)
    assert budget.seconds is not None and budget.seconds > DEFAULT_BUDGET_S
    explicit = Budget(5.0, settings=2, clock=clock)
    explicit.settle_default(COSTLY)
    assert explicit.seconds == 5.0 and explicit.explicit


def test_no_pair_starts_that_would_end_after_the_deadline() -> None:
    clock = FakeClock()
    setting = SettingClock(deadline=clock() + 1.0, clock=clock)
    for _ in range(MIN_PAIRS):
        assert setting.another_fits()  # the first two pairs are owed whatever the time
        clock.advance(0.6)
        setting.pair_done(0.6)
    assert not setting.another_fits()


def _fake_budget(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float]) -> None:
    bench_module = importlib.import_module("bnfold.bench")
    monkeypatch.setattr(bench_module, "Budget", lambda seconds: Budget(seconds, clock=clock))


def test_a_budget_smaller_than_two_pairs_is_overrun_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_budget(monkeypatch, FakeClock(tick=0.5))  # every reading: half a second later
    report = bench(
        fast_model(), fast_model(), providers="cpu", levels="disable,all", iters=20, budget=1.0
    )
    assert [c.estimate.pairs for c in report.comparisons] == [MIN_PAIRS, MIN_PAIRS]
    assert report.settings["overrun_s"] > 0
    assert "over by" in report.budget_text() and "at least 2 pairs" in report.budget_text()
    for comparison in report.comparisons:
        assert comparison.decision is not None and comparison.decision.final
        assert comparison.stopped_by in ("budget", "decided")  # not all 40 --pairs


def test_a_generous_budget_stops_at_the_verdict_or_the_planned_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_budget(monkeypatch, FakeClock(tick=0.001))
    report = bench(
        fast_model(), fast_model(), providers="cpu", levels="disable", iters=20, pairs=6,
        budget=1000.0,
    )  # fmt: skip
    (comparison,) = report.comparisons
    assert comparison.estimate.pairs <= 6
    if comparison.verdict == "inconclusive":
        assert comparison.estimate.pairs == 6 and comparison.stopped_by == "pairs"
        assert "all --pairs were timed" in (comparison.stop_text() or "")
    else:
        assert comparison.stopped_by == "decided"
    assert report.settings["overrun_s"] == 0


class SlowingClock(FakeClock):
    """Each reading later than the last by half as much again: pairs grow dearer, so the
    deadline comes before the pairs planned from the first one (a machine getting busy)."""

    def __call__(self) -> float:
        self.tick *= 1.5
        return super().__call__()


def test_a_budget_that_ends_before_the_first_look_still_gets_a_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_budget(monkeypatch, SlowingClock(tick=0.001))
    report = bench(
        fast_model(), fast_model(), providers="cpu", levels="disable", iters=20, budget=3.0
    )
    (comparison,) = report.comparisons
    decision = comparison.decision
    assert decision is not None and decision.final
    assert MIN_PAIRS <= decision.pairs < DEFAULT_FIRST_LOOK
    assert decision.looks == 1 and decision.high < float("inf")  # a real interval, at 95%
    assert decision.confidence_used == pytest.approx(0.95)

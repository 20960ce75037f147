"""The design of a setting (pairs, rounds, warm-up), the round order, threads and placement."""

from __future__ import annotations

import os
from collections import Counter
from itertools import pairwise

import pytest

from bnfold.bench.budget import MIN_ROUNDS
from bnfold.bench.design import PairPlan
from bnfold.bench.runner import RoundPlan, measure_interleaved, round_order, warm_up
from bnfold.errors import UsageError
from bnfold.runtime.placement import Threads, format_cpus, parse_cpus, pinned, usable_cpus
from bnfold.runtime.session import session_options


def test_min_time_is_spread_over_the_planned_pairs() -> None:
    assert PairPlan(pairs=20, seconds=8.0).timed_seconds() == pytest.approx(0.4)
    assert PairPlan(pairs=20).timed_seconds() is None  # planned from the budget


@pytest.mark.parametrize(
    "options",
    [{"pairs": 1}, {"rounds": 0}, {"seconds": 0.0}, {"warmup": -1}, {"budget": 0.0}],
)
def test_nonsense_plans_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PairPlan(**options)  # type: ignore[arg-type]


def test_slow_model_still_gets_the_minimum_rounds() -> None:
    """A budget far below one round still times MIN_ROUNDS rounds (a fake clock: 1 s/call)."""
    clock = iter(range(0, 10**15, 10**9))
    samples = measure_interleaved(
        [lambda: None, lambda: None],
        RoundPlan(iters=MIN_ROUNDS, min_time_s=0.01, warmup=0),
        clock=lambda: next(clock),
    )
    assert [s.size for s in samples] == [MIN_ROUNDS, MIN_ROUNDS]


def test_warm_up_stops_at_its_time_limit_after_the_minimum() -> None:
    calls: list[int] = []
    warm_up([lambda: calls.append(1)], 10**9, time_limit_s=0.0, minimum=7)
    assert len(calls) == 7
    calls.clear()
    warm_up([lambda: calls.append(1)], 5)
    assert len(calls) == 5


def test_two_runs_alternate() -> None:
    orders = [[i for i, _ in round_order(["a", "b"], r)] for r in range(4)]  # type: ignore[list-item]
    assert orders == [[0, 1], [1, 0], [0, 1], [1, 0]]


def test_three_runs_take_every_position_and_follow_every_run_equally() -> None:
    runs = ["a", "b", "c"]
    orders = [[i for i, _ in round_order(runs, r)] for r in range(6)]  # type: ignore[arg-type]
    positions = Counter((index, place) for order in orders for place, index in enumerate(order))
    assert set(positions.values()) == {2}  # each run in each position twice over 6 rounds
    follows = Counter(pair for order in orders for pair in pairwise(order))
    assert set(follows.values()) == {2}  # each ordered neighbour pair equally often
    assert len(follows) == 6


def test_parse_cpus() -> None:
    cpus = usable_cpus()
    assert cpus, "this test needs os.sched_getaffinity"
    first = cpus[0]
    assert parse_cpus(str(first)) == (first,)
    assert parse_cpus(None) is None and parse_cpus(" ") is None
    if len(cpus) > 1 and cpus[1] == first + 1:
        assert parse_cpus(f"{first}-{first + 1}") == (first, first + 1)
    for bad in ("a", "1-0", "0-x", "99999"):
        with pytest.raises(UsageError, match="--cpus"):
            parse_cpus(bad)


def test_format_cpus_compresses_ranges() -> None:
    assert format_cpus((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert format_cpus((3,)) == "3"
    assert format_cpus(()) == "?"


def test_pinned_restores_the_affinity() -> None:
    before = os.sched_getaffinity(0)
    first = min(before)
    with pinned((first,)):
        assert os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == before
    with pinned(None):
        assert os.sched_getaffinity(0) == before


def test_threads_describe_what_onnxruntime_gets() -> None:
    assert (
        Threads()
        .describe()
        .startswith("intra-op threads default, inter-op default, spinning default (on), CPUs ")
    )
    text = Threads(intra_op=2, inter_op=1, spinning=False, cpus=(0,)).describe()
    assert text == "intra-op threads 2, inter-op 1, spinning off, pinned to CPUs 0"


@pytest.mark.parametrize(("spinning", "flag"), [(True, "1"), (False, "0")])
def test_spinning_reaches_both_thread_pools(spinning: bool, flag: str) -> None:
    options = session_options("all", 2, inter_threads=3, spinning=spinning)
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == flag
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == flag


def test_default_spinning_is_left_to_onnxruntime() -> None:
    options = session_options("all")
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own class for "unset"
        options.get_session_config_entry("session.intra_op.allow_spinning")

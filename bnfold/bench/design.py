"""The experimental design of one setting: how many session pairs, how long each.

Most latency variance lies between sessions and over time, not between iterations (see
``stats``), so a setting is measured as ``pairs`` fresh session pairs (``K``), each warmed up
and then timed in interleaved rounds. ``K`` is what narrows the interval; the rounds only
need to make one pair's median stable, so by default every pair is timed for an equal share
of the budget, ``seconds / K``, and the number of rounds follows from the model's latency::

    rounds of pair k = max(min_rounds, rounds that fit in seconds / K)

A 30 µs model gets thousands of rounds per pair in the default 8 s per setting; a 100 ms
model gets ``min_rounds`` and the run takes longer than ``seconds`` (the time spent is
printed). Each pair is sized by its own clock, so a machine that gets busier in the middle
of a run stretches no pair beyond its share (an earlier design sized every pair from the
first pair's warm-up, and a load spike there left a whole setting with 182 rounds a pair).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .runner import RoundPlan

DEFAULT_PAIRS = 20
DEFAULT_SECONDS = 8.0  # timed seconds per setting, over all pairs
DEFAULT_WARMUP = 10
MIN_ROUNDS = 20  # a median of fewer rounds moves with single outliers
MAX_ROUNDS = 200_000  # bounds memory (1.6 MB per model and pair)
# Each new session is warmed up for this fraction of its pair's timed phase (and at least
# ``warmup`` runs): a fresh session's first runs still fault in memory and wake its threads.
WARMUP_FRACTION = 0.1


@dataclass(frozen=True)
class PairPlan:
    """``pairs`` session pairs; ``rounds`` per pair (None: each pair is timed for
    ``seconds / pairs``, at least ``min_rounds`` rounds); at least ``warmup`` untimed runs
    of each session."""

    pairs: int = DEFAULT_PAIRS
    rounds: int | None = None
    seconds: float = DEFAULT_SECONDS
    warmup: int = DEFAULT_WARMUP
    min_rounds: int = MIN_ROUNDS
    max_rounds: int = MAX_ROUNDS

    def __post_init__(self) -> None:
        if self.pairs < 2:
            raise ValueError(
                f"pairs must be at least 2 (the interval needs a spread), got {self.pairs}"
            )
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if self.warmup < 0:
            raise ValueError(f"warmup must not be negative, got {self.warmup}")

    @property
    def pair_seconds(self) -> float:
        """Timed seconds of one pair when the rounds adapt: ``seconds / pairs``."""
        return self.seconds / self.pairs

    def timed_phase(self) -> RoundPlan:
        """The rounds of one pair: exactly ``rounds``, or ``pair_seconds`` (at least
        ``min_rounds``, at most ``max_rounds``)."""
        if self.rounds is not None:
            return RoundPlan(iters=self.rounds, warmup=0)
        return RoundPlan(
            iters=self.min_rounds,
            min_time_s=self.pair_seconds,
            warmup=0,
            max_rounds=self.max_rounds,
        )

    def warmup_runs(self) -> int:
        """Warm-up rounds with fixed ``rounds``: ``max(warmup, 10% of rounds)``; with
        adaptive rounds, the minimum before ``warmup_seconds`` applies."""
        if self.rounds is None:
            return self.warmup
        return max(self.warmup, math.ceil(self.rounds * WARMUP_FRACTION))

    def warmup_seconds(self) -> float | None:
        """How long to warm up each pair when the rounds adapt (None: count runs only)."""
        return None if self.rounds is not None else self.pair_seconds * WARMUP_FRACTION

    def describe(self) -> str:
        """``20 pairs × 0.4 s`` or ``20 pairs × 100 rounds``."""
        if self.rounds is not None:
            return f"{self.pairs} pairs × {self.rounds} rounds"
        return f"{self.pairs} pairs × {self.pair_seconds:.3g} s"

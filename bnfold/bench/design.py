"""The experimental design of one setting: how many session pairs, how many rounds each.

Most latency variance lies between sessions and over time, not between iterations (see
``stats``), so a setting is measured as ``pairs`` fresh session pairs (``K``), each warmed up
and then timed for ``R`` interleaved rounds. ``K`` is what narrows the interval; ``R`` only
needs to be long enough that one pair's median is stable, so the default run length adapts
``R`` to the model's latency::

    R = clamp(seconds / K / round_ms, min_rounds, max_rounds)

where ``round_ms`` (one call of each model) comes from the warm-up of the first pair. A 30 µs
model gets thousands of rounds per pair in the default 8 s; a 100 ms model gets
``min_rounds`` and the run takes longer than ``seconds`` (the time spent is printed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_PAIRS = 20
DEFAULT_SECONDS = 8.0  # timed seconds per setting, over all pairs
DEFAULT_WARMUP = 10
MIN_ROUNDS = 20  # a median of fewer rounds moves with single outliers
MAX_ROUNDS = 200_000  # bounds memory (1.6 MB per model and pair)
# Each new session is warmed up for at least this fraction of its pair's rounds: a fresh
# session's first hundreds of runs still fault in memory and settle its thread pool.
WARMUP_FRACTION = 0.1
# A pair's timed phase (and its warm-up, at WARMUP_FRACTION of it) stops at this multiple
# of its share of the time budget, after at least MIN_ROUNDS rounds.
PAIR_TIME_LIMIT = 2.0


@dataclass(frozen=True)
class PairPlan:
    """``pairs`` session pairs; ``rounds`` per pair (None: adapt to latency within
    ``seconds`` per setting); at least ``warmup`` untimed runs of each session."""

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

    def rounds_for(self, round_ms: float) -> int:
        """Timed rounds per pair for a round (one call of each model) of ``round_ms``."""
        if self.rounds is not None:
            return self.rounds
        if not round_ms > 0 or not math.isfinite(round_ms):
            return self.max_rounds
        budget_ms = self.seconds * 1000.0 / self.pairs
        return max(self.min_rounds, min(self.max_rounds, int(budget_ms / round_ms)))

    def warmup_for(self, rounds: int) -> int:
        """Untimed runs of each session before its timed rounds."""
        return max(self.warmup, math.ceil(rounds * WARMUP_FRACTION))

    def pair_time_limit_s(self) -> float | None:
        """Seconds after which a pair's timed rounds stop early (adaptive runs only):
        ``PAIR_TIME_LIMIT`` times its share of ``seconds``. Rounds were sized on the first
        pair; if the machine gets busier, later pairs would otherwise take far longer."""
        if self.rounds is not None:
            return None
        return PAIR_TIME_LIMIT * self.seconds / self.pairs

    def describe(self) -> str:
        """``20 pairs × adaptive rounds (8 s per setting)`` or ``20 pairs × 100 rounds``."""
        if self.rounds is not None:
            return f"{self.pairs} pairs × {self.rounds} rounds"
        return f"{self.pairs} pairs × rounds adapted to {self.seconds:g} s per setting"

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

``BenchDesign`` is the whole design as one frozen object (the pair plan, the confidence and
margin of the verdict, calibration, ``fail_if_slower``, copies, the batch sweep), and
``BenchSettings`` adds what bench shares with verify (``bnfold.runtime.settings``). Every
default lives here or in ``stats``; ``bnfold bench --help`` shows these constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from ..runtime.settings import InputPlan, RuntimeChoice
from .runner import RoundPlan
from .stats import DEFAULT_CONFIDENCE, DEFAULT_MARGIN

DEFAULT_LEVELS = ("disable", "all")  # each its own setting: as shipped, and as deployed
DEFAULT_MARGIN_PCT = DEFAULT_MARGIN * 100.0
DEFAULT_DIM = 1  # bench()'s size of free dims (the command line chooses them per graph)
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
    budget: float | None = None

    @classmethod
    def of(
        cls,
        *,
        pairs: int,
        iters: int | None,
        min_time: float | None,
        warmup: int,
        budget: float | None = None,
    ) -> PairPlan:
        """The plan for ``bench()``'s ``pairs``/``iters``/``min_time``/``warmup`` (``UsageError``
        naming those arguments when one is out of range)."""
        try:
            return cls(
                pairs=pairs,
                rounds=iters,
                seconds=DEFAULT_SECONDS if min_time is None else min_time,
                warmup=warmup,
                budget=budget,
            )
        except ValueError as exc:
            text = str(exc).replace("seconds", "min_time").replace("rounds", "iters")
            raise UsageError(text) from None

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
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"budget must be positive, got {self.budget}")

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


@dataclass(frozen=True)
class BenchDesign:
    """How bench measures and decides: ``plan`` (pairs and rounds), the t-interval's
    ``confidence``, the margin of practical equivalence in percent, the A/A ``calibrate``
    session, the percent ``fail_if_slower_pct`` trips beyond (None: off), whether GPU copies
    are timed, and the batch sizes swept (None: no sweep)."""

    plan: PairPlan = field(default_factory=PairPlan)
    confidence: float = DEFAULT_CONFIDENCE
    margin_pct: float = DEFAULT_MARGIN_PCT
    calibrate: bool = False
    fail_if_slower_pct: float | None = None
    include_copies: bool = False
    batches: tuple[int, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        plan: PairPlan,
        confidence: float = DEFAULT_CONFIDENCE,
        margin: float = DEFAULT_MARGIN_PCT,
        calibrate: bool = False,
        fail_if_slower: float | bool | None = None,
        include_copies: bool = False,
        batches: str | Sequence[int] | None = None,
    ) -> BenchDesign:
        """Validate ``bench()``'s arguments of the same names (``UsageError``)."""
        if not 0.5 <= confidence < 1.0:
            raise UsageError(f"confidence must be in [0.5, 1), got {confidence}")
        if not 0.0 <= margin < 100.0:
            raise UsageError(
                f"--margin must be a percentage in [0, 100), got {margin:g}",
                hint=f"the default, {DEFAULT_MARGIN_PCT:g}, is what the same graph against"
                " itself stays within",
            )
        if isinstance(batches, str):
            sizes = parse_batches(batches)
        else:
            sizes = list(batches) if batches else None
        return cls(
            plan=plan,
            confidence=confidence,
            margin_pct=margin,
            calibrate=calibrate,
            fail_if_slower_pct=_fail_pct(fail_if_slower, margin),
            include_copies=include_copies,
            batches=None if sizes is None else tuple(sizes),
        )

    @property
    def margin(self) -> float:
        """The margin as a fraction (``margin_pct / 100``)."""
        return self.margin_pct / 100.0


@dataclass(frozen=True)
class BenchSettings:
    """Everything ``bench`` needs besides the two models."""

    design: BenchDesign = field(default_factory=BenchDesign)
    runtime: RuntimeChoice = field(default_factory=lambda: RuntimeChoice.of(levels=DEFAULT_LEVELS))
    inputs: InputPlan = field(default_factory=lambda: InputPlan(default_dim=DEFAULT_DIM))


def parse_batches(text: str | None) -> list[int] | None:
    """``'1,8,32'`` -> ``[1, 8, 32]``; None or empty -> None (no sweep)."""
    if text is None or not text.strip():
        return None
    sizes: list[int] = []
    for token in (part.strip() for part in text.split(",")):
        if not token.isdigit() or int(token) < 1:
            raise UsageError(
                f"--batch {text!r}: sizes must be positive integers",
                hint="for example --batch 1,8,32",
            )
        if int(token) not in sizes:
            sizes.append(int(token))
    return sizes


def _fail_pct(fail_if_slower: float | bool | None, margin: float) -> float | None:
    """The percent ``fail_if_slower`` trips beyond (None: off; True: the margin)."""
    if fail_if_slower is None or fail_if_slower is False:
        return None
    if fail_if_slower is True:
        return margin
    if not 0.0 <= fail_if_slower < 100.0:
        raise UsageError(
            f"--fail-if-slower must be a percentage in [0, 100), got {fail_if_slower:g}",
            hint="without a value it uses --margin",
        )
    return float(fail_if_slower)

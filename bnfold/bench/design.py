"""The experimental design of one setting: how many session pairs at most, how long each.

Most latency variance lies between sessions and over time, not between iterations (see
``stats``), so a setting is measured as fresh session pairs, each warmed up and then timed
in interleaved rounds, and the verdict is taken over pairs. How many pairs and how long
each is planned by ``budget`` from the first pair's cost and the wall-clock budget; the
pairs are timed in batches and ``sequential`` looks after each batch, so a clear answer
stops the setting early. ``PairPlan`` holds what the caller fixed:

- ``pairs``: the planned maximum per setting (the budget may allow fewer);
- ``rounds`` (``--iters``): exactly this many timed rounds per pair, or
- ``seconds`` (``--min-time``): timed seconds per setting, spread over the ``pairs``;
  neither: each pair's time is planned from the budget;
- ``warmup``: at least this many untimed runs of each new session after its first run;
- ``budget``: wall-clock seconds for the whole run (None: the default of ``budget``).

``BenchDesign`` is the whole design as one frozen object (the pair plan, the confidence and
margin of the verdict, calibration, ``fail_if_slower``, copies, the batch sweep), and
``BenchSettings`` adds what bench shares with verify (``bnfold.runtime.settings``). Every
default lives here, in ``budget``, ``sequential`` or ``stats``; ``bnfold bench --help``
shows these constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from ..runtime.settings import InputPlan, RuntimeChoice
from .sequential import DEFAULT_MAX_PAIRS
from .stats import DEFAULT_CONFIDENCE, DEFAULT_MARGIN

DEFAULT_LEVELS = ("disable", "all")  # each its own setting: as shipped, and as deployed
DEFAULT_MARGIN_PCT = DEFAULT_MARGIN * 100.0
# None: bench() sizes free dims by the rule verify and the command line share (runtime.dims:
# the batch 1, the size the layers were built for, else 224 for an image input).
DEFAULT_DIM: int | None = None
DEFAULT_PAIRS = DEFAULT_MAX_PAIRS
# A fresh session's first run is untimed and recorded apart; one more run and at least
# budget.WARMUP_FRACTION of its timed phase fault in the rest of its memory and wake its
# threads (a fast model gets hundreds of runs from the fraction; for a 300 ms model every
# extra run would cost each pair 0.6 s that tells nothing).
DEFAULT_WARMUP = 1
# Worker threads do not spin-wait in bench unless asked (``--spinning``). Two sessions are
# timed in turn, and after each run the idle session's spinning workers keep the cores the
# timed one needs, which no single-session deployment has. On 2 cores, a real ~5% gain (42
# vs 40 Conv layers) was called `slower` at level all in 2 of 8 runs (0.742x and 0.718x)
# and a real 10% gain `faster` at level disable in 0 of 5; with spinning off, 4/4 and 5/5
# `faster`, and A/A 0 false verdicts in 40 (benchmarks/bench_decisions.md).
DEFAULT_SPINNING = False
MAX_ROUNDS = 200_000  # bounds memory (1.6 MB per model and pair)


@dataclass(frozen=True)
class PairPlan:
    """At most ``pairs`` session pairs per setting; ``rounds`` per pair or ``seconds`` per
    setting when the caller fixed them (None: planned from the ``budget``); at least
    ``warmup`` untimed runs of each session; ``budget`` seconds for the whole run (None:
    the default)."""

    pairs: int = DEFAULT_PAIRS
    rounds: int | None = None
    seconds: float | None = None
    warmup: int = DEFAULT_WARMUP
    budget: float | None = None
    max_rounds: int = MAX_ROUNDS

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
        """The plan for ``bench()``'s ``pairs``/``iters``/``min_time``/``warmup``/``budget``
        (``UsageError`` naming those arguments when one is out of range)."""
        try:
            return cls(pairs=pairs, rounds=iters, seconds=min_time, warmup=warmup, budget=budget)
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
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if self.warmup < 0:
            raise ValueError(f"warmup must not be negative, got {self.warmup}")
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"budget must be positive, got {self.budget}")

    def timed_seconds(self) -> float | None:
        """Timed seconds of one pair fixed by ``seconds`` (``seconds / pairs``), else None."""
        return None if self.seconds is None else self.seconds / self.pairs


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

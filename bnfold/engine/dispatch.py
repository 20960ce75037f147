"""Which patterns the driver asks about a site, and which of their answers it keeps.

The patterns come in the order they are tried (the registry's stages). Consecutive patterns
of one side form a *run*: producer and producer-group patterns (the producer side), consumer
patterns, the consumer-group pattern, the split variants (the producer side through
activations). For each site, run by run:

0. a run none of whose patterns ``accepts`` the site is passed over, unwalked;
1. the run's side walks from the site to its target (``Side.reach``; the walks are kept in
   the ``FoldContext``, so each runs once per site and round however many sides use it);
2. a side that refuses (``Skip``) adds its refusal once: every pattern of the run would have
   had to give that same reason; a side that says ``NotMine`` adds nothing;
3. otherwise only the run's patterns for the target's op type (and those for any op, ``*``)
   that accept the site are asked, in order. The first ``Plan`` wins; a ``Skip`` is kept; ``NotMine`` is not.

When nothing folds, the answer is the most telling refusal, with the other sides' details.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .outcomes import Skip
from .plan import Plan
from .protocol import ANY_OP, FoldContext, NotMine, Pattern, Side
from .sites import AffineSite

# Refusals that only say "nothing to fold into on this side"; any other is more telling.
GENERIC_REASONS = frozenset(
    {"no-linear-producer", "no-linear-consumer", "consumer-input-is-graph-output"}
)
# A fold that is exact but withheld (by default: it would be slower; or its pattern is turned
# off, ``--disable``): the most telling reason, since it says what would fold; the other
# sides' refusals go into its detail.
WITHHELD_REASONS = frozenset({"slower-at-level-all", "no-pattern"})
NO_PATTERN = Skip("no-pattern", "no enabled pattern folds this BatchNormalization")


@dataclass(frozen=True)
class _Run:
    """Consecutive patterns of one side, and which of them to ask about each op type."""

    side: Side
    patterns: tuple[Pattern, ...]
    by_op: dict[str, tuple[Pattern, ...]]
    any_op: tuple[Pattern, ...]  # the patterns for a target of any op type

    @classmethod
    def of(cls, side: Side, patterns: Sequence[Pattern]) -> _Run:
        ops = {pattern.op_type for pattern in patterns} - {ANY_OP}
        by_op = {op: tuple(p for p in patterns if p.op_type in (op, ANY_OP)) for op in sorted(ops)}
        any_op = tuple(p for p in patterns if p.op_type == ANY_OP)
        return cls(side, tuple(patterns), by_op, any_op)

    def asked(self, op_type: str) -> tuple[Pattern, ...]:
        """The patterns that fold into a node of ``op_type``, in the order they are tried."""
        return self.by_op.get(op_type, self.any_op)


class Dispatcher:
    """The patterns, grouped once by side and op type; ``fold`` answers for one site."""

    def __init__(self, patterns: Iterable[Pattern]) -> None:
        self.patterns = list(patterns)
        self.runs: list[_Run] = []
        start = 0
        for end in range(1, len(self.patterns) + 1):
            if (
                end == len(self.patterns)
                or self.patterns[end].side is not self.patterns[start].side
            ):
                self.runs.append(_Run.of(self.patterns[start].side, self.patterns[start:end]))
                start = end

    def fold(self, ctx: FoldContext, site: AffineSite) -> Plan | Skip:
        """The first plan for ``site``; else the most telling refusal."""
        skips: list[Skip] = []
        for run in self.runs:
            if not any(pattern.accepts(ctx, site) for pattern in run.patterns):
                continue
            target = run.side.reach(ctx, site)
            if isinstance(target, NotMine):
                continue
            if isinstance(target, Skip):
                _keep(skips, target)
                continue
            for pattern in run.asked(target.op_type):
                if not pattern.accepts(ctx, site):
                    continue
                answer = pattern.match(ctx, site, target)
                if isinstance(answer, Plan):
                    return answer
                if isinstance(answer, Skip):
                    _keep(skips, answer)
        return most_telling(skips)


def _keep(skips: list[Skip], skip: Skip) -> None:
    if skip not in skips:
        skips.append(skip)


def most_telling(skips: list[Skip]) -> Skip:
    """The refusal to report: a withheld fold's, else the first that is not generic (else the
    first), its detail followed by the others' that it does not already explain."""
    if not skips:
        return NO_PATTERN
    main = next((skip for skip in skips if skip.reason in WITHHELD_REASONS), None) or next(
        (skip for skip in skips if skip.reason not in GENERIC_REASONS), skips[0]
    )
    withheld = main.reason in WITHHELD_REASONS
    others = [
        skip.detail
        for skip in skips
        if skip is not main and (withheld or skip.reason in GENERIC_REASONS)
    ]
    return Skip(main.reason, "; ".join([main.detail, *others]))

"""Number and label formatting shared by the terminal, Markdown and plot renderers.

It imports nothing of the report (``records``, ``report`` and ``terminal`` import it): a
comparison is read through ``ComparisonLike``, which ``records.Comparison`` satisfies.
"""

from __future__ import annotations

import math
from typing import Protocol

from .stats import INCONCLUSIVE, SpeedupEstimate, reading

LATENCY_UNIT = "ms"  # Markdown's unit; the terminal picks µs or ms (``display_unit``)
STATISTIC_NAME = "geometric mean of per-pair medians over the pairs the verdict keeps"
STATISTIC_TEXT = (
    f"latency: {STATISTIC_NAME} (20% trimmed by the pairs' ratios); speedup = "
    "original / candidate, the verdict's statistic, so the columns always agree; above 1 "
    "the candidate is faster. faster/slower: the whole interval lies beyond ±margin; "
    "equivalent: within it; inconclusive: neither."
)


class ComparisonLike(Protocol):
    """What ``verdict_text`` and ``noise_floor_text`` read of a ``records.Comparison``."""

    @property
    def estimate(self) -> SpeedupEstimate: ...

    @property
    def calibration(self) -> SpeedupEstimate | None: ...

    def seconds_needed(self) -> float | None: ...


def setting_label(provider: str, level: str, batch: int | None) -> str:
    """``cpu/all/batch 8``; the batch part is left out when there is no batch axis."""
    return f"{provider}/{level}" + ("" if batch is None else f"/batch {batch}")


def format_ms(value: float | None) -> str:
    """Milliseconds with three significant digits (``0.0112``, ``1.23``, ``123``), ``-`` for None."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def display_unit(values_ms: list[float]) -> str:
    """``'µs'`` when every value is below 1 ms (shorter columns), else ``'ms'``."""
    return "µs" if values_ms and max(values_ms) < 1.0 else "ms"


def format_in_unit(value_ms: float | None, unit: str) -> str:
    """``format_ms`` after converting milliseconds to ``unit`` (``'ms'`` or ``'µs'``)."""
    if value_ms is None:
        return "-"
    return format_ms(value_ms * 1000.0 if unit == "µs" else value_ms)


def format_ratio(value: float) -> str:
    return f"{value:.3f}"


def format_speedup(estimate: SpeedupEstimate) -> str:
    """``1.234× [1.201, 1.260]``."""
    return (
        f"{format_ratio(estimate.speedup)}× "
        f"[{format_ratio(estimate.ci_low)}, {format_ratio(estimate.ci_high)}]"
    )


def format_bytes(size: int) -> str:
    """``812 B``, ``16.1 KiB``, ``4.2 MiB``, ``1.3 GiB``."""
    if size < 1024:
        return f"{size} B"
    scaled = size / 1024
    for unit in ("KiB", "MiB"):
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} GiB"


def confidence_text(confidence: float) -> str:
    """``0.95`` -> ``95%``."""
    return f"{confidence * 100:g}%"


def level_text(confidence: float) -> str:
    """A look's confidence with the digits that tell it from 100%: ``95%``, ``97.4%``,
    ``99.9989%`` (two significant digits of ``1 - confidence``)."""
    missing = max((1.0 - confidence) * 100.0, 1e-12)
    decimals = max(0, 1 - math.floor(math.log10(missing)))
    return f"{round(confidence * 100.0, decimals):g}%"


def format_seconds(seconds: float) -> str:
    """``42.3 s``, ``3 min 05 s``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def format_percent(fraction: float) -> str:
    """``0.0123`` -> ``1.2%``; non-finite -> ``?``."""
    return f"{fraction * 100:.1f}%" if math.isfinite(fraction) else "?"


def verdict_text(comparison: ComparisonLike) -> str:
    """The verdict; for ``inconclusive`` also what a decisive run would need."""
    needs = decisive_run_text(comparison)
    return comparison.estimate.verdict + (f" ({needs})" if needs else "")


def decisive_run_text(comparison: ComparisonLike) -> str | None:
    """For ``inconclusive``: what a decisive run would need, in the one option ``bnfold
    bench`` and ``bnfold optimize --bench`` share for it (``--budget``); else None."""
    estimate = comparison.estimate
    if estimate.verdict != INCONCLUSIVE:
        return None
    needed = estimate.pairs_needed
    if needed is None:
        return "the difference is about the margin: no practical run decides"
    seconds = comparison.seconds_needed()
    cost = f", about {format_seconds(seconds)} for this setting" if seconds is not None else ""
    return f"about {needed} pairs would decide{cost}: raise --budget"


def interval_words(estimate: SpeedupEstimate) -> str:
    """What the estimate's interval establishes against its margin, in words
    (``stats.reading``): ``at least 1.7% faster, not shown to exceed the 3% margin``."""
    return reading(estimate.ci_low, estimate.ci_high, estimate.margin)


def noise_floor_text(comparison: ComparisonLike) -> str:
    """What the machine's noise was in this setting.

    With ``--calibrate``: the A/A result (original against a second session of itself) and
    its pair-to-pair spread. Without: the spread of this run's pairs (under A/A, that is the
    noise) and the interval's half-width.
    """
    estimate = comparison.estimate
    calibration = comparison.calibration
    if calibration is not None:
        return (
            f"A/A {format_speedup(calibration)} {calibration.verdict}, "
            f"pairs vary ±{format_percent(calibration.pair_sd)}"
        )
    return (
        f"pairs vary ±{format_percent(estimate.pair_sd)}, "
        f"interval ±{format_percent(estimate.half_width)} (--calibrate measures A/A)"
    )

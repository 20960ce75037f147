"""The rows of a bench report: one model under one setting, one comparison, one unavailable
provider, as plain data with their JSON form.

``report.BenchReport`` holds them and ``terminal``/``plot`` import them; they use
``formatting``, which reads a comparison through its ``ComparisonLike`` protocol and imports
nothing of the report, so no import runs back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .formatting import interval_words, level_text, noise_floor_text, setting_label
from .modelinfo import ModelFacts
from .sequential import Decision
from .stats import LatencySummary, SpeedupEstimate

ORIGINAL = "original"
CANDIDATE = "candidate"
# A second session of the original in every pair (``--calibrate``): the A/A comparison.
CALIBRATION = "original (A/A)"
OK = "ok"
UNAVAILABLE = "unavailable"


@dataclass
class ModelResult:
    """One model measured under one setting (provider, optimization level, batch)."""

    model: str  # ORIGINAL or CANDIDATE
    provider: str
    level: str
    batch: int | None
    facts: ModelFacts
    status: str = OK  # OK or UNAVAILABLE
    reason: str | None = None
    actual_providers: list[str] = field(default_factory=list)
    latency: LatencySummary | None = None
    # The verdict's statistic for this model (``typical``): the geometric mean of its
    # per-pair medians over the pairs the trimmed mean keeps.
    typical_ms: float | None = None
    session_create_ms: float | None = None
    first_run_ms: float | None = None
    # Raw per-run latencies, kept for plots; not written to JSON (they can be long).
    samples_ms: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency
        return {
            "model": self.model,
            "provider": self.provider,
            "level": self.level,
            "batch": self.batch,
            "status": self.status,
            "reason": self.reason,
            "actual_providers": list(self.actual_providers),
            "samples": latency.samples if latency else 0,
            "latency_ms": self.typical_ms,
            "p50_ms": latency.p50_ms if latency else None,
            "p90_ms": latency.p90_ms if latency else None,
            "p99_ms": latency.p99_ms if latency else None,
            "mean_ms": latency.mean_ms if latency else None,
            "std_ms": latency.std_ms if latency else None,
            "min_ms": latency.min_ms if latency else None,
            "session_create_ms": self.session_create_ms,
            "first_run_ms": self.first_run_ms,
            "file_size_bytes": self.facts.file_size_bytes,
            "node_count": self.facts.node_count,
            "batchnorm_count": self.facts.batchnorm_count,
        }

    def setting_label(self) -> str:
        return setting_label(self.provider, self.level, self.batch)


@dataclass
class Comparison:
    """Candidate against original under one measured setting.

    ``original_ms``/``candidate_ms``: each model's latency by the verdict's
    statistic (``typical``), so their ratio is the speedup. ``decision``: the look that
    ended the setting (``sequential``); ``schedule``: what the budget bought, in words.
    ``pair_speedups``: each pair's ``median(original) / median(candidate)``.
    ``calibration``: original against a second session of itself (``--calibrate``).
    ``seconds_per_pair``: wall time one pair took (sessions, warm-up, rounds), to price a
    longer run.
    """

    provider: str
    level: str
    batch: int | None
    original_ms: float
    candidate_ms: float
    estimate: SpeedupEstimate
    rounds_per_pair: int = 0
    pair_speedups: list[float] = field(default_factory=list)
    calibration: SpeedupEstimate | None = None
    seconds_per_pair: float | None = None
    # Timed seconds each pair got; None with fixed ``--iters``.
    timed_seconds_per_pair: float | None = None
    decision: Decision | None = None
    schedule: str | None = None
    # Why the setting stopped: "decided", "pairs" (all --pairs were timed) or "budget".
    stopped_by: str | None = None

    @property
    def verdict(self) -> str:
        return self.estimate.verdict

    def seconds_needed(self) -> float | None:
        """About how long this setting would take with ``pairs_needed`` pairs."""
        needed = self.estimate.pairs_needed
        if needed is None or self.seconds_per_pair is None:
            return None
        return needed * self.seconds_per_pair

    def to_dict(self) -> dict[str, Any]:
        estimate = self.estimate
        return {
            "provider": self.provider,
            "level": self.level,
            "batch": self.batch,
            "original_ms": self.original_ms,
            "candidate_ms": self.candidate_ms,
            "speedup": estimate.speedup,
            "ci_low": estimate.ci_low,
            "ci_high": estimate.ci_high,
            "confidence": estimate.confidence,
            "margin_pct": estimate.margin * 100.0,
            "verdict": estimate.verdict,
            "pairs": estimate.pairs,
            "rounds_per_pair": self.rounds_per_pair,
            "timed_seconds_per_pair": self.timed_seconds_per_pair,
            "pair_sd_pct": estimate.pair_sd * 100.0,
            "ci_half_width_pct": estimate.half_width * 100.0,
            "pairs_needed": estimate.pairs_needed,
            "seconds_needed": self.seconds_needed(),
            "pair_speedups": list(self.pair_speedups),
            "calibration": _estimate_dict(self.calibration),
            "noise_floor": noise_floor_text(self),
            "established": interval_words(estimate),
            "looks": None if self.decision is None else self.decision.looks,
            "stop_reason": None if self.decision is None else self.decision.reason,
            "schedule": self.schedule,
            "stopped_by": self.stopped_by,
        }

    def setting_label(self) -> str:
        return setting_label(self.provider, self.level, self.batch)

    def stop_text(self) -> str | None:
        """When and why this setting stopped: ``decided after 12 pairs (3 looks; this
        interval at 99.974%)``, ``stopped after 11 pairs (1 look; ...): its share of the
        budget was spent``. The interval itself is said beside the verdict; JSON keeps
        ``sequential``'s full reason as ``stop_reason``."""
        decision = self.decision
        if decision is None:
            return None
        looks = f"{decision.looks} look{'s' if decision.looks != 1 else ''}"
        when = f"after {decision.pairs} pairs ({looks}; this interval at "
        when += f"{level_text(self.estimate.confidence)})"
        if self.stopped_by == "decided":
            return f"decided {when}"
        why = (
            "all --pairs were timed"
            if self.stopped_by == "pairs"
            else "its share of the budget was spent"
        )
        return f"stopped {when}: {why}"


@dataclass
class Unavailable:
    """A requested provider that did not really run (it is never silently replaced by CPU)."""

    provider: str
    level: str
    reason: str
    explicit: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "level": self.level,
            "reason": self.reason,
            "explicit": self.explicit,
        }


def _estimate_dict(estimate: SpeedupEstimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {
        "speedup": estimate.speedup,
        "ci_low": estimate.ci_low,
        "ci_high": estimate.ci_high,
        "verdict": estimate.verdict,
        "pair_sd_pct": estimate.pair_sd * 100.0,
        "ci_half_width_pct": estimate.half_width * 100.0,
    }

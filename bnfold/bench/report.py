"""BenchReport: what ``bench()`` measured, as data, JSON and Markdown (terminal: ``terminal``).

The report holds no logic beyond presentation and the exit decision (``failure()``), so the
CLI and ``bnfold optimize --bench`` render the same thing the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BnfoldError, CandidateSlower, ProviderUnavailable
from .formatting import (
    confidence_text,
    format_bytes,
    format_ms,
    format_seconds,
    format_speedup,
    noise_floor_text,
    setting_label,
    verdict_text,
)
from .modelinfo import ModelFacts
from .stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGIN,
    SLOWER,
    LatencySummary,
    SpeedupEstimate,
    slower_beyond,
)

if TYPE_CHECKING:
    from rich.console import Console

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

    ``original_p50_ms``/``candidate_p50_ms``: median over pairs of each pair's median.
    ``pair_speedups``: each pair's ``median(original) / median(candidate)``.
    ``calibration``: original against a second session of itself (``--calibrate``).
    ``seconds_per_pair``: wall time one pair took (sessions, warm-up, rounds), to price a
    longer run.
    """

    provider: str
    level: str
    batch: int | None
    original_p50_ms: float
    candidate_p50_ms: float
    estimate: SpeedupEstimate
    rounds_per_pair: int = 0
    pair_speedups: list[float] = field(default_factory=list)
    calibration: SpeedupEstimate | None = None
    seconds_per_pair: float | None = None
    # Timed seconds each pair got (``--min-time / --pairs``); None with fixed ``--iters``.
    timed_seconds_per_pair: float | None = None

    @property
    def verdict(self) -> str:
        return self.estimate.verdict

    def min_time_needed(self) -> float | None:
        """``--min-time`` that keeps each pair's timed share with ``pairs_needed`` pairs."""
        needed = self.estimate.pairs_needed
        if needed is None or self.timed_seconds_per_pair is None:
            return None
        return needed * self.timed_seconds_per_pair

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
            "original_p50_ms": self.original_p50_ms,
            "candidate_p50_ms": self.candidate_p50_ms,
            "speedup": estimate.speedup,
            "ci_low": estimate.ci_low,
            "ci_high": estimate.ci_high,
            "confidence": estimate.confidence,
            "margin_pct": estimate.margin * 100.0,
            "verdict": estimate.verdict,
            "pairs": estimate.pairs,
            "rounds_per_pair": self.rounds_per_pair,
            "pair_sd_pct": estimate.pair_sd * 100.0,
            "ci_half_width_pct": estimate.half_width * 100.0,
            "pairs_needed": estimate.pairs_needed,
            "seconds_needed": self.seconds_needed(),
            "min_time_needed": self.min_time_needed(),
            "pair_speedups": list(self.pair_speedups),
            "calibration": _estimate_dict(self.calibration),
            "noise_floor": noise_floor_text(self),
        }

    def setting_label(self) -> str:
        return setting_label(self.provider, self.level, self.batch)


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


@dataclass
class BenchReport:
    """Everything one ``bench()`` call measured and how."""

    original: str
    candidate: str
    results: list[ModelResult]
    comparisons: list[Comparison]
    unavailable: list[Unavailable]
    settings: dict[str, Any]
    machine: dict[str, Any]
    onnxruntime_version: str
    notes: list[str] = field(default_factory=list)
    fail_if_slower_pct: float | None = None
    # Per batch setting: {"batch": B, "inputs": {name: {"dtype", "shape"}}}.
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        return float(self.settings.get("confidence", DEFAULT_CONFIDENCE))

    def measured(self) -> list[ModelResult]:
        """Results that have latencies (not ``unavailable``)."""
        return [result for result in self.results if result.latency is not None]

    # --- exit decision -------------------------------------------------------------------

    def slower_than_allowed(self) -> list[Comparison]:
        """Comparisons that trip ``fail_if_slower_pct``: the ``slower`` rule with that margin,
        ``ci_high < 1 / (1 + pct/100)``."""
        if self.fail_if_slower_pct is None:
            return []
        pct = self.fail_if_slower_pct
        return [c for c in self.comparisons if slower_beyond(c.estimate.ci_high, pct)]

    def failure(self) -> BnfoldError | None:
        """The error the CLI exits with, or None.

        An explicitly requested provider that is unavailable comes first (exit 4: the
        comparison is incomplete), then ``fail_if_slower`` (exit 5).
        """
        missing = [u for u in self.unavailable if u.explicit]
        if missing:
            first = missing[0]
            return ProviderUnavailable(
                f"requested execution provider {first.provider!r} is unavailable: {first.reason}",
                hint="drop it from --providers, or install and configure it",
            )
        slower = self.slower_than_allowed()
        if slower and self.fail_if_slower_pct is not None:
            worst = min(slower, key=lambda c: c.estimate.ci_high)
            return CandidateSlower(
                f"candidate is slower at {worst.setting_label()}: speedup "
                f"{format_speedup(worst.estimate)} ({confidence_text(self.confidence)} CI) lies "
                f"entirely beyond -{self.fail_if_slower_pct:g}% "
                f"(below {1.0 / (1.0 + self.fail_if_slower_pct / 100.0):.3f})",
                hint="keep the original model, or allow more with --fail-if-slower PCT",
            )
        return None

    @property
    def exit_code(self) -> int:
        """0, 4 (requested provider unavailable) or 5 (``fail_if_slower`` tripped)."""
        error = self.failure()
        return 0 if error is None else error.exit_code

    def raise_for_status(self) -> None:
        """Raise ``failure()`` if there is one (what the CLI does after rendering)."""
        error = self.failure()
        if error is not None:
            raise error

    @property
    def margin(self) -> float:
        return float(self.settings.get("margin", DEFAULT_MARGIN))

    def summary_line(self) -> str:
        """One line per report: each setting's verdict and speedup, and the time spent."""
        parts = [
            f"{c.setting_label()}: {c.verdict} ({format_speedup(c.estimate)})"
            for c in self.comparisons
        ]
        parts += [f"{u.provider}/{u.level}: unavailable" for u in self.unavailable]
        text = "; ".join(parts) or "nothing was measured"
        return f"{text} (margin ±{self.margin * 100:g}%, took {self.time_spent_text()})"

    def time_spent_text(self) -> str:
        """Wall time of the whole measurement, ``23.4 s``."""
        return format_seconds(float(self.settings.get("duration_s", 0.0)))

    def design_text(self) -> str:
        """``20 fresh session pairs per setting, each timed 0.4 s in interleaved rounds
        (median 4000/6100 rounds per pair), ≥10 warm-up runs per session``."""
        pairs = self.settings.get("pairs")
        rounds_text = self._rounds_text()
        if self.settings.get("rounds") is None:
            seconds = float(self.settings.get("seconds_per_setting", 0.0)) / float(pairs or 1)
            timing = f"each timed {seconds:.3g} s in interleaved rounds (median {rounds_text}"
        else:
            timing = f"each timed in interleaved rounds ({rounds_text}"
        return (
            f"{pairs} fresh session pairs per setting, {timing} rounds per pair), "
            f"≥{self.settings.get('warmup')} warm-up runs per session"
        )

    def noise_lines(self) -> list[str]:
        """One noise-floor line per comparison (A/A when calibrated, else the pair spread)."""
        return [f"{c.setting_label()}: {noise_floor_text(c)}" for c in self.comparisons]

    # --- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "bench",
            "exit_code": self.exit_code,
            "summary": self.summary_line(),
            "original": self.original,
            "candidate": self.candidate,
            "onnxruntime_version": self.onnxruntime_version,
            "bnfold_version": _bnfold_version(),
            "machine": dict(self.machine),
            "settings": dict(self.settings),
            "fail_if_slower_pct": self.fail_if_slower_pct,
            "results": [result.to_dict() for result in self.results],
            "comparisons": [comparison.to_dict() for comparison in self.comparisons],
            "unavailable": [u.to_dict() for u in self.unavailable],
            "inputs": list(self.inputs),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON: non-finite numbers (a zero median would give an infinite ratio) -> null."""
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False) + "\n"

    # --- Markdown ------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown summary (for ``--markdown`` and GITHUB_STEP_SUMMARY)."""
        ci = confidence_text(self.confidence)
        lines = [
            "## bnfold bench",
            "",
            f"original `{self.original}` vs candidate `{self.candidate}` · "
            f"onnxruntime {self.onnxruntime_version} · "
            f"{self.machine.get('platform', '?')}, {self.machine.get('cpu_count', '?')} CPUs · "
            f"took {self.time_spent_text()}",
            "",
            f"| setting | original p50 (ms) | candidate p50 (ms) | speedup [{ci} CI] | "
            f"verdict (margin ±{self.margin * 100:g}%) | noise floor |",
            "|---|---:|---:|---|---|---|",
        ]
        for c in self.comparisons:
            text = verdict_text(c)
            verdict = f"**{text}**" if c.verdict == SLOWER else text
            lines.append(
                f"| {c.setting_label()} | {format_ms(c.original_p50_ms)} | "
                f"{format_ms(c.candidate_p50_ms)} | {format_speedup(c.estimate)} | {verdict} | "
                f"{noise_floor_text(c)} |"
            )
        for u in self.unavailable:
            lines.append(
                f"| {u.provider}/{u.level} | - | - | - | unavailable: {_escape_md(u.reason)} | - |"
            )
        lines += [
            "",
            "speedup = p50(original) / p50(candidate), the 20%-trimmed geometric mean over pairs; "
            "above 1 the candidate is faster. faster/slower: the whole interval lies beyond "
            "±margin; equivalent: within it; inconclusive: neither.",
            "",
            f"Design: {self.design_text()}. Threads: {self.settings.get('threads_text', '?')}.",
            "",
            "<details><summary>Per-model latency and model facts</summary>",
            "",
            "| setting | model | p50 | p90 | p99 | mean | std | min | session create | first run |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.measured():
            assert r.latency is not None
            lat = r.latency
            cells: list[float | None] = [lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.mean_ms]
            cells += [lat.std_ms, lat.min_ms, r.session_create_ms, r.first_run_ms]
            lines.append(
                f"| {r.setting_label()} | {r.model} | "
                + " | ".join(format_ms(v) for v in cells)
                + " |"
            )
        lines += [
            "",
            "Times in milliseconds.",
            "",
            "| model | file size | nodes | BatchNormalization |",
            "|---|---:|---:|---:|",
        ]
        for role, facts in self.model_facts().items():
            lines.append(
                f"| {role} | {format_bytes(facts.file_size_bytes)} | {facts.node_count} | "
                f"{facts.batchnorm_count} |"
            )
        lines += ["", "</details>", ""]
        lines += [f"- {_escape_md(note)}" for note in self.notes]
        return "\n".join(lines) + ("\n" if self.notes else "")

    def plan_text(self) -> str:
        """``20 pairs × 4000/6100 rounds`` (median rounds per pair, per setting)."""
        return f"{self.settings.get('pairs')} pairs × {self._rounds_text()} rounds"

    def _rounds_text(self) -> str:
        """Rounds per pair of each setting, repeats dropped: ``4000/6100``."""
        unique = dict.fromkeys(str(c.rounds_per_pair) for c in self.comparisons)
        return "/".join(unique) or "?"

    def model_facts(self) -> dict[str, ModelFacts]:
        """Static facts per model role, in order original, candidate."""
        facts: dict[str, ModelFacts] = {}
        for result in self.results:
            facts.setdefault(result.model, result.facts)
        return {role: facts[role] for role in (ORIGINAL, CANDIDATE) if role in facts}

    # --- terminal ------------------------------------------------------------------------

    def render(self, console: Console | None = None) -> None:
        """Print the report as rich tables (see ``terminal.render_report``)."""
        from rich.console import Console

        from .terminal import render_report

        render_report(self, console or Console())


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


def _bnfold_version() -> str:
    from ..version import __version__

    return __version__


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _escape_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = [
    "CALIBRATION",
    "CANDIDATE",
    "OK",
    "ORIGINAL",
    "UNAVAILABLE",
    "BenchReport",
    "Comparison",
    "ModelResult",
    "Unavailable",
    "setting_label",
]

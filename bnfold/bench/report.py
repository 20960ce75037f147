"""BenchReport: what ``bench()`` measured, as data, JSON and Markdown (terminal: ``terminal``).

The report holds no logic beyond presentation and the exit decision (``failure()``), so the
CLI and ``bnfold optimize --bench`` render the same thing the same way. Its rows live in
``records``; the renderers (``formatting``, ``terminal``) never import this module, so the
imports run one way: records <- report -> terminal.

JSON (``to_json``) follows ``storage.results``: keys sorted, a non-finite number (a zero
median gives an infinite ratio) is ``null`` with ``<key>_nonfinite`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BnfoldError, CandidateSlower, ProviderUnavailable
from ..storage.results import to_json
from .formatting import (
    LATENCY_UNIT,
    STATISTIC_NAME,
    STATISTIC_TEXT,
    confidence_text,
    decisive_run_text,
    format_bytes,
    format_ms,
    format_seconds,
    format_speedup,
    interval_words,
    noise_floor_text,
    setting_label,
    verdict_text,
)
from .modelinfo import ModelFacts
from .records import (
    CALIBRATION,
    CANDIDATE,
    OK,
    ORIGINAL,
    UNAVAILABLE,
    Comparison,
    ModelResult,
    Unavailable,
)
from .stats import DEFAULT_CONFIDENCE, DEFAULT_MARGIN, SLOWER, slower_beyond

if TYPE_CHECKING:
    from rich.console import Console


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
    # How the inputs were sized (``runtime.dims``): printed in the header, before any table.
    input_notes: list[str] = field(default_factory=list)
    fail_if_slower_pct: float | None = None
    # Per batch setting: {"batch": B, "inputs": {name: {"dtype", "shape"}}}.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # Quantized models: {role: {level: {op type: count} | why not read}} (``kernels.py``).
    quantized_kernels: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        """One line per report: each setting's verdict, speedup and what its interval
        establishes, and the budget spent."""
        parts = [
            f"{c.setting_label()}: {c.verdict} ({format_speedup(c.estimate)}: "
            f"{interval_words(c.estimate)})"
            for c in self.comparisons
        ]
        parts += [f"{u.provider}/{u.level}: unavailable" for u in self.unavailable]
        text = "; ".join(parts) or "nothing was measured"
        return f"{text} (margin ±{self.margin * 100:g}%, {self.budget_text()})"

    def time_spent_text(self) -> str:
        """Wall time of the whole measurement, ``23.4 s``."""
        return format_seconds(float(self.settings.get("duration_s", 0.0)))

    def design_text(self) -> str:
        """``up to 40 fresh session pairs per setting, looked at every 2 pairs from the
        6th (alpha spent O'Brien-Fleming style), ≥2 warm-up runs per session``."""
        return (
            f"up to {self.settings.get('pairs')} fresh session pairs per setting, timed in "
            f"interleaved rounds ({self._rounds_text()} rounds per pair) and looked at in "
            "batches with alpha-spending boundaries (each interval at the confidence its look "
            f"spent; {confidence_text(self.confidence)} over all looks), "
            f"≥{self.settings.get('warmup')} warm-up runs per session"
        )

    def budget_text(self) -> str:
        """``budget 8.0 s (default), took 7.9 s``, and the overrun when there was one."""
        budget = self.settings.get("budget_s")
        if budget is None:
            return f"took {self.time_spent_text()}"
        how = "" if self.settings.get("budget_explicit") else " (default)"
        text = f"budget {format_seconds(float(budget))}{how}, took {self.time_spent_text()}"
        overrun = float(self.settings.get("overrun_s") or 0.0)
        if overrun > 0.05:
            slowest = max((c.seconds_per_pair or 0.0 for c in self.comparisons), default=0.0)
            text += (
                f": over by {format_seconds(overrun)} (every setting takes at least 2 pairs, "
                f"and a pair took {format_seconds(slowest)})"
            )
        return text

    def setting_lines(self) -> list[str]:
        """Per setting: the verdict and what its interval establishes, why it stopped, what
        a decisive run would need, and what the budget bought."""
        lines = []
        for c in self.comparisons:
            lines.append(f"{c.setting_label()}: {c.verdict}: {interval_words(c.estimate)}")
            more = [c.stop_text(), decisive_run_text(c), c.schedule]
            lines += [f"  {text}" for text in more if text]
        return lines

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
            "input_notes": list(self.input_notes),
            "quantized_kernels": {
                role: dict(levels) for role, levels in self.quantized_kernels.items()
            },
        }

    def to_json(self) -> str:
        """Strict JSON (``storage.results``): a non-finite number is ``null``, its reason beside it."""
        return to_json(self.to_dict()) + "\n"

    # --- Markdown ------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown summary (for ``--markdown`` and GITHUB_STEP_SUMMARY)."""
        lines = [
            "## bnfold bench",
            "",
            f"original `{self.original}` vs candidate `{self.candidate}` · "
            f"onnxruntime {self.onnxruntime_version} · "
            f"{self.machine.get('platform', '?')}, {self.machine.get('cpu_count', '?')} CPUs · "
            f"{self.budget_text()}",
            "",
        ]
        lines += [f"- inputs: {_escape_md(line)}" for line in self.input_lines()]
        lines += [
            "",
            f"| setting | original ({LATENCY_UNIT}) | candidate ({LATENCY_UNIT}) | "
            f"speedup [interval] | verdict (margin ±{self.margin * 100:g}%) | "
            "what the interval establishes |",
            "|---|---:|---:|---|---|---|",
        ]
        for c in self.comparisons:
            text = verdict_text(c)
            verdict = f"**{text}**" if c.verdict == SLOWER else text
            lines.append(
                f"| {c.setting_label()} | {format_ms(c.original_ms)} | "
                f"{format_ms(c.candidate_ms)} | {format_speedup(c.estimate)} | {verdict} | "
                f"{interval_words(c.estimate)} |"
            )
        for u in self.unavailable:
            lines.append(
                f"| {u.provider}/{u.level} | - | - | - | unavailable: {_escape_md(u.reason)} | - |"
            )
        lines += ["", STATISTIC_TEXT, ""]
        for line in self.setting_lines():  # a setting's own lines nest under it
            bullet = "  - " if line.startswith(" ") else "- "
            lines.append(bullet + _escape_md(line.strip()))
        lines += [f"- noise floor {_escape_md(line)}" for line in self.noise_lines()]
        lines += [
            "",
            f"Design: {self.design_text()}. Threads: {self.settings.get('threads_text', '?')}.",
            "",
            "<details><summary>Per-model latency and model facts</summary>",
            "",
            "| setting | model | latency | p90 | p99 | min | session create | first run |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.measured():
            assert r.latency is not None
            lat = r.latency
            cells = [r.typical_ms, lat.p90_ms, lat.p99_ms, lat.min_ms]
            cells += [r.session_create_ms, r.first_run_ms]
            lines.append(
                f"| {r.setting_label()} | {r.model} | "
                + " | ".join(format_ms(v) for v in cells)
                + " |"
            )
        lines += [
            "",
            f"Times in milliseconds. latency: {STATISTIC_NAME}; p90, p99, min: over all timed "
            "rounds of the model.",
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

    def input_lines(self) -> list[str]:
        """The inputs each batch setting ran on (``input: float32 1x3x224x224``), then how
        their free dims were sized (``runtime.dims``' notes)."""
        lines = []
        for entry in self.inputs:
            shapes = ", ".join(
                f"{name} {spec.get('dtype', '?')} {'x'.join(str(d) for d in spec.get('shape', []))}"
                for name, spec in entry.get("inputs", {}).items()
            )
            lines.append(
                shapes if entry.get("batch") is None else f"batch {entry['batch']}: {shapes}"
            )
        return lines + list(self.input_notes)

    def plan_text(self) -> str:
        """``8/12 pairs`` (pairs each setting took; repeats dropped)."""
        unique = dict.fromkeys(str(c.estimate.pairs) for c in self.comparisons)
        return f"{'/'.join(unique) or '?'} pairs"

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


def _bnfold_version() -> str:
    from ..version import __version__

    return __version__


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

"""The terminal view of a BenchReport: three rich tables and the lines that qualify them.

1. Candidate vs original per setting: both medians, speedup with its interval, verdict
   (unavailable providers appear here with the reason, so they cannot be missed), then one
   noise-floor line per setting, the design, the threads and the time spent.
2. Latency per setting and model: p50/p90/p99/mean/std/min, session creation, first run.
3. Model facts: file size, node count, BatchNormalization count.

``report.BenchReport.render`` calls this module, so it does not import ``report`` back: it
reads the report through ``ReportView`` (which ``BenchReport`` satisfies) and its rows from
``records``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from rich import box
from rich.table import Table

from .formatting import (
    confidence_text,
    display_unit,
    format_bytes,
    format_in_unit,
    format_ms,
    format_speedup,
    verdict_text,
)
from .modelinfo import ModelFacts
from .records import Comparison, ModelResult, Unavailable
from .stats import EQUIVALENT, FASTER, INCONCLUSIVE, SLOWER

if TYPE_CHECKING:
    from rich.console import Console

# Narrower than this, the latency table keeps only the columns that fit in 80.
WIDE_TERMINAL = 110
_VERDICT_STYLE = {FASTER: "green", SLOWER: "bold red", EQUIVALENT: "cyan", INCONCLUSIVE: "yellow"}


class ReportView(Protocol):
    """What the tables read of a ``report.BenchReport``."""

    original: str
    candidate: str
    comparisons: list[Comparison]
    unavailable: list[Unavailable]
    settings: dict[str, Any]
    notes: list[str]

    @property
    def margin(self) -> float: ...

    @property
    def confidence(self) -> float: ...

    def measured(self) -> list[ModelResult]: ...

    def model_facts(self) -> dict[str, ModelFacts]: ...

    def plan_text(self) -> str: ...

    def noise_lines(self) -> list[str]: ...

    def design_text(self) -> str: ...

    def time_spent_text(self) -> str: ...


def render_report(report: ReportView, console: Console) -> None:
    console.print(comparison_table(report))
    for line in report.noise_lines():
        console.print(f"noise floor {line}", markup=False, highlight=False)
    console.print(f"design: {report.design_text()}", markup=False, highlight=False)
    console.print(
        f"threads: {report.settings.get('threads_text', '?')}", markup=False, highlight=False
    )
    console.print(f"time spent: {report.time_spent_text()}", markup=False, highlight=False)
    console.print()
    if report.measured():
        console.print(latency_table(report, console.width))
    console.print(facts_table(report))
    for note in report.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)


def comparison_table(report: ReportView) -> Table:
    medians = [m for c in report.comparisons for m in (c.original_p50_ms, c.candidate_p50_ms)]
    unit = display_unit(medians)
    table = Table(
        title=f"Candidate vs original ({report.plan_text()}; p50 in {unit}; "
        f"margin ±{report.margin * 100:g}%)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("setting", no_wrap=True)
    table.add_column("original", justify="right", no_wrap=True)
    table.add_column("candidate", justify="right", no_wrap=True)
    table.add_column(
        f"speedup [{confidence_text(report.confidence)} CI]", justify="right", no_wrap=True
    )
    table.add_column("verdict")
    for c in report.comparisons:
        style = _VERDICT_STYLE.get(c.verdict)
        text = verdict_text(c).replace("[", "\\[")
        table.add_row(
            c.setting_label(),
            format_in_unit(c.original_p50_ms, unit),
            format_in_unit(c.candidate_p50_ms, unit),
            format_speedup(c.estimate),
            f"[{style}]{text}[/]" if style else text,
        )
    for u in report.unavailable:
        table.add_row(
            f"{u.provider}/{u.level}", "-", "-", "-", f"[yellow]unavailable[/]: {u.reason}"
        )
    return table


def latency_table(report: ReportView, width: int = WIDE_TERMINAL) -> Table:
    """Per-run latency in µs or ms (whichever keeps columns short); startup times in ms.

    Below ``WIDE_TERMINAL`` columns only p50/p90/p99/min are shown (rich would otherwise
    truncate every number); the JSON and Markdown reports always carry all of them.
    """
    measured = report.measured()
    unit = display_unit([r.latency.p99_ms for r in measured if r.latency is not None])
    wide = width >= WIDE_TERMINAL
    title = f"Latency ({unit}" + ("; session create and first run in ms)" if wide else ")")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("model", no_wrap=True)
    names = ("p50", "p90", "p99", "mean", "std", "min") if wide else ("p50", "p90", "p99", "min")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    if wide:
        table.add_column("create", justify="right", no_wrap=True)
        table.add_column("1st run", justify="right", no_wrap=True)
    for r in measured:
        assert r.latency is not None
        lat = r.latency
        values = {
            "p50": lat.p50_ms,
            "p90": lat.p90_ms,
            "p99": lat.p99_ms,
            "mean": lat.mean_ms,
            "std": lat.std_ms,
            "min": lat.min_ms,
        }
        cells = [format_in_unit(values[name], unit) for name in names]
        if wide:
            cells += [format_ms(r.session_create_ms), format_ms(r.first_run_ms)]
        table.add_row(r.setting_label(), r.model, *cells)
    if not wide:
        table.caption = "mean, std, startup times: wider terminal, --report or --markdown"
        table.caption_justify = "left"
    return table


def facts_table(report: ReportView) -> Table:
    table = Table(title="Models", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("model")
    table.add_column("path", overflow="fold")
    table.add_column("file size", justify="right")
    table.add_column("nodes", justify="right")
    table.add_column("BatchNormalization", justify="right")
    paths = {"original": report.original, "candidate": report.candidate}
    for role, facts in report.model_facts().items():
        table.add_row(
            role,
            paths[role],
            format_bytes(facts.file_size_bytes),
            str(facts.node_count),
            str(facts.batchnorm_count),
        )
    return table

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

from ..storage.textfit import COLUMN_GAP, cell_width, name_widths, print_table, wrap_name
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
    def say(text: str) -> None:  # prose wraps at the console's width
        console.print(text, markup=False, highlight=False, soft_wrap=False)

    print_table(console, comparison_table(report))
    for line in verdict_lines(report):
        say(line)
    for line in report.noise_lines():
        say(f"noise floor {line}")
    say(f"design: {report.design_text()}")
    say(f"threads: {report.settings.get('threads_text', '?')}")
    say(f"time spent: {report.time_spent_text()}")
    console.print()
    if report.measured():
        print_table(console, latency_table(report, console.width))
    print_table(console, facts_table(report, console.width))
    for note in report.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False, soft_wrap=False)


def _table(title: str) -> Table:
    """The bench tables' frame: no outer edge, one gap between columns (fits 80 columns)."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def comparison_table(report: ReportView) -> Table:
    """One line per setting; the verdict is one word (what it needs is said below the table)."""
    medians = [m for c in report.comparisons for m in (c.original_p50_ms, c.candidate_p50_ms)]
    unit = display_unit(medians)
    table = _table(
        f"Candidate vs original ({report.plan_text()}; p50 in {unit}; "
        f"margin ±{report.margin * 100:g}%)"
    )
    table.add_column("setting", no_wrap=True)
    table.add_column("original", justify="right", no_wrap=True)
    table.add_column("candidate", justify="right", no_wrap=True)
    table.add_column(
        f"speedup [{confidence_text(report.confidence)} CI]", justify="right", no_wrap=True
    )
    table.add_column("verdict", no_wrap=True)
    for c in report.comparisons:
        style = _VERDICT_STYLE.get(c.verdict)
        table.add_row(
            c.setting_label(),
            format_in_unit(c.original_p50_ms, unit),
            format_in_unit(c.candidate_p50_ms, unit),
            format_speedup(c.estimate),
            f"[{style}]{c.verdict}[/]" if style else c.verdict,
        )
    for u in report.unavailable:
        table.add_row(f"{u.provider}/{u.level}", "-", "-", "-", "[yellow]unavailable[/]")
    return table


def verdict_lines(report: ReportView) -> list[str]:
    """What a verdict word needs said: what a decisive run needs, why a provider is missing."""
    lines = []
    for c in report.comparisons:
        text = verdict_text(c)
        if text != c.verdict:
            lines.append(f"{c.setting_label()}: {text}")
    for u in report.unavailable:
        lines.append(f"{u.provider}/{u.level}: unavailable: {u.reason}")
    return lines


def latency_table(report: ReportView, width: int = 80) -> Table:
    """Per-run latency in µs or ms (whichever keeps columns short); startup times in ms.

    When the full table is wider than ``width``, only p50/p90/p99/min are shown (every number
    stays whole); the JSON and Markdown reports always carry all of them.
    """
    measured = report.measured()
    unit = display_unit([r.latency.p99_ms for r in measured if r.latency is not None])
    rows = []
    for r in measured:
        assert r.latency is not None
        lat = r.latency
        rows.append(
            {
                "setting": r.setting_label(),
                "model": r.model,
                "p50": format_in_unit(lat.p50_ms, unit),
                "p90": format_in_unit(lat.p90_ms, unit),
                "p99": format_in_unit(lat.p99_ms, unit),
                "mean": format_in_unit(lat.mean_ms, unit),
                "std": format_in_unit(lat.std_ms, unit),
                "min": format_in_unit(lat.min_ms, unit),
                "create": format_ms(r.session_create_ms),
                "1st run": format_ms(r.first_run_ms),
            }
        )
    every = ("setting", "model", "p50", "p90", "p99", "mean", "std", "min", "create", "1st run")
    widths = {name: cell_width(name, [row[name] for row in rows]) for name in every}
    wide = sum(widths.values()) + COLUMN_GAP * (len(every) - 1) <= width
    names = every if wide else ("setting", "model", "p50", "p90", "p99", "min")
    title = f"Latency ({unit}" + ("; session create and first run in ms)" if wide else ")")
    table = _table(title)
    for name in names:
        left = name in ("setting", "model")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(row[name] for name in names))
    if not wide:
        table.caption = "mean, std, startup times: wider terminal, --report or --markdown"
        table.caption_justify = "left"
    return table


def facts_table(report: ReportView, width: int = 80) -> Table:
    """File size (the model and its external data), nodes, BatchNormalization nodes; paths
    wrapped at ``/``."""
    facts = report.model_facts()
    paths = {"original": report.original, "candidate": report.candidate}
    rows = [
        [
            role,
            paths[role],
            format_bytes(f.file_size_bytes),
            str(f.node_count),
            str(f.batchnorm_count),
        ]
        for role, f in facts.items()
    ]
    headers = ["model", "path", "file size", "nodes", "BatchNormalization"]
    widths = [cell_width(h, [r[i] for r in rows]) for i, h in enumerate(headers)]
    (fit,) = name_widths(width, widths[:1] + widths[2:], [[r[1] for r in rows] + ["path"]], 8)
    table = _table("Models")
    for i, header in enumerate(headers):
        table.add_column(
            header,
            justify="left" if i < 2 else "right",
            no_wrap=True,
            width=fit if i == 1 else widths[i],
        )
    for row in rows:
        row[1] = wrap_name(row[1], fit)
        table.add_row(*row)
    return table

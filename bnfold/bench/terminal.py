"""The terminal view of a BenchReport: a header, three rich tables and the lines that
qualify them.

0. Header: the inputs each setting ran on and how their free dims were sized, before any
   number (a model timed at 2×2 pixels must not be read as a 224×224 one).
1. Candidate vs original per setting: each model's latency and the speedup by the one
   statistic the verdict uses (so original / candidate is the speedup), the interval and
   the verdict (unavailable providers appear here with the reason); then per setting what
   the interval establishes, why it stopped and what the budget bought, the noise floor,
   the design, the threads and the budget spent.
2. Latency per setting and model: the same latency, then p90/p99/min over all rounds,
   session creation and first run.
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
    STATISTIC_NAME,
    display_unit,
    format_bytes,
    format_in_unit,
    format_ms,
    format_speedup,
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

    def budget_text(self) -> str: ...

    def input_lines(self) -> list[str]: ...

    def setting_lines(self) -> list[str]: ...


def render_report(report: ReportView, console: Console) -> None:
    def say(text: str) -> None:  # prose wraps at the console's width
        console.print(text, markup=False, highlight=False, soft_wrap=False)

    for line in report.input_lines():
        say(f"inputs: {line}")
    print_table(console, comparison_table(report, console.width))
    say(f"latency: {STATISTIC_NAME}, so original / candidate = speedup")
    for line in setting_lines(report):
        say(line)
    for line in report.noise_lines():
        say(f"noise floor {line}")
    say(f"design: {report.design_text()}")
    say(f"threads: {report.settings.get('threads_text', '?')}")
    say(report.budget_text())
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


def comparison_table(report: ReportView, width: int = 80) -> Table:
    """One line per setting; the verdict is one word (what it needs is said below the table)."""
    latencies = [m for c in report.comparisons for m in (c.original_ms, c.candidate_ms)]
    unit = display_unit(latencies)
    table = _table(
        f"Candidate vs original ({report.plan_text()}; latency in {unit}; "
        f"margin ±{report.margin * 100:g}%)"
    )
    table.add_column("setting", no_wrap=True)
    table.add_column("original", justify="right", no_wrap=True)
    table.add_column("candidate", justify="right", no_wrap=True)
    table.add_column("speedup [interval]", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for c in report.comparisons:
        style = _VERDICT_STYLE.get(c.verdict)
        table.add_row(
            c.setting_label(),
            format_in_unit(c.original_ms, unit),
            format_in_unit(c.candidate_ms, unit),
            format_speedup(c.estimate),
            f"[{style}]{c.verdict}[/]" if style else c.verdict,
        )
    for u in report.unavailable:
        table.add_row(f"{u.provider}/{u.level}", "-", "-", "-", "[yellow]unavailable[/]")
    return table


def setting_lines(report: ReportView) -> list[str]:
    """What each verdict word needs said (what the interval establishes, why the setting
    stopped, what the budget bought), and why a provider is missing."""
    lines = report.setting_lines()
    for u in report.unavailable:
        lines.append(f"{u.provider}/{u.level}: unavailable: {u.reason}")
    return lines


def latency_table(report: ReportView, width: int = 80) -> Table:
    """Per model: the comparison's latency again, then p90/p99/min over all timed rounds, in
    the comparison table's unit; startup times in ms.

    When the full table is wider than ``width``, columns are left out from the right (every
    number stays whole); the JSON and Markdown reports always carry them.
    """
    measured = report.measured()
    # The comparison table's unit, so each latency reads exactly as it does there.
    unit = display_unit([r.typical_ms for r in measured if r.typical_ms is not None])
    rows = []
    for r in measured:
        assert r.latency is not None
        lat = r.latency
        rows.append(
            {
                "setting": r.setting_label(),
                "model": r.model,
                "latency": format_in_unit(r.typical_ms, unit),
                "p90": format_in_unit(lat.p90_ms, unit),
                "p99": format_in_unit(lat.p99_ms, unit),
                "min": format_in_unit(lat.min_ms, unit),
                "create": format_ms(r.session_create_ms),
                "1st run": format_ms(r.first_run_ms),
            }
        )
    every = ("setting", "model", "latency", "p90", "p99", "min", "create", "1st run")
    widths = {name: cell_width(name, [row[name] for row in rows]) for name in every}

    def fits(names: tuple[str, ...]) -> bool:
        return sum(widths[name] for name in names) + COLUMN_GAP * (len(names) - 1) <= width

    # The columns from the left that fit, always through the comparison's own latency.
    names = next((every[:n] for n in range(len(every), 3, -1) if fits(every[:n])), every[:3])
    wide = names == every
    startup = "; startup in ms" if wide else ""
    table = _table(f"Latency ({unit}; p90, p99, min over all rounds{startup})")
    for name in names:
        left = name in ("setting", "model")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(row[name] for name in names))
    if not wide:
        table.caption = "more columns: wider terminal, --report or --markdown"
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

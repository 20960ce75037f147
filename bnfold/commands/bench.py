"""`bnfold bench ORIGINAL CANDIDATE`: parse options, call ``bnfold.bench.bench``, render.

Exit codes: 0 measured (whatever the verdict); 2 usage; 3 a model cannot be loaded; 4 a
provider named in ``--providers`` is unavailable; 5 ``--fail-if-slower`` tripped; 6 a report
file cannot be written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import OutputWriteError
from .common import input_options

_PROVIDERS_HELP = (
    "Comma list of execution providers: cpu, cuda, tensorrt, rocm (or full onnxruntime names). "
    "Default: cpu, plus cuda when CUDA really works here. A provider named here that cannot "
    "run exits 4."
)
_LEVEL_HELP = (
    "Comma list of onnxruntime optimization levels, each measured as its own row: disable, "
    "basic, extended, all."
)
_BATCH_HELP = (
    "Comma list of batch sizes to sweep, e.g. 1,8,32: sets dimension 0 of every input whose "
    "dimension 0 is symbolic or unknown in the model (inputs with a fixed dimension 0 keep it)."
)
_FAIL_HELP = (
    "Exit 5 when, for any setting, the candidate is significantly slower by more than PCT "
    "percent: the upper end of the speedup's 95% CI is below 1 - PCT/100. 0 = any significant "
    "slowdown."
)


@click.command(name="bench")
@click.argument("original")
@click.argument("candidate")
@input_options
@click.option("--providers", "providers", metavar="LIST", help=_PROVIDERS_HELP)
@click.option(
    "--level", "levels", metavar="LIST", default="disable,all", show_default=True, help=_LEVEL_HELP
)
@click.option("--batch", "batches", metavar="LIST", help=_BATCH_HELP)
@click.option(
    "--inputs",
    "input_file",
    metavar="FILE.npz",
    help="Real input data instead of random: one array per input name.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of inputs and bootstrap."
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    help="Timed rounds per setting (one run of each model per round). Default 100; "
    "with --min-time, the minimum number of rounds (default 10).",
)
@click.option(
    "--min-time",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Time each setting for at least this long (at most 1000000 rounds).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Untimed runs of each model before timing.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help="onnxruntime intra-op threads (default: onnxruntime's choice).",
)
@click.option(
    "--include-copies",
    is_flag=True,
    help="On GPU providers, time host<->device copies too (default: inputs and outputs stay "
    "on the device through IOBinding).",
)
@click.option(
    "--fail-if-slower",
    type=click.FloatRange(min=0, max=100, max_open=True),
    metavar="PCT",
    help=_FAIL_HELP,
)
@click.option("--report", "report_path", metavar="FILE.json", help="Write the full report as JSON.")
@click.option(
    "--markdown", "markdown_path", metavar="FILE.md", help="Write the report as Markdown."
)
@click.option(
    "--plot",
    "plot_path",
    metavar="FILE.png",
    help="Draw latency distributions (needs matplotlib: pip install 'bnfold[plot]').",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar; print only the summary line, not the tables.",
)
def command(
    original: str,
    candidate: str,
    providers: str | None,
    levels: str,
    batches: str | None,
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int,
    input_file: str | None,
    seed: int,
    iters: int | None,
    min_time: float | None,
    warmup: int,
    threads: int | None,
    include_copies: bool,
    fail_if_slower: float | None,
    report_path: str | None,
    markdown_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Compare the latency of CANDIDATE with ORIGINAL under onnxruntime.

    Both models run in one process, in interleaved rounds (original, candidate, original, ...)
    on the same inputs, after warm-up. For each provider, level and batch size it reports
    p50/p90/p99/mean/std/min, and speedup = p50(original) / p50(candidate) with a 95%
    bootstrap confidence interval. Verdict: faster when the whole interval is above 1,
    slower when it is below 1, otherwise no significant difference.
    When GITHUB_STEP_SUMMARY is set, the Markdown report is appended to it.
    """
    from ..bench import RichProgress, bench, parse_batches
    from ..bench.plot import require_matplotlib
    from ..verify.inputs import parse_dim_options, parse_range_options, parse_shape_options
    from .common import append_github_summary, stdout_console

    if plot_path:
        require_matplotlib()  # before minutes of measuring, not after
    options: dict[str, Any] = {
        "providers": providers,
        "levels": levels,
        "batches": parse_batches(batches),
        "shapes": parse_shape_options(shapes),
        "dims": parse_dim_options(dims),
        "ranges": parse_range_options(ranges),
        "default_dim": default_dim,
        "inputs": input_file,
        "seed": seed,
        "iters": iters,
        "min_time": min_time,
        "warmup": warmup,
        "threads": threads,
        "include_copies": include_copies,
        "fail_if_slower": fail_if_slower,
    }
    if quiet or not sys.stderr.isatty():
        report = bench(original, candidate, **options)
    else:
        with RichProgress() as progress:
            report = bench(original, candidate, progress=progress, **options)

    console = stdout_console()
    if quiet:
        console.print(report.summary_line(), markup=False, highlight=False)
    else:
        report.render(console)

    markdown = report.to_markdown()
    if report_path:
        _write(Path(report_path), report.to_json())
    if markdown_path:
        _write(Path(markdown_path), markdown)
    if plot_path:
        from ..bench.plot import write_plot

        write_plot(report, plot_path)
    try:
        append_github_summary(markdown)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot append to GITHUB_STEP_SUMMARY: {exc.strerror or exc}"
        ) from None
    report.raise_for_status()


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the path"
        ) from None

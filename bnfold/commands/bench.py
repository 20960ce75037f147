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

from ..storage.outputs import Outputs
from .common import ReportFiles
from .options import (
    input_arguments,
    input_options,
    one_inputs_file,
    provider_options,
    report_options,
)

_BATCH_HELP = (
    "Comma list of batch sizes to sweep, e.g. 1,8,32: sets dimension 0 of every input whose "
    "dimension 0 is symbolic or unknown in the model (inputs with a fixed dimension 0 keep it)."
)
_FAIL_HELP = (
    "Exit 5 when, for any setting, the verdict is slower: the whole 95% interval lies beyond "
    "the margin (speedup below 1/(1 + margin)). Alone it uses --margin; with a value "
    "(--fail-if-slower=PCT) that percent instead."
)
_MARGIN_HELP = (
    "Margin of practical equivalence, percent: faster/slower only when the whole 95% interval "
    "lies beyond +-PCT, equivalent when it lies within, otherwise inconclusive. The default is "
    "what the same graph against itself stayed within in our A/A runs (see --calibrate)."
)


@click.command(name="bench")
@click.argument("original")
@click.argument("candidate")
@input_options
@provider_options(level_default="disable,all")
@click.option("--batch", "batches", metavar="LIST", help=_BATCH_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option(
    "--pairs",
    type=click.IntRange(min=2),
    default=20,
    show_default=True,
    help="Fresh session pairs per setting; the interval is computed over pairs.",
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    help="Timed rounds per pair (one run of each model per round). Default: adapted to the "
    "model's latency so the timed rounds of a setting take about --min-time seconds.",
)
@click.option(
    "--min-time",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Seconds of timed rounds per setting, spread over the pairs (default 8; at least "
    "20 rounds per pair, so a slow model takes longer).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Untimed runs of each new session before timing (at least 10% of its rounds).",
)
@click.option(
    "--margin",
    type=click.FloatRange(min=0, max=100, max_open=True),
    default=3.0,
    show_default=True,
    metavar="PCT",
    help=_MARGIN_HELP,
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Also time a second session of the original in every pair: the A/A noise floor of "
    "this machine, shown beside each verdict (the three sessions share the time budget).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help="onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core).",
)
@click.option(
    "--inter-threads",
    type=click.IntRange(min=0),
    help="onnxruntime inter-op threads (default: onnxruntime's choice).",
)
@click.option(
    "--spinning/--no-spinning",
    default=None,
    help="Let onnxruntime's worker threads spin-wait for work (default: onnxruntime's, on).",
)
@click.option(
    "--cpus",
    metavar="LIST",
    help="Pin the measurement to these CPUs, e.g. 0 or 0,2-3 (Linux).",
)
@click.option(
    "--include-copies",
    is_flag=True,
    help="On GPU providers, time host<->device copies too (default: inputs and outputs stay "
    "on the device through IOBinding).",
)
@click.option(
    "--fail-if-slower",
    "fail_if_slower",
    is_flag=False,
    flag_value="margin",
    metavar="[PCT]",
    help=_FAIL_HELP,
)
@report_options
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
    input_files: tuple[str, ...],
    seed: int,
    pairs: int,
    iters: int | None,
    min_time: float | None,
    warmup: int,
    margin: float,
    calibrate: bool,
    threads: int | None,
    inter_threads: int | None,
    spinning: bool | None,
    cpus: str | None,
    include_copies: bool,
    fail_if_slower: str | None,
    report_path: Path | None,
    markdown_path: Path | None,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Compare the latency of CANDIDATE with ORIGINAL under onnxruntime.

    For each provider, level and batch size, --pairs fresh session pairs are created in this
    process and timed in interleaved rounds on the same inputs, after warm-up. speedup =
    p50(original) / p50(candidate), the geometric mean over pairs, with a 95% interval over
    pairs. Verdict: faster/slower when the whole interval lies beyond +-margin, equivalent when
    it lies within, otherwise inconclusive (with the run length that would decide). Every
    report shows the noise floor; --calibrate measures it as original against itself.
    When GITHUB_STEP_SUMMARY is set, the Markdown report is appended to it.
    """
    outputs = Outputs()
    outputs.read_model(original, "original model")
    outputs.read_model(candidate, "candidate model")
    reports = ReportFiles(outputs, report_path, markdown_path)
    if plot_path:
        outputs.plan(plot_path, "--plot file")
    from ..bench import RichProgress, bench, parse_batches, parse_fail_if_slower
    from ..bench.plot import require_matplotlib
    from .common import stdout_console

    if plot_path:
        require_matplotlib()  # before minutes of measuring, not after
    options: dict[str, Any] = {
        "providers": providers,
        "levels": levels,
        "batches": parse_batches(batches),
        **input_arguments(shapes, dims, ranges, default_dim),
        "inputs": one_inputs_file(input_files, "bench"),
        "seed": seed,
        "pairs": pairs,
        "iters": iters,
        "min_time": min_time,
        "warmup": warmup,
        "margin": margin,
        "calibrate": calibrate,
        "threads": threads,
        "inter_threads": inter_threads,
        "spinning": spinning,
        "cpus": cpus,
        "include_copies": include_copies,
        "fail_if_slower": parse_fail_if_slower(fail_if_slower),
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

    reports.write(report.to_json(), report.to_markdown())
    if plot_path:
        from ..bench.plot import write_plot

        write_plot(report, plot_path, outputs)
    report.raise_for_status()

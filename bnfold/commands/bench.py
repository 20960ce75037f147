"""`bnfold bench ORIGINAL CANDIDATE`: parse options, call ``bnfold.bench.bench``, render.

Exit codes: 0 measured (whatever the verdict); 2 usage; 3 a model cannot be loaded; 4 a
provider named in ``--providers`` is unavailable; 5 ``--fail-if-slower`` tripped; 6 a report
file cannot be written.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..runtime.placement import parse_cpus
from ..storage.outputs import Outputs
from .common import ReportPaths
from .options import (
    F,
    LibraryOption,
    apply_options,
    builds,
    input_arguments,
    input_options,
    judge_arguments,
    one_inputs_file,
    provider_options,
    report_options,
    seed_option,
)

_BATCH_HELP = (
    "Comma list of batch sizes to sweep, e.g. 1,8,32: sets dimension 0 of every input whose "
    "dimension 0 is symbolic or unknown in the model (inputs with a fixed dimension 0 keep it)."
)


def _confidence() -> str:
    from ..bench.stats import DEFAULT_CONFIDENCE

    return f"{DEFAULT_CONFIDENCE:.0%}"


def _fail_help() -> str:
    return (
        f"Exit 5 when, for any setting, the verdict is slower: the whole {_confidence()} "
        "interval lies beyond the margin (speedup below 1/(1 + margin)). Alone it uses "
        "--margin; with a value (--fail-if-slower=PCT) that percent instead."
    )


def _margin_help() -> str:
    return (
        "Margin of practical equivalence, percent: faster/slower only when the whole "
        f"{_confidence()} interval lies beyond +-PCT, equivalent when it lies within, otherwise "
        "inconclusive. The default is what the same graph against itself stayed within in our "
        "A/A runs (see --calibrate)."
    )


def _budget_help() -> str:
    from ..bench.budget import DEFAULT_BUDGET_S, MAX_DEFAULT_BUDGET_S, MIN_PLANNED_PAIRS

    return (
        "Wall-clock seconds for the whole bench: loading, session creation, warm-up and "
        "timing of every provider, level and batch. Each setting gets an equal share of "
        "what is left; its first pair prices a pair, and the share buys as many pairs (up "
        "to --pairs) as fit, each timed longer when sessions are expensive. A setting stops "
        "early once its verdict is decided, and is inconclusive when its share runs out "
        "first. Never overrun by more than one pair, except that every setting takes 2 "
        f"pairs (the report says so). Default: {DEFAULT_BUDGET_S:g} s, grown when "
        f"{MIN_PLANNED_PAIRS} pairs of every setting need more, at most "
        f"{MAX_DEFAULT_BUDGET_S:g} s."
    )


def _min_time_help() -> str:
    from ..bench.budget import MIN_ROUNDS

    return (
        "Timed seconds per setting, spread over --pairs (each pair times --min-time / "
        f"--pairs, at least {MIN_ROUNDS} rounds); the budget still decides how many pairs "
        "run. Default: each pair's time is planned from --budget."
    )


def _warmup_help() -> str:
    from ..bench.budget import WARMUP_FRACTION

    return (
        "Untimed runs of each new session after its first run, before timing (and at least "
        f"{WARMUP_FRACTION:.0%} of its timed time)."
    )


def _default_pairs() -> int:
    from ..bench.design import DEFAULT_PAIRS

    return DEFAULT_PAIRS


def _default_warmup() -> int:
    from ..bench.design import DEFAULT_WARMUP

    return DEFAULT_WARMUP


def _default_spinning() -> bool:
    from ..bench.design import DEFAULT_SPINNING

    return DEFAULT_SPINNING


def _default_margin() -> float:
    from ..bench.design import DEFAULT_MARGIN_PCT

    return DEFAULT_MARGIN_PCT


def bench_timing(
    pairs: int, iters: int | None, min_time: float | None, warmup: int, budget: float | None
) -> dict[str, Any]:
    """``--pairs``, ``--iters``, ``--min-time``, ``--warmup``, ``--budget`` as
    ``bnfold.bench`` keywords, checked now (a bad value is a usage error before any model
    is read)."""
    from ..bench.design import PairPlan

    keywords: dict[str, Any] = {
        "pairs": pairs,
        "iters": iters,
        "min_time": min_time,
        "warmup": warmup,
        "budget": budget,
    }
    PairPlan.of(**keywords)
    return keywords


def bench_verdict(
    margin: float,
    calibrate: bool,
    include_copies: bool,
    fail_if_slower: str | None,
    batches: str | None,
) -> dict[str, Any]:
    """The verdict's options, ``--include-copies`` and ``--batch`` as ``bnfold.bench``
    keywords, checked now."""
    from ..bench import parse_fail_if_slower
    from ..bench.design import BenchDesign, PairPlan, parse_batches

    keywords: dict[str, Any] = {
        "margin": margin,
        "calibrate": calibrate,
        "include_copies": include_copies,
        "fail_if_slower": parse_fail_if_slower(fail_if_slower),
        "batches": parse_batches(batches),
    }
    BenchDesign.of(plan=PairPlan(), **keywords)
    return keywords


def bench_threads(
    threads: int | None, inter_threads: int | None, spinning: bool | None, cpus: str | None
) -> dict[str, Any]:
    """The thread options as ``bnfold.bench`` keywords (``--cpus`` parsed now)."""
    parse_cpus(cpus)
    return {"threads": threads, "inter_threads": inter_threads, "spinning": spinning, "cpus": cpus}


def bench_arguments(
    bench_timing: dict[str, Any],
    bench_verdict: dict[str, Any],
    bench_threads: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Every option of ``bench_options`` as one mapping of ``bnfold.bench`` keywords."""
    return {**bench_timing, **bench_verdict, **bench_threads, "seed": seed}


def bench_options(command: F) -> F:
    """Every option ``bnfold bench`` has beyond the two models, the input and provider
    options, the report files and ``-q``: the batch sweep, the seed, the pair plan, the
    verdict and the threads. The command receives them as one keyword, ``bench_arguments``:
    a ``dict`` of ``bnfold.bench`` keyword arguments, validated before the command runs
    (``bnfold optimize --bench`` applies the same decorator and passes them on)."""
    return apply_options(
        command,
        [
            click.option("--batch", "batches", metavar="LIST", help=_BATCH_HELP),
            seed_option("Seed of the random inputs."),
            click.option(
                "--pairs",
                cls=LibraryOption,
                type=click.IntRange(min=2),
                default=_default_pairs,
                show_default=True,
                help="Most fresh session pairs per setting (the interval is computed over "
                "pairs): fewer when --budget buys fewer or the verdict is decided early.",
            ),
            click.option(
                "--iters",
                type=click.IntRange(min=1),
                help="Timed rounds per pair (one run of each model per round); the budget still "
                "decides how many pairs run. Default: each pair's time is planned from "
                "--budget.",
            ),
            click.option(
                "--min-time",
                cls=LibraryOption,
                type=click.FloatRange(min=0, min_open=True),
                metavar="SECONDS",
                library_help=_min_time_help,
            ),
            click.option(
                "--budget",
                cls=LibraryOption,
                type=click.FloatRange(min=0, min_open=True),
                metavar="SECONDS",
                library_help=_budget_help,
            ),
            click.option(
                "--warmup",
                cls=LibraryOption,
                type=click.IntRange(min=0),
                default=_default_warmup,
                show_default=True,
                library_help=_warmup_help,
            ),
            click.option(
                "--margin",
                cls=LibraryOption,
                type=click.FloatRange(min=0, max=100, max_open=True),
                default=_default_margin,
                show_default=True,
                metavar="PCT",
                library_help=_margin_help,
            ),
            click.option(
                "--calibrate",
                is_flag=True,
                help="Also time a second session of the original in every pair: the A/A noise "
                "floor of this machine, shown beside each verdict (the three sessions share the "
                "time budget).",
            ),
            click.option(
                "--threads",
                type=click.IntRange(min=0),
                help="onnxruntime intra-op threads (default: onnxruntime's choice, one per "
                "physical core).",
            ),
            click.option(
                "--inter-threads",
                type=click.IntRange(min=0),
                help="onnxruntime inter-op threads (default: onnxruntime's choice).",
            ),
            click.option(
                "--spinning/--no-spinning",
                cls=LibraryOption,
                default=_default_spinning,
                help="Let onnxruntime's worker threads spin-wait for work. Default: off, "
                "unlike onnxruntime: the two sessions run in turn, and the idle one's "
                "spinning threads would take the cores the timed one needs.",
            ),
            click.option(
                "--cpus",
                metavar="LIST",
                help="Pin the measurement to these CPUs, e.g. 0 or 0,2-3 (Linux).",
            ),
            click.option(
                "--include-copies",
                is_flag=True,
                help="On GPU providers, time host<->device copies too (default: inputs and "
                "outputs stay on the device through IOBinding).",
            ),
            click.option(
                "--fail-if-slower",
                "fail_if_slower",
                cls=LibraryOption,
                is_flag=False,
                flag_value="margin",
                metavar="[PCT]",
                library_help=_fail_help,
            ),
            builds("bench_timing", bench_timing),
            builds("bench_verdict", bench_verdict),
            builds("bench_threads", bench_threads),
            builds("bench_arguments", bench_arguments),
        ],
    )


def bench_input_arguments(
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int | None,
    input_files: tuple[str, ...],
) -> dict[str, Any]:
    """The input options as ``bnfold.bench`` keywords: one ``--inputs`` file at most."""
    return {
        **input_arguments(shapes, dims, ranges, default_dim),
        "inputs": one_inputs_file(input_files, "bench"),
    }


EXAMPLES = "\b\nExamples:\n  bnfold bench model.onnx model.folded.onnx\n  bnfold bench model.onnx model.folded.onnx --providers cpu --fail-if-slower"
"""Shown at the end of ``bnfold bench --help`` (``\\b``: click keeps the lines as written)."""


@click.command(name="bench", epilog=EXAMPLES)
@click.argument("original")
@click.argument("candidate")
@input_options
@provider_options(judge="bench")
@bench_options
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
@builds("inputs", bench_input_arguments)
@builds("judge", judge_arguments)
def command(
    original: str,
    candidate: str,
    inputs: dict[str, Any],
    judge: dict[str, Any],
    bench_arguments: dict[str, Any],
    reports: ReportPaths,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Compare the latency of CANDIDATE with ORIGINAL under onnxruntime.

    Within --budget seconds, for each provider, level and batch size, fresh session pairs
    are created in this process and timed in interleaved rounds on the same inputs, after
    warm-up. speedup = latency(original) / latency(candidate), each pair's ratio of medians
    averaged over the pairs (20% trimmed, geometric); each model's latency is the same
    statistic. After every 2 pairs the interval is looked at with alpha-spending
    boundaries (95% over all looks): faster/slower when it lies wholly beyond +-margin,
    equivalent when within; the setting stops there, or at its share of the budget as
    inconclusive. Every verdict is printed with what its interval establishes, and every
    report shows the noise floor; --calibrate measures it as original against itself.
    When GITHUB_STEP_SUMMARY is set, the Markdown report is appended to it.
    """
    outputs = Outputs()
    outputs.read_model(original, "original model")
    outputs.read_model(candidate, "candidate model")
    files = reports.files(outputs)
    if plot_path:
        outputs.plan(plot_path, "--plot file")
    from ..bench import RichProgress, bench
    from ..bench.plot import require_matplotlib
    from .common import stdout_console

    if plot_path:
        require_matplotlib()  # before minutes of measuring, not after
    keywords = {**inputs, **judge, **bench_arguments}
    if quiet or not sys.stderr.isatty():
        report = bench(original, candidate, **keywords)
    else:
        with RichProgress() as progress:
            report = bench(original, candidate, **keywords, progress=progress)

    files.write(report.to_json(), report.to_markdown())  # files before printing: `| head`
    if plot_path:
        from ..bench.plot import write_plot

        write_plot(report, plot_path, outputs)
    console = stdout_console()
    if quiet:
        console.print(report.summary_line(), markup=False, highlight=False, soft_wrap=True)
    else:
        report.render(console)
    report.raise_for_status()

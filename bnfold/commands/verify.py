"""`bnfold verify ORIGINAL CANDIDATE`: parse options, call ``bnfold.verify.verify``, render.

Exit codes: 0 equivalent; 1 outputs differ (or the candidate crashed); 2 usage; 3 a model
cannot be loaded or the candidate fails the structure checks; 4 a provider named in
``--providers`` is unavailable; 6 a report file cannot be written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..storage.outputs import Outputs
from .common import ReportFiles
from .options import input_arguments, input_options, provider_options, report_options


@click.command(name="verify")
@click.argument("original")
@click.argument("candidate")
@input_options
@provider_options(level_default="all")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of input set 0 (set i uses SEED+i).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of random input sets.",
)
@click.option(
    "--atol",
    type=float,
    help="Absolute tolerance for float outputs. Default per dtype: fp32 1e-4, fp64 1e-10, fp16 5e-2, bf16 0.4.",
)
@click.option(
    "--rtol",
    type=float,
    help="Relative tolerance for float outputs. Default per dtype: fp32 1e-4, fp64 1e-9, fp16 1e-2, bf16 8e-2.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help="onnxruntime intra-op threads (default: onnxruntime's).",
)
@report_options
@click.option(
    "--save-failing",
    metavar="DIR",
    help="Folder for the failing input set (.npz). Default: beside the candidate.",
)
@click.option(
    "--sites",
    type=click.Choice(["folds", "all", "none"]),
    default="folds",
    show_default=True,
    help="Tensors compared besides the graph outputs: each folded BN's output (folds), every "
    "tensor both models produce under one name (all), or none.",
)
@click.option("--verbose", is_flag=True, help="Show onnxruntime's own log lines.")
@click.option(
    "--provider-option",
    "provider_option_args",
    multiple=True,
    metavar="PROVIDER:KEY=VALUE",
    help="An execution provider option (repeatable), e.g. cuda:use_tf32=0 (cuDNN without TF32).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the verdict line, not the table.")
def command(
    original: str,
    candidate: str,
    providers: str | None,
    levels: str,
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int | None,
    seed: int,
    runs: int,
    input_files: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    threads: int | None,
    report_path: Path | None,
    markdown_path: Path | None,
    save_failing: str | None,
    sites: str,
    verbose: bool,
    provider_option_args: tuple[str, ...],
    quiet: bool,
) -> None:
    """Prove CANDIDATE computes what ORIGINAL computes, under onnxruntime.

    The original runs on CPU with all graph optimizations disabled (the reference); the
    candidate runs on each provider and level. Outputs are matched by name and compared as
    |candidate - reference| <= atol + rtol*|reference|; NaN/Inf must match in place.
    On failure the failing inputs are saved as .npz and the command to rerun them is printed.
    When GITHUB_STEP_SUMMARY is set, the Markdown report is appended to it.
    """
    outputs = Outputs()
    outputs.read_model(original, "original model")
    outputs.read_model(candidate, "candidate model")
    reports = ReportFiles(outputs, report_path, markdown_path)
    from rich.console import Console

    from ..runtime.providers import parse_provider_options
    from ..verify import verify

    report = verify(
        original,
        candidate,
        providers=providers,
        levels=levels,
        **input_arguments(shapes, dims, ranges, default_dim),
        seed=seed,
        runs=runs,
        inputs=list(input_files) or None,
        atol=atol,
        rtol=rtol,
        threads=threads,
        save_failing=save_failing,
        sites=sites,
        verbose=verbose,
        provider_options=parse_provider_options(provider_option_args),
    )
    # Logs (CI) are not terminals: rich would wrap at 80 columns, too narrow for the table.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if quiet:
        console.print(report.summary_line(), markup=False)
    else:
        report.render(console, verdict=report.passed)

    reports.write(report.to_json() + "\n", report.to_markdown())
    report.raise_for_status()

"""`bnfold verify ORIGINAL CANDIDATE`: parse options, call ``bnfold.verify.verify``, render.

Exit codes: 0 equivalent; 1 outputs differ (or the candidate crashed); 2 usage; 3 a model
cannot be loaded or the candidate fails the structure checks; 4 a provider named in
``--providers`` is unavailable; 6 a report file cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ..storage.load import default_output_path
from ..storage.outputs import Outputs
from .common import ReportPaths
from .options import (
    F,
    LibraryChoice,
    LibraryOption,
    apply_options,
    builds,
    input_arguments,
    input_options,
    judge_arguments,
    provider_options,
    report_options,
    runs_option,
    seed_option,
)


def _tolerance_help(which: str, what: str) -> str:
    from ..verify.settings import default_tolerance_text

    return (
        f"{what} tolerance for float outputs. Default per dtype: {default_tolerance_text(which)}."
    )


def _site_modes() -> tuple[str, ...]:
    from ..verify.sites import SITE_MODES

    return SITE_MODES


def _default_site_mode() -> str:
    from ..verify.sites import DEFAULT_SITE_MODE

    return DEFAULT_SITE_MODE


def verify_checks(
    atol: float | None, rtol: float | None, sites: str, save_failing: str | None
) -> dict[str, Any]:
    """``--atol``, ``--rtol``, ``--sites`` and ``--save-failing`` as ``bnfold.verify``
    keywords, checked now (a bad value is a usage error before any model is read)."""
    from ..verify.settings import Tolerance
    from ..verify.sites import SiteChoice

    Tolerance.of(atol, rtol)
    SiteChoice.of(sites)
    return {"atol": atol, "rtol": rtol, "sites": sites, "save_failing": save_failing}


def verify_runs(
    seed: int,
    runs: int,
    threads: int | None,
    provider_option_args: tuple[str, ...],
    verbose: bool,
) -> dict[str, Any]:
    """``--seed``, ``--runs``, ``--threads``, ``--provider-option`` and ``--verbose`` as
    ``bnfold.verify`` keywords (the provider options parsed now)."""
    from ..runtime.providers import parse_provider_options

    return {
        "seed": seed,
        "runs": runs,
        "threads": threads,
        "provider_options": parse_provider_options(provider_option_args),
        "verbose": verbose,
    }


def verify_arguments(verify_checks: dict[str, Any], verify_runs: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``verify_options`` as one mapping of ``bnfold.verify`` keywords."""
    return {**verify_checks, **verify_runs}


def verify_options(command: F) -> F:
    """Every option ``bnfold verify`` has beyond the two models, the input and provider
    options, the report files and ``-q``: the input sets, the tolerances, the sites compared,
    the failing inputs' folder, the threads and onnxruntime's own options. The command
    receives them as one keyword, ``verify_arguments``: a ``dict`` of ``bnfold.verify``
    keyword arguments, validated before the command runs (``bnfold optimize --verify``
    applies the same decorator and passes them on)."""
    return apply_options(
        command,
        [
            seed_option("Seed of input set 0 (set i uses SEED+i)."),
            runs_option,
            click.option(
                "--atol",
                cls=LibraryOption,
                type=float,
                library_help=lambda: _tolerance_help("atol", "Absolute"),
            ),
            click.option(
                "--rtol",
                cls=LibraryOption,
                type=float,
                library_help=lambda: _tolerance_help("rtol", "Relative"),
            ),
            click.option(
                "--threads",
                type=click.IntRange(min=0),
                help="onnxruntime intra-op threads (default: onnxruntime's).",
            ),
            click.option(
                "--save-failing",
                metavar="DIR",
                help="Folder for the failing input set (.npz). Default: beside the candidate.",
            ),
            click.option(
                "--sites",
                cls=LibraryOption,
                type=LibraryChoice(_site_modes),
                default=_default_site_mode,
                show_default=True,
                help="Tensors compared besides the graph outputs: each folded BN's output "
                "(folds), every tensor both models produce under one name (all), or none.",
            ),
            click.option("--verbose", is_flag=True, help="Show onnxruntime's own log lines."),
            click.option(
                "--provider-option",
                "provider_option_args",
                multiple=True,
                metavar="PROVIDER:KEY=VALUE",
                help="An execution provider option (repeatable), e.g. cuda:use_tf32=0 (cuDNN "
                "without TF32).",
            ),
            builds("verify_checks", verify_checks),
            builds("verify_runs", verify_runs),
            builds("verify_arguments", verify_arguments),
        ],
    )


def verify_input_arguments(
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int | None,
    input_files: tuple[str, ...],
) -> dict[str, Any]:
    """The input options as ``bnfold.verify`` keywords (each ``--inputs`` file one set)."""
    return {
        **input_arguments(shapes, dims, ranges, default_dim),
        "inputs": list(input_files) or None,
    }


def default_candidate(original: str) -> str:
    """``model.onnx`` -> ``model.folded.onnx``, what ``bnfold optimize model.onnx`` writes."""
    path = default_output_path(Path(original))
    if not path.exists() and Path(original).exists():
        raise UsageError(
            f"no CANDIDATE given and {path} (what `bnfold optimize {original}` writes) does"
            " not exist",
            hint=f"run `bnfold optimize {original}` first, or name the candidate",
        )
    return str(path)


EXAMPLES = "\b\nExamples:\n  bnfold verify model.onnx                    # against model.folded.onnx\n  bnfold verify model.onnx model.folded.onnx --providers cpu,cuda\n  bnfold verify model.onnx other.onnx --level disable,all --report verify.json"
"""Shown at the end of ``bnfold verify --help`` (``\\b``: click keeps the lines as written)."""


@click.command(name="verify", epilog=EXAMPLES)
@click.argument("original")
@click.argument("candidate", required=False)
@input_options
@provider_options(judge="verify")
@verify_options
@report_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the verdict line, not the table.")
@builds("inputs", verify_input_arguments)
@builds("judge", judge_arguments)
def command(
    original: str,
    candidate: str | None,
    inputs: dict[str, Any],
    judge: dict[str, Any],
    verify_arguments: dict[str, Any],
    reports: ReportPaths,
    quiet: bool,
) -> None:
    """Prove CANDIDATE computes what ORIGINAL computes, under onnxruntime.

    CANDIDATE defaults to what `bnfold optimize ORIGINAL` writes: ORIGINAL.folded.onnx.

    The original runs on CPU with all graph optimizations disabled (the reference); the
    candidate runs on each provider and level. Outputs are matched by name and compared as
    |candidate - reference| <= atol + rtol*|reference|; NaN/Inf must match in place.
    On failure the failing inputs are saved as .npz and the command to rerun them is printed.
    When GITHUB_STEP_SUMMARY is set, the Markdown report is appended to it.
    """
    candidate = candidate or default_candidate(original)
    outputs = Outputs()
    outputs.read_model(original, "original model")
    outputs.read_model(candidate, "candidate model")
    files = reports.files(outputs)
    from ..verify import verify
    from .common import stdout_console

    report = verify(original, candidate, **inputs, **judge, **verify_arguments)
    files.write(report.to_json() + "\n", report.to_markdown())  # before printing: `| head`
    console = stdout_console(highlight=False)
    if quiet:
        console.print(report.summary_line(), markup=False, soft_wrap=True)  # one line
    else:
        report.render(console, verdict=report.passed)
    report.raise_for_status()

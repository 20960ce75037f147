"""`bnfold verify ORIGINAL CANDIDATE`: parse options, call ``bnfold.verify.verify``, render.

Exit codes: 0 equivalent; 1 outputs differ (or the candidate crashed); 2 usage; 3 a model
cannot be loaded or the candidate fails the structure checks; 4 a provider named in
``--providers`` is unavailable; 6 a report file cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from ..runtime.settings import InputPlan, RuntimeChoice
from ..storage.load import default_output_path
from ..storage.outputs import Outputs
from .common import ReportPaths
from .options import (
    LibraryChoice,
    LibraryOption,
    builds,
    input_options,
    input_plan,
    provider_options,
    report_options,
    runs_option,
    runtime_choice,
    seed_option,
)

if TYPE_CHECKING:
    from ..verify.settings import VerifySettings


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


def verify_settings(
    input_plan: InputPlan,
    runtime: RuntimeChoice,
    atol: float | None,
    rtol: float | None,
    sites: str,
    save_failing: str | os.PathLike[str] | None,
) -> VerifySettings:
    """The input plan, the runtime choice, ``--atol``/``--rtol``, ``--sites`` and
    ``--save-failing`` as one ``VerifySettings``."""
    from ..verify.settings import Tolerance, VerifySettings
    from ..verify.sites import SiteChoice

    return VerifySettings(
        inputs=input_plan,
        runtime=runtime,
        tolerance=Tolerance.of(atol, rtol),
        sites=SiteChoice.of(sites),
        save_failing=save_failing,
    )


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
@seed_option("Seed of input set 0 (set i uses SEED+i).")
@runs_option
@click.option(
    "--atol",
    cls=LibraryOption,
    type=float,
    library_help=lambda: _tolerance_help("atol", "Absolute"),
)
@click.option(
    "--rtol",
    cls=LibraryOption,
    type=float,
    library_help=lambda: _tolerance_help("rtol", "Relative"),
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
    cls=LibraryOption,
    type=LibraryChoice(_site_modes),
    default=_default_site_mode,
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
@builds("input_plan", input_plan)
@builds("runtime", runtime_choice)
@builds("settings", verify_settings)
def command(
    original: str,
    candidate: str | None,
    settings: VerifySettings,
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
    from ..verify import verify_with
    from .common import stdout_console

    report = verify_with(original, candidate, settings)
    files.write(report.to_json() + "\n", report.to_markdown())  # before printing: `| head`
    console = stdout_console(highlight=False)
    if quiet:
        console.print(report.summary_line(), markup=False, soft_wrap=True)  # one line
    else:
        report.render(console, verdict=report.passed)
    report.raise_for_status()

"""``bnfold check MODEL...``: the CI lint; exit 1 while any model still has BatchNormalization
(or a BN written as a Mul/Add chain) that ``bnfold optimize`` would fold."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import check
from ..engine.checks import CheckReport, check_json
from ..engine.targets import DEFAULT_TARGET
from ..errors import BnfoldError
from ..patterns import PATTERN_NAMES
from ..storage.outputs import Outputs
from .common import ReportPaths, stdout_console
from .options import model_path_argument, report_options, target_option


class FoldableBatchNormRemains(BnfoldError):
    exit_code = 1


EXAMPLES = (
    "\b\nExamples:\n  bnfold check model.folded.onnx\n"
    "  bnfold check models/*.onnx --report check.json\n"
    "  bnfold check --target npu model.folded.onnx"
)
"""Shown at the end of ``bnfold check --help`` (``\\b``: click keeps the lines as written)."""


@click.command(name="check", epilog=EXAMPLES)
@click.argument("models", metavar="MODEL...", nargs=-1, required=True, type=model_path_argument)
@report_options
@click.option(
    "--disable",
    multiple=True,
    type=click.Choice(PATTERN_NAMES),
    help="Ignore this pattern (repeatable).",
)
@target_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but one verdict line per model.")
def command(
    models: tuple[Path, ...],
    reports: ReportPaths,
    disable: tuple[str, ...],
    target: str,
    quiet: bool,
) -> None:
    """Exit 1 while any MODEL has BatchNormalization that `bnfold optimize` would fold.

    Fails on BatchNormalization nodes and on BN-equivalent Mul/Add chains with a per-channel
    scale; other foldable affines (a bias Add) are listed as optional and do not fail, nor
    does BatchNormalization that cannot be folded (listed with its reason). Each model gets
    one line naming it: `ok: MODEL: …` or `FAIL: MODEL: …`.

    With --target quantize or npu it fails on what that profile would still change (the
    splits it folds, the BatchNormalization it lowers) and on any BatchNormalization kept,
    each named with its pattern or reason.
    """
    outputs = Outputs()
    for model in models:
        outputs.read_model(model)
    files = reports.files(outputs)
    checks = [CheckReport(check(model, disable=disable, target=target)) for model in models]
    # Files before printing: a reader that stops early (`| head`) must not cost a file.
    files.write(check_json(checks), "\n".join(c.to_markdown() for c in checks))
    console = stdout_console()
    for one in checks:
        if not quiet:
            one.render(console)
        console.print(one.line(), markup=False, highlight=False, soft_wrap=True)
    failed = [one for one in checks if not one.passed]
    if not failed:
        return
    fix = "bnfold optimize" + ("" if target == DEFAULT_TARGET else f" --target {target}")
    if len(failed) == 1:
        one = failed[0]
        named = f"{one.report.model}: " if len(checks) > 1 else ""
        raise FoldableBatchNormRemains(
            named + _problem(one), hint=f"run `{fix} {one.report.model}`"
        )
    raise FoldableBatchNormRemains(
        f"{len(failed)} of {len(checks)} models have foldable BatchNormalization: "
        + ", ".join(one.report.model for one in failed),
        hint=f"run `{fix} MODEL` on each",
    )


def _problem(failed: CheckReport) -> str:
    """``4 BatchNormalization can be folded``; under a profile that rejects kept BNs also
    ``1 BatchNormalization kept, which --target npu rejects (not-lowerable)``."""
    problems = []
    counts = ", ".join(f"{n} {kind}" for kind, n in failed.remaining.items() if n)
    if counts:
        problems.append(f"{counts} can be folded")
    kept = failed.kept_batchnorms
    if kept:
        reasons = ", ".join(sorted({skip.reason for skip in kept}))
        problems.append(
            f"{len(kept)} BatchNormalization kept, which --target {failed.report.target} "
            f"rejects ({reasons})"
        )
    return "; ".join(problems)

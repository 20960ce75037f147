"""``bnfold check MODEL...``: the CI lint; exit 1 while any model still has BatchNormalization
(or a BN written as a Mul/Add chain) that ``bnfold optimize`` would fold."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import check
from ..engine.report import CheckReport, check_json
from ..errors import BnfoldError
from ..patterns import PATTERN_NAMES
from ..storage.outputs import Outputs
from .common import ReportPaths, stdout_console
from .options import model_path_argument, report_options, target_option


class FoldableBatchNormRemains(BnfoldError):
    exit_code = 1


EXAMPLES = "\b\nExamples:\n  bnfold check model.folded.onnx\n  bnfold check models/*.onnx --report check.json"
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
    if len(failed) == 1:
        one = failed[0]
        named = f"{one.report.model}: " if len(checks) > 1 else ""
        counts = ", ".join(f"{n} {kind}" for kind, n in one.remaining.items() if n)
        raise FoldableBatchNormRemains(
            f"{named}{counts} can be folded", hint=f"run `bnfold optimize {one.report.model}`"
        )
    raise FoldableBatchNormRemains(
        f"{len(failed)} of {len(checks)} models have foldable BatchNormalization: "
        + ", ".join(one.report.model for one in failed),
        hint="run `bnfold optimize MODEL` on each",
    )

"""``bnfold check MODEL``: the CI lint; exit 1 while BatchNormalization (or a BN written as a
Mul/Add chain) that ``bnfold optimize`` would fold remains."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import check
from ..engine.report import BIAS_ADD, count_line
from ..errors import BnfoldError
from ..patterns import PATTERN_NAMES
from ..storage.outputs import Outputs
from .common import ReportPaths, stdout_console
from .options import model_path_argument, report_options


class FoldableBatchNormRemains(BnfoldError):
    exit_code = 1


@click.command(name="check")
@click.argument("model", type=model_path_argument)
@report_options
@click.option(
    "--disable",
    multiple=True,
    type=click.Choice(PATTERN_NAMES),
    help="Ignore this pattern (repeatable).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the verdict line.")
def command(model: Path, reports: ReportPaths, disable: tuple[str, ...], quiet: bool) -> None:
    """Exit 1 while MODEL has BatchNormalization that `bnfold optimize` would fold.

    Fails on BatchNormalization nodes and on BN-equivalent Mul/Add chains with a per-channel
    scale; other foldable affines (a bias Add) are listed as optional and do not fail, nor
    does BatchNormalization that cannot be folded (listed with its reason).
    """
    outputs = Outputs()
    outputs.read_model(model)
    files = reports.files(outputs)
    report = check(model, disable=disable)
    files.write(report.to_json(), report.to_markdown())  # files before printing: `| head`
    report.render(stdout_console(quiet))
    must = report.must_fold
    optional = len(report.optional_folds)
    note = f"; {optional} optional bias Add fold(s) listed" if optional else ""
    if must:
        counts = report.folds_by_kind()
        counts.pop(BIAS_ADD)
        raise FoldableBatchNormRemains(
            f"{count_line(counts)} can be folded{note}", hint=f"run `bnfold optimize {model}`"
        )
    click.echo(
        f"ok: no foldable BatchNormalization ({len(report.skipped)} kept with a reason{note})"
    )

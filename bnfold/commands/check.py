"""``bnfold check MODEL``: the CI lint; exit 1 while a foldable BatchNormalization remains."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import check
from ..errors import BnfoldError
from ..modelio import check_side_file
from ..patterns import PATTERN_NAMES
from .common import append_github_summary, existing_model, stdout_console, write_text


class FoldableBatchNormRemains(BnfoldError):
    exit_code = 1


@click.command(name="check")
@click.argument("model", type=existing_model)
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write the findings as JSON."
)
@click.option(
    "--disable",
    multiple=True,
    type=click.Choice(PATTERN_NAMES),
    help="Ignore this pattern (repeatable).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the verdict line.")
def command(model: Path, report_path: Path | None, disable: tuple[str, ...], quiet: bool) -> None:
    """Exit 1 while MODEL still has BatchNormalization that `bnfold optimize` would fold.

    BatchNormalization that cannot be folded is listed with its reason and does not fail.
    """
    if report_path is not None:
        check_side_file(report_path, what="--report", input_path=model, output=None)
    report = check(model, disable=disable)
    report.render(stdout_console(quiet))
    if report_path is not None:
        write_text(report_path, report.to_json())
    append_github_summary(report.to_markdown())
    if report.folds:
        raise FoldableBatchNormRemains(
            f"{len(report.folds)} BatchNormalization node(s) can be folded",
            hint=f"run `bnfold optimize {model}`",
        )
    click.echo(f"ok: no foldable BatchNormalization ({len(report.skipped)} kept with a reason)")

"""``bnfold optimize MODEL``: fold, optionally verify and bench, then write atomically."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..api import OptimizeResult, optimize
from ..errors import UsageError, VerificationFailed
from ..modelio import (
    check_inputs_survive,
    check_output_path,
    check_side_file,
    default_output_path,
    external_data_path,
)
from ..patterns import PATTERN_NAMES
from ..report import FoldReport
from .common import (
    append_github_summary,
    existing_model,
    progress_status,
    stdout_console,
    write_text,
)


@click.command(name="optimize")
@click.argument("model", type=existing_model)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output path [default: MODEL.folded.onnx].",
)
@click.option("--in-place", is_flag=True, help="Replace the input file (atomically).")
@click.option("--dry-run", is_flag=True, help="Report what would be folded; write nothing.")
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write the report as JSON."
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(path_type=Path),
    help="Write the report as Markdown.",
)
@click.option(
    "--disable",
    multiple=True,
    type=click.Choice(PATTERN_NAMES),
    help="Do not apply this pattern (repeatable).",
)
@click.option(
    "--lower-standalone",
    is_flag=True,
    help="Rewrite a BatchNormalization that nothing folds into as one Mul and one Add.",
)
@click.option(
    "--verify",
    "run_verify",
    is_flag=True,
    help="Verify with onnxruntime before writing; write nothing on failure.",
)
@click.option(
    "--force", is_flag=True, help="With --verify: write the output even when verification fails."
)
@click.option(
    "--bench", "run_bench", is_flag=True, help="Benchmark original against folded after writing."
)
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Store large tensors beside the output [default: as the input does].",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def command(
    model: Path,
    output: Path | None,
    in_place: bool,
    dry_run: bool,
    report_path: Path | None,
    markdown_path: Path | None,
    disable: tuple[str, ...],
    lower_standalone: bool,
    run_verify: bool,
    force: bool,
    run_bench: bool,
    external_data: bool | None,
    quiet: bool,
) -> None:
    """Fold every BatchNormalization in MODEL that can be folded exactly.

    Writes MODEL.folded.onnx (or -o PATH) and reports each fold and each refusal with its
    reason code.
    """
    if in_place and output is not None:
        raise UsageError("--in-place and -o cannot be used together", hint="drop one of them")
    target = model if in_place else (output or default_output_path(model))
    # Every path is checked before the (possibly long) fold, and again against the files the
    # input was read from once they are known: a failure never leaves half the outputs.
    if not dry_run:
        check_output_path(target, model, in_place=in_place)
    side_files = [
        (p, w) for p, w in ((report_path, "--report"), (markdown_path, "--markdown")) if p
    ]
    for path, what in side_files:
        check_side_file(path, what=what, input_path=model, output=None if dry_run else target)
    console = stdout_console(quiet)
    show_progress = not quiet and sys.stderr.isatty()
    with progress_status(show_progress) as status:
        status(f"folding {model.name}")
        folded = 0

        def count_fold(count: int) -> None:
            nonlocal folded
            folded += count
            status(f"folding {model.name}: {folded} folded")

        result = optimize(
            model, disable=disable, lower_standalone=lower_standalone, progress=count_fold
        )
    _check_nothing_of_the_input_is_overwritten(result, target, side_files, in_place, dry_run)
    report = result.report
    if not dry_run:
        report.output = str(target)
    report.render(console)

    verification: list[bool] = []

    def verify_staged(staged: Path) -> None:
        """Verify the written file itself, before it is renamed into place."""
        from ..verify import verify

        verify_report = verify(model, staged)
        verify_report.render(console)
        verification.append(verify_report.passed)
        if not verify_report.passed and not force:
            raise VerificationFailed(
                "the folded model does not match the original; nothing was written",
                hint="rerun `bnfold verify` for details, or pass --force to write it anyway",
            )

    if dry_run:
        if run_verify:
            from ..verify import verify

            verify_report = verify(model, result.model)
            verify_report.render(console)
            verification.append(verify_report.passed)
        console.print("dry run: nothing written")
    else:
        with progress_status(show_progress) as status:
            status(f"writing {target}")
            try:
                result.save(
                    target,
                    external_data=external_data,
                    overwrite_input=in_place,
                    before_commit=verify_staged if run_verify else None,
                )
            except VerificationFailed:
                _write_reports(report, report_path, markdown_path)
                raise
        console.print(f"wrote {target}")
    _write_reports(report, report_path, markdown_path)

    if run_bench and not dry_run:
        from ..bench import bench

        bench_report = bench(model, target)
        bench_report.render(console)
    if verification and not all(verification):
        raise VerificationFailed(
            "the folded model does not match the original"
            + ("" if dry_run else "; written anyway because of --force")
        )


def _check_nothing_of_the_input_is_overwritten(
    result: OptimizeResult,
    target: Path,
    side_files: list[tuple[Path, str]],
    in_place: bool,
    dry_run: bool,
) -> None:
    writes = [] if dry_run else [(target, "output"), (external_data_path(target), "output data")]
    writes += [(path, f"{what} file") for path, what in side_files]
    check_inputs_survive(result.source, writes, in_place=in_place)


def _write_reports(
    report: FoldReport, report_path: Path | None, markdown_path: Path | None
) -> None:
    if report_path is not None:
        write_text(report_path, report.to_json())
    markdown = report.to_markdown()
    if markdown_path is not None:
        write_text(markdown_path, markdown)
    append_github_summary(markdown)

"""``bnfold optimize MODEL``: parse, call ``bnfold.optimize`` (fold, write, verify, bench), render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..api import optimize
from ..engine.lowering import LOWERING_FORMS
from ..patterns import PATTERN_NAMES
from ..storage.load import default_output_path
from ..storage.outputs import Outputs
from .common import ReportFiles, progress_status, stdout_console
from .options import (
    input_arguments,
    input_options,
    model_path_argument,
    one_inputs_file,
    provider_options,
    report_options,
)


@click.command(name="optimize")
@click.argument("model", type=model_path_argument)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output path [default: MODEL.folded.onnx].",
)
@click.option(
    "--in-place",
    is_flag=True,
    help="Replace the input file (atomically; its external data file may get a new name).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be folded; write nothing.")
@report_options
@click.option(
    "--disable",
    multiple=True,
    type=click.Choice(PATTERN_NAMES),
    help="Do not apply this pattern (repeatable).",
)
@click.option(
    "--lower-standalone",
    is_flag=True,
    help="Rewrite a BatchNormalization that nothing folds into (as --lower-as says).",
)
@click.option(
    "--lower-as",
    type=click.Choice(LOWERING_FORMS),
    default=None,
    help="Form of --lower-standalone (implies it): one Mul and one Add (mul-add, the "
    "default) or a 1x1 depthwise Conv (dwconv).",
)
@click.option(
    "--verify",
    "run_verify",
    is_flag=True,
    help="Verify the written file with onnxruntime before it lands; write nothing on failure.",
)
@click.option(
    "--force", is_flag=True, help="With --verify: write the output even when verification fails."
)
@click.option(
    "--bench", "run_bench", is_flag=True, help="Benchmark original against folded after writing."
)
@provider_options(level_default=None)
@input_options
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
    lower_as: str | None,
    run_verify: bool,
    force: bool,
    run_bench: bool,
    providers: str | None,
    levels: str | None,
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int,
    input_files: tuple[str, ...],
    external_data: bool | None,
    quiet: bool,
) -> None:
    """Fold every BatchNormalization in MODEL that can be folded exactly.

    Writes MODEL.folded.onnx (or -o PATH) and reports each fold and each refusal with its
    reason code. --verify and --bench take the input options of `bnfold verify`/`bench`.
    """
    outputs = Outputs()
    outputs.read_model(model)
    reports = ReportFiles(outputs, report_path, markdown_path)
    judge: dict[str, Any] = {
        **input_arguments(shapes, dims, ranges, default_dim),
        **({"providers": providers} if providers else {}),
        **({"levels": levels} if levels else {}),
    }
    verify_options = {**judge, "inputs": list(input_files) or None} if run_verify else None
    bench_options = None
    if run_bench:
        bench_options = {**judge, "inputs": one_inputs_file(input_files, "--bench")}
    target = None  # --dry-run writes nothing; --in-place writes MODEL (and refuses -o)
    if not dry_run:
        target = output if in_place else (output or default_output_path(model))
    console = stdout_console(quiet)
    show_progress = not quiet and sys.stderr.isatty()
    with progress_status(show_progress) as status:
        status(f"folding {model.name}")
        folded = 0

        def count_fold(count: int) -> None:
            nonlocal folded
            folded += count
            status(f"folding {model.name}: {folded} folded")

        def render(step: str, value: Any) -> None:
            if step == "written":
                console.print(f"wrote {value[-1]}")
            else:
                value.render(console)  # the fold, verify or bench report

        result = optimize(
            model,
            disable=disable,
            lower_standalone=lower_as or lower_standalone,
            output=target,
            in_place=in_place and not dry_run,
            external_data=external_data,
            verify=verify_options,
            bench=bench_options,
            force=force,
            outputs=outputs,
            progress=count_fold,
            on_step=render,
        )
    if dry_run:
        for fold in result.report.folds:  # each fold's plan, as it would be written
            console.print(f"{fold.bn} -> {fold.into}:")
            for edit in fold.edits:
                console.print(f"  {edit}", markup=False)
        console.print("dry run: nothing written")
    reports.write(result.report.to_json(), result.report.to_markdown())
    result.raise_for_status()

"""``bnfold optimize MODEL``: parse, call ``bnfold.optimize`` (fold, write, verify, bench), render."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..api import OptimizeResult, optimize
from ..engine.lowering import LOWERING_FORMS
from ..patterns import PATTERN_NAMES
from ..storage.load import default_output_path
from ..storage.outputs import Outputs, model_files
from ..storage.results import to_json
from .common import ReportPaths, progress_status, stdout_console
from .options import (
    builds,
    input_arguments,
    input_options,
    model_path_argument,
    one_inputs_file,
    provider_options,
    report_options,
    target_option,
)
from .steps import judge_step_options


@dataclass(frozen=True)
class Writing:
    """Where the folded model goes: ``-o``, ``--in-place``, ``--dry-run``, ``--external-data``."""

    output: Path | None
    in_place: bool
    dry_run: bool
    external_data: bool | None

    def target(self, model: Path) -> Path | None:
        """The file written (None for ``--dry-run``; ``--in-place`` writes MODEL, refusing -o)."""
        if self.dry_run:
            return None
        return self.output if self.in_place else (self.output or default_output_path(model))


@dataclass(frozen=True)
class Folding:
    """What to fold: patterns left out, and how a BatchNormalization nothing folds into is
    lowered (False: kept)."""

    disable: tuple[str, ...]
    lower_standalone: bool | str
    target: str


@dataclass(frozen=True)
class Steps:
    """``--verify`` and ``--bench`` as ``bnfold.optimize`` takes them (keyword mappings, None:
    not run) and ``--force``."""

    verify: Mapping[str, Any] | None
    bench: Mapping[str, Any] | None
    force: bool


def folding(
    disable: tuple[str, ...], lower_standalone: bool, lower_as: str | None, target: str
) -> Folding:
    return Folding(disable, lower_as or lower_standalone, target)


def judge_options(
    providers: str | None,
    levels: str | None,
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int | None,
) -> dict[str, Any]:
    """What ``--verify`` and ``--bench`` both pass on: the input and provider options given
    (an absent ``--providers``/``--level`` leaves each judge its own default)."""
    return {
        **input_arguments(shapes, dims, ranges, default_dim),
        **({"providers": providers} if providers else {}),
        **({"levels": levels} if levels else {}),
    }


def steps(
    judge: dict[str, Any],
    input_files: tuple[str, ...],
    verify_arguments: dict[str, Any] | None,
    bench_arguments: dict[str, Any] | None,
    force: bool,
) -> Steps:
    """The judges' keyword mappings: the shared input and provider options, each judge's own
    (``None``: its flag is not given) and the ``--inputs`` files it takes."""
    verify = None
    if verify_arguments is not None:
        verify = {**judge, "inputs": list(input_files) or None, **verify_arguments}
    bench = None
    if bench_arguments is not None:
        bench = {**judge, "inputs": one_inputs_file(input_files, "--bench"), **bench_arguments}
    return Steps(verify, bench, force)


EXAMPLES = "\b\nExamples:\n  bnfold optimize model.onnx                  # writes model.folded.onnx\n  bnfold optimize model.onnx -o out/model.onnx --verify\n  bnfold optimize model.onnx --dry-run --report folds.json"
"""Shown at the end of ``bnfold optimize --help`` (``\\b``: click keeps the lines as written)."""


@click.command(name="optimize", epilog=EXAMPLES)
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
@target_option
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
@provider_options(judge=None)
@input_options
@judge_step_options
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Store large tensors beside the output [default: as the input does].",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@builds("writing", Writing)
@builds("folding", folding)
@builds("judge", judge_options)
@builds("steps", steps)
def command(
    model: Path,
    writing: Writing,
    folding: Folding,
    steps: Steps,
    reports: ReportPaths,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Fold every BatchNormalization in MODEL that can be folded exactly.

    Writes MODEL.folded.onnx (or -o PATH) and reports each fold and each refusal with its
    reason code. --verify and --bench take every option of `bnfold verify` and `bnfold
    bench`; their results go into --report, --markdown and $GITHUB_STEP_SUMMARY too.
    """
    outputs = Outputs()
    outputs.read_model(model)
    files = reports.files(outputs)
    if plot_path:
        from ..bench.plot import require_matplotlib

        outputs.plan(plot_path, "--plot file")
        require_matplotlib()  # before the fold and minutes of measuring, not after
    target = writing.target(model)
    console = stdout_console(quiet)
    show_progress = not quiet and sys.stderr.isatty()
    # Into a pipe, every report is printed after the files are written (a reader that stops
    # early, `| head`, must not cost a file); a terminal sees each step as it ends.
    pending: list[Callable[[], None]] = []
    live = sys.stdout.isatty()
    size_before = _files_size(model_files(model))  # before --in-place replaces them

    def render(step: str, value: Any) -> None:
        if step == "written":
            after = _megabytes(_files_size(value))
            line = f"wrote {value[-1]} (size {_megabytes(size_before)} -> {after})"
            show = functools.partial(console.print, line, markup=False, highlight=False)
        elif step == "unchanged":
            line = f"nothing to fold: {value} left as it was (not rewritten)"
            show = functools.partial(console.print, line, markup=False, highlight=False)
        else:
            show = functools.partial(value.render, console)  # the fold, verify or bench report
        if live:
            show()
        else:
            pending.append(show)

    try:
        result = _fold(model, writing, folding, steps, outputs, target, show_progress, render)
        if writing.dry_run:
            pending.append(functools.partial(_print_plans, result.report.folds, console))
        files.write(*optimize_report(result))
        if plot_path and result.benchmark is not None:
            from ..bench.plot import write_plot

            write_plot(result.benchmark, plot_path, outputs)
    finally:
        for show in pending:
            show()
    result.raise_for_status()
    if result.benchmark is not None:
        result.benchmark.raise_for_status()  # --fail-if-slower: exit 5


def optimize_report(result: OptimizeResult) -> tuple[str, str]:
    """The JSON and Markdown of ``--report``/``--markdown``: the fold report, with what
    ``--verify`` and ``--bench`` found under ``"verify"`` and ``"bench"`` (absent when not
    run), their Markdown sections after the fold's."""
    data = result.report.to_dict()
    sections = [result.report.to_markdown()]
    for key, judged in (("verify", result.verification), ("bench", result.benchmark)):
        if judged is not None:
            data[key] = judged.to_dict()
            sections.append(judged.to_markdown())
    return to_json(data) + "\n", "\n".join(section.rstrip("\n") + "\n" for section in sections)


def _fold(
    model: Path,
    writing: Writing,
    folding: Folding,
    steps: Steps,
    outputs: Outputs,
    target: Path | None,
    show_progress: bool,
    on_step: Callable[[str, Any], None],
) -> OptimizeResult:
    """``bnfold.optimize`` with the spinner on stderr counting folds."""
    with progress_status(show_progress) as status:
        status(f"folding {model.name}")
        folded = 0

        def count_fold(count: int) -> None:
            nonlocal folded
            folded += count
            status(f"folding {model.name}: {folded} folded")

        return optimize(
            model,
            disable=folding.disable,
            lower_standalone=folding.lower_standalone,
            target=folding.target,
            output=target,
            in_place=writing.in_place and not writing.dry_run,
            external_data=writing.external_data,
            verify=steps.verify,
            bench=steps.bench,
            force=steps.force,
            outputs=outputs,
            progress=count_fold,
            on_step=on_step,
        )


def _print_plans(folds: Sequence[Any], console: Console) -> None:
    """``--dry-run``: each fold's plan, as it would be written."""
    for fold in folds:
        console.print(f"{fold.bn} -> {fold.into}:")
        for edit in fold.edits:
            console.print(f"  {edit}", markup=False)
    console.print("dry run: nothing written")


def _files_size(paths: Sequence[Path]) -> int:
    return sum(path.stat().st_size for path in map(Path, paths) if path.is_file())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"

"""80 columns first (issue 27): the terminal output of optimize, check, verify and bench.

Each command runs through click's ``CliRunner`` (stdout is not a terminal, as in a pipe or a
CI log) with ``COLUMNS`` set: no line is wider than that, every number of the JSON report
that the table shows appears whole, a verdict stays on its setting's line, and node names are
never cut mid-segment (they wrap whole at ``/``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnfold.cli import main

MODELS = Path(__file__).resolve().parents[2] / "models"
WIDTHS = (80, 120)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Short relative paths, so a line's width is the layout's, not the temp folder's."""
    for name in ("resnet_tiny.onnx", "mlp_bn.onnx"):
        shutil.copy(MODELS / name, tmp_path / name)
    return tmp_path


def _run(workdir: Path, width: int, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(width)})
    finally:
        os.chdir(cwd)
    return result.exit_code, result.stdout


def _fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"
    assert "…" not in text, text  # nothing cut


def _names_whole(text: str, names: list[str]) -> None:
    """Every ``/``-segment of every name appears whole (a name may wrap after a ``/``)."""
    words = set(text.replace("/", "/ ").split())
    for name in names:
        for segment in name.replace("/", "/ ").split():
            assert segment in words, f"{segment!r} of {name!r} cut:\n{text}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("model", ["resnet_tiny.onnx", "mlp_bn.onnx"])
def test_optimize_and_check_fit(workdir: Path, width: int, model: str) -> None:
    code, text = _run(workdir, width, "check", model, "--report", "c.json")
    assert code == 1, text
    _fits(text, width)
    code, text = _run(workdir, width, "optimize", model, "-o", "o.onnx", "--report", "r.json")
    assert code == 0, text
    _fits(text, width)
    report = json.loads((workdir / "r.json").read_text())
    folds = report["folds"]
    assert folds
    _names_whole(text, [f["bn"] for f in folds])
    # Every fold is a BatchNormalization: the title says so, no column repeats it.
    assert f"Folded: {len(folds)} BatchNormalization" in text
    assert "kind" not in text.split("\n")[1]


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_numbers_whole(workdir: Path, width: int) -> None:
    from bnfold.verify.report import _num, _used

    assert _run(workdir, width, "optimize", "resnet_tiny.onnx", "-o", "o.onnx")[0] == 0
    code, text = _run(workdir, width, "verify", "resnet_tiny.onnx", "o.onnx", "--report", "v.json")
    assert code == 0, text
    _fits(text, width)
    report = json.loads((workdir / "v.json").read_text())
    for provider in report["providers"]:
        config = f"{provider['provider']}/{provider['level']} "
        for name, output in provider["outputs"].items():
            row = next(
                line
                for line in text.splitlines()
                if line.startswith(config) and f" {name} " in line
            )
            for value in (
                _num(output["max_abs_error"]),
                _num(output["max_rel_error"]),
                _used(output["tolerance_used"]),
            ):
                assert f" {value}" in row, (value, row)
            assert f"{output['mismatched']}/{output['total']}" in row
    header = next(line for line in text.splitlines() if line.startswith("provider/level"))
    assert ("p99 abs" in header) == (width >= 100)  # narrower: in the reports (caption)


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_all_sites_fit(workdir: Path, width: int) -> None:
    assert _run(workdir, width, "optimize", "resnet_tiny.onnx", "-o", "o.onnx")[0] == 0
    code, text = _run(workdir, width, "verify", "resnet_tiny.onnx", "o.onnx", "--sites", "all")
    assert code == 0, text
    _fits(text, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_verdict_on_its_line(workdir: Path, width: int) -> None:
    assert _run(workdir, width, "optimize", "mlp_bn.onnx", "-o", "o.onnx")[0] == 0
    args = ["bench", "mlp_bn.onnx", "o.onnx", "--pairs", "2", "--min-time", "0.1"]
    code, text = _run(workdir, width, *args, "--report", "b.json")
    assert code == 0, text
    _fits(text, width)
    report = json.loads((workdir / "b.json").read_text())
    lines = text.splitlines()
    for comparison in report["comparisons"]:
        label = f"{comparison['provider']}/{comparison['level']}/batch {comparison['batch']}"
        row = next(line for line in lines if line.startswith(label + " "))
        assert row.split()[-1] == comparison["verdict"], row
    # The Models table: path, size, nodes, BatchNormalization on one line per model.
    assert any(line.split()[:2] == ["original", "mlp_bn.onnx"] for line in lines), text


def test_sites_all_counts_fold_sites_apart(workdir: Path) -> None:
    """``--sites all`` on a model with no fold says 0 fold sites, not one per tensor."""
    assert _run(workdir, 80, "optimize", "mlp_bn.onnx", "-o", "o.onnx")[0] == 0
    code, text = _run(workdir, 80, "verify", "o.onnx", "o.onnx", "--sites", "all", "-q")
    assert code == 0, text
    assert "0 fold site(s) and " in text and "other tensor(s)" in text, text
    code, text = _run(workdir, 80, "verify", "mlp_bn.onnx", "o.onnx", "-q")
    assert ", 2 fold site(s);" in text, text


def test_a_report_line_clears_the_spinner_first() -> None:
    """'6 foldedwrote out.onnx': a line printed while the spinner runs starts on its own line."""
    from bnfold.commands import common

    events: list[str] = []

    class Spinner:
        def stop(self) -> None:
            events.append("stop")

        def start(self) -> None:
            events.append("start")

    console = common.stdout_console()
    common._SPINNERS.append(Spinner())
    try:
        with console.capture():
            console.print("wrote out.onnx")
    finally:
        common._SPINNERS.pop()
    assert events == ["stop", "start"]

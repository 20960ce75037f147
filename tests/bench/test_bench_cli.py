"""`bnfold bench` through click's CliRunner: files written, exit codes 0, 2, 3, 4, 5."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bnfold.cli import main

QUICK_ARGS = [
    "--pairs",
    "3",
    "--iters",
    "20",
    "--warmup",
    "2",
    "--threads",
    "1",
    "--level",
    "disable",
]


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, ["bench", *(str(a) for a in args)])


@pytest.mark.slow
def test_writes_json_markdown_and_plot(model_files: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report, markdown, plot = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    result = run(
        model_files["fast"], model_files["slow"], "--providers", "cpu", *QUICK_ARGS,
        "--batch", "1,4", "--report", report, "--markdown", markdown, "--plot", plot,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Candidate vs original" in result.stdout
    data = json.loads(report.read_text())
    assert [c["batch"] for c in data["comparisons"]] == [1, 4]
    assert {c["verdict"] for c in data["comparisons"]} == {"slower"}
    assert data["settings"]["providers_explicit"] is True
    assert markdown.read_text().startswith("## bnfold bench")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fail_if_slower_exits_5(model_files: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = run(
        model_files["fast"], model_files["slow"], "--providers", "cpu", *QUICK_ARGS,
        "--fail-if-slower", "50", "--report", report,
    )  # fmt: skip
    assert result.exit_code == 5, result.output
    assert "error: candidate is slower at cpu/disable" in result.output
    assert "entirely beyond -50%" in result.output
    assert json.loads(report.read_text())["exit_code"] == 5  # the report is written before exiting


def test_fail_if_slower_passes_a_faster_candidate(model_files: dict[str, Path]) -> None:
    result = run(
        model_files["slow"],
        model_files["fast"],
        "--providers",
        "cpu",
        *QUICK_ARGS,
        "--fail-if-slower",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert "faster" in result.stdout


def test_requested_provider_unavailable_exits_4(
    model_files: dict[str, Path], fake_cuda: list[Any]
) -> None:
    result = run(model_files["fast"], model_files["fast"], "--providers", "cpu,cuda", *QUICK_ARGS)
    assert result.exit_code == 4, result.output
    assert "unavailable" in result.stdout
    assert "error: requested execution provider 'cuda' is unavailable" in result.output


def test_quiet_prints_the_summary_line_only(model_files: dict[str, Path]) -> None:
    result = run(
        model_files["fast"], model_files["slow"], "--providers", "cpu", *QUICK_ARGS, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("cpu/disable/batch 1: slower (")
    assert len(result.stdout.strip().splitlines()) == 1


def test_github_step_summary_is_appended(
    model_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for _ in range(2):
        result = run(
            model_files["fast"], model_files["fast"], "--providers", "cpu", *QUICK_ARGS, "-q"
        )
        assert result.exit_code == 0, result.output
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    assert text.count("## bnfold bench") == 2


def test_batch_on_a_fixed_batch_model_exits_2(tmp_path: Path) -> None:
    import onnx

    from tests.builders.bench_models import fast_model

    path = tmp_path / "fixed.onnx"
    onnx.save(fast_model(batch=1), path)
    result = run(path, path, "--providers", "cpu", "--batch", "1,8")
    assert result.exit_code == 2
    assert "error: --batch needs an input whose first dimension is symbolic" in result.output


def test_plot_without_matplotlib_exits_2_before_measuring(
    model_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = tmp_path / "r.json"
    result = run(
        model_files["fast"], model_files["fast"], "--plot", tmp_path / "p.png", "--report", report
    )
    assert result.exit_code == 2
    assert "error: --plot needs matplotlib" in result.output
    assert not report.exists()


def test_missing_model_exits_3(tmp_path: Path, model_files: dict[str, Path]) -> None:
    result = run(tmp_path / "missing.onnx", model_files["fast"], "--providers", "cpu")
    assert result.exit_code == 3
    assert "error: original file not found" in result.output


def test_bad_option_values_exit_2(model_files: dict[str, Path]) -> None:
    for args in (
        ["--iters", "0"],
        ["--pairs", "1"],
        ["--margin", "100"],
        ["--cpus", "a"],
        ["--fail-if-slower=many"],
        ["--fail-if-slower", "100"],
        ["--level", "warp"],
        ["--min-time", "0"],
    ):
        result = run(model_files["fast"], model_files["fast"], *args)
        assert result.exit_code == 2, (args, result.output)


def test_help_documents_the_verdict_and_batch_rule() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps help text
    assert "the whole 95% interval lies beyond the margin" in text
    assert "equivalent when it lies within" in text
    for option in ("--pairs", "--margin", "--calibrate", "--spinning / --no-spinning", "--cpus"):
        assert option in text
    assert "dimension 0 is symbolic or unknown" in text


def test_fail_if_slower_without_a_value_uses_the_margin(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    result = run(
        model_files["fast"], model_files["slow"], "--providers", "cpu", *QUICK_ARGS,
        "--report", report, "--margin", "5", "--fail-if-slower",
    )  # fmt: skip
    assert result.exit_code == 5, result.output
    data = json.loads(report.read_text())
    assert data["fail_if_slower_pct"] == 5.0
    assert data["settings"]["margin_pct"] == 5.0


def test_calibrate_threads_and_spinning_are_reported(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    result = run(
        model_files["fast"], model_files["fast"], "--providers", "cpu", *QUICK_ARGS,
        "--calibrate", "--no-spinning", "--inter-threads", "1", "--report", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "noise floor cpu/disable/batch 1: A/A " in result.stdout
    data = json.loads(report.read_text())
    assert data["settings"]["calibrate"] is True
    assert data["settings"]["threads"]["spinning"] is False
    assert data["settings"]["threads"]["inter_op_threads"] == 1
    assert data["comparisons"][0]["calibration"]["verdict"] in (
        "equivalent",
        "inconclusive",
        "faster",
        "slower",
    )

"""The report as JSON, Markdown, terminal tables and a PNG plot."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bnfold.bench import BenchReport, RichProgress, bench
from bnfold.bench.plot import require_matplotlib, write_plot
from bnfold.bench.report import Unavailable
from bnfold.errors import UsageError
from tests.bench.bench_models import fast_model
from tests.bench.conftest import QUICK

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RESULT_KEYS = {
    "model",
    "provider",
    "level",
    "batch",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "session_create_ms",
    "first_run_ms",
    "file_size_bytes",
    "node_count",
    "batchnorm_count",
}
COMPARISON_KEYS = {"provider", "level", "batch", "speedup", "ci_low", "ci_high", "verdict"}


def test_json_schema(slow_report: BenchReport) -> None:
    data = json.loads(slow_report.to_json())
    assert {"results", "comparisons", "machine", "onnxruntime_version", "iters", "settings"} <= set(
        data
    )
    assert data["iters"] == 20
    assert data["machine"]["cpu_count"] >= 1
    assert data["machine"]["platform"]
    assert len(data["results"]) == 8
    for result in data["results"]:
        assert set(result) >= RESULT_KEYS
        assert result["model"] in ("original", "candidate")
        assert all(
            isinstance(result[key], float)
            for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms")
        )
        assert isinstance(result["file_size_bytes"], int)
    for comparison in data["comparisons"]:
        assert set(comparison) >= COMPARISON_KEYS
        assert comparison["verdict"] == "slower"
        assert comparison["ci_low"] <= comparison["ci_high"]
        assert comparison["speedup"] == pytest.approx(
            comparison["original_p50_ms"] / comparison["candidate_p50_ms"]
        )
    assert [(c["level"], c["batch"]) for c in data["comparisons"]] == [
        ("disable", 1),
        ("disable", 2),
        ("all", 1),
        ("all", 2),
    ]


def test_json_is_strict_even_with_a_non_finite_ratio(slow_report: BenchReport) -> None:
    report = copy.deepcopy(slow_report)
    comparison = report.comparisons[0]
    comparison.estimate = dataclasses.replace(comparison.estimate, speedup=float("inf"))
    data = json.loads(
        report.to_json()
    )  # json.loads would accept Infinity; to_json must not write it
    assert "Infinity" not in report.to_json()
    assert data["comparisons"][0]["speedup"] is None


def test_markdown_has_the_comparison_and_details(slow_report: BenchReport) -> None:
    report = copy.deepcopy(slow_report)
    report.unavailable.append(Unavailable("cuda", "all", "no GPU | here", explicit=False))
    markdown = report.to_markdown()
    assert markdown.startswith("## bnfold bench")
    assert (
        "| setting | original p50 (ms) | candidate p50 (ms) | speedup [95% CI] | verdict |"
        in markdown
    )
    for comparison in report.comparisons:
        assert f"| {comparison.setting_label()} |" in markdown
    assert markdown.count("**slower**") == 4
    assert "| cuda/all | - | - | - | unavailable: no GPU \\| here |" in markdown  # pipes escaped
    assert "<details>" in markdown and "</details>" in markdown
    assert "| original | " in markdown and "| candidate | " in markdown
    assert "onnxruntime " + report.onnxruntime_version in markdown


def test_terminal_tables(slow_report: BenchReport) -> None:
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    assert "Candidate vs original (20 rounds; p50 in " in text
    assert text.count("slower") >= 4
    assert "cpu/disable/batch 2" in text
    assert "BatchNormalization" in text
    assert " mean " in text and "1st run" in text


def test_narrow_terminal_keeps_the_columns_that_fit(slow_report: BenchReport) -> None:
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=80, color_system=None))
    text = buffer.getvalue()
    assert "…" not in text  # nothing truncated
    assert " mean " not in text and "1st run" not in text
    assert "mean, std, startup times: wider terminal" in " ".join(
        text.split()
    )  # the caption may wrap


def test_summary_line(slow_report: BenchReport) -> None:
    line = slow_report.summary_line()
    assert line.count("slower") == 4
    assert "cpu/all/batch 2" in line


def test_plot_writes_a_png(slow_report: BenchReport, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_plot(slow_report, tmp_path / "latency.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000  # four panels of violins, not an empty canvas


def test_plot_without_matplotlib_is_a_one_line_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec() now reports it missing
    with pytest.raises(UsageError, match=r"pip install 'bnfold\[plot\]'") as caught:
        require_matplotlib()
    assert "\n" not in str(caught.value)


def test_plot_with_nothing_measured_is_refused(slow_report: BenchReport, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = copy.deepcopy(slow_report)
    report.comparisons.clear()
    with pytest.raises(UsageError, match="nothing to plot"):
        write_plot(report, tmp_path / "empty.png")


def test_rich_progress_draws_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with RichProgress(console) as progress:
        bench(
            fast_model(),
            fast_model(),
            providers="cpu",
            levels="disable",
            progress=progress,
            **QUICK,
        )
    assert "cpu/disable/batch 1 (rounds)" in buffer.getvalue()

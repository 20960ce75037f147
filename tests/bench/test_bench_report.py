"""The report as JSON, Markdown, terminal tables and a PNG plot."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnfold.bench import BenchReport, RichProgress, bench
from bnfold.bench.formatting import (
    format_speedup,
    interval_words,
    level_text,
    noise_floor_text,
    verdict_text,
)
from bnfold.bench.plot import require_matplotlib, write_plot
from bnfold.bench.report import Unavailable
from bnfold.bench.stats import speedup_over_pairs
from bnfold.bench.terminal import latency_table
from bnfold.errors import UsageError
from tests.builders.bench_models import QUICK, fast_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RESULT_KEYS = {
    "model",
    "provider",
    "level",
    "batch",
    "latency_ms",
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
COMPARISON_KEYS = {
    "provider",
    "level",
    "batch",
    "speedup",
    "ci_low",
    "ci_high",
    "verdict",
    "margin_pct",
    "pairs",
    "rounds_per_pair",
    "pair_sd_pct",
    "ci_half_width_pct",
    "pairs_needed",
    "seconds_needed",
    "pair_speedups",
    "calibration",
    "noise_floor",
    "original_ms",
    "candidate_ms",
    "established",
    "looks",
    "stop_reason",
    "stopped_by",
    "schedule",
}


def test_json_schema(slow_report: BenchReport) -> None:
    data = json.loads(slow_report.to_json())
    assert {"results", "comparisons", "machine", "onnxruntime_version", "settings"} <= set(data)
    settings = data["settings"]
    assert (settings["pairs"], settings["rounds"], settings["margin_pct"]) == (3, 20, 3.0)
    assert settings["threads"]["intra_op_threads"] == 1
    assert settings["budget_s"] > 0 and settings["overrun_s"] >= 0
    assert settings["duration_s"] > 0
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
        assert comparison["ci_low"] <= comparison["speedup"] <= comparison["ci_high"]
        # The geometric mean of the pairs' ratios of medians.
        assert comparison["speedup"] == pytest.approx(
            float(np.exp(np.mean(np.log(comparison["pair_speedups"]))))
        )
        assert (comparison["pairs"], comparison["rounds_per_pair"]) == (3, 20)
        assert comparison["calibration"] is None
        assert "pairs vary" in comparison["noise_floor"]
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
        "| setting | original (ms) | candidate (ms) | speedup [interval] | "
        "verdict (margin ±3%) | what the interval establishes |" in markdown
    )
    assert "Design: up to 3 fresh session pairs per setting, timed in interleaved rounds " in (
        markdown
    )
    assert "- inputs: batch 2: x float32 2x16" in markdown
    assert "Threads: intra-op threads 1" in markdown
    assert "took " in markdown
    for comparison in report.comparisons:
        assert f"| {comparison.setting_label()} |" in markdown
    assert markdown.count("**slower**") == 4
    assert (
        "| cuda/all | - | - | - | unavailable: no GPU \\| here | - |" in markdown
    )  # pipes escaped
    assert "<details>" in markdown and "</details>" in markdown
    assert "| original | " in markdown and "| candidate | " in markdown
    assert "onnxruntime " + report.onnxruntime_version in markdown


def test_terminal_tables(slow_report: BenchReport) -> None:
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    assert "Candidate vs original (3 pairs; latency in " in text
    assert "margin ±3%" in text
    assert text.count("noise floor cpu/") == 4
    assert "design: up to 3 fresh session pairs" in text
    assert "threads: intra-op threads 1" in text
    assert ", took " in text
    assert text.count("slower") >= 4
    assert "cpu/disable/batch 2" in text
    assert "BatchNormalization" in text
    assert " latency " in text and "1st run" in text


def _rows(text: str, setting: str) -> list[list[str]]:
    """The cells of every table row of ``setting`` (cells are split at 2+ spaces)."""
    import re

    return [
        re.split(r"\s{2,}", line.strip())
        for line in text.splitlines()
        if line.startswith(setting + " ")
    ]


def test_no_table_contradicts_the_verdict_row(slow_report: BenchReport) -> None:
    """Every number comparing the models is the verdict's statistic: original / candidate is
    the speedup, and the latency table repeats the comparison table's latencies."""
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    markdown = slow_report.to_markdown()
    results = {(r.setting_label(), r.model): r for r in slow_report.measured()}
    for c in slow_report.comparisons:
        label = c.setting_label()
        assert c.original_ms / c.candidate_ms == pytest.approx(c.estimate.speedup, rel=1e-9)
        assert results[label, "original"].typical_ms == c.original_ms
        assert results[label, "candidate"].typical_ms == c.candidate_ms
        (row, original, candidate) = _rows(text, label)
        assert row[-1] == c.verdict and row[3] == format_speedup(c.estimate)
        assert (original[1], candidate[1]) == ("original", "candidate")
        assert (original[2], candidate[2]) == (row[1], row[2])  # same latency, same unit
        shown = float(row[1]) / float(row[2])
        assert shown == pytest.approx(c.estimate.speedup, rel=0.01)  # 3 digits each
        markdown_row = next(
            line for line in markdown.splitlines() if line.startswith(f"| {label} |")
        )
        cells = [cell.strip() for cell in markdown_row.split("|")[1:-1]]
        assert float(cells[1]) / float(cells[2]) == pytest.approx(c.estimate.speedup, rel=0.01)
        details = [
            line.split("|")[3].strip()
            for line in markdown.splitlines()
            if line.startswith((f"| {label} | original |", f"| {label} | candidate |"))
        ]
        assert details == cells[1:3]


def test_input_sizes_come_before_every_table(slow_report: BenchReport) -> None:
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=100, color_system=None))
    text = buffer.getvalue()
    assert text.startswith("inputs: batch 1: x float32 1x16\n")
    assert text.index("--batch sets dimension 0 of 'x'") < text.index("Candidate vs original")
    assert json.loads(slow_report.to_json())["input_notes"] == slow_report.input_notes
    markdown = slow_report.to_markdown()
    assert markdown.index("--batch sets dimension 0") < markdown.index("| setting |")


def test_narrow_terminal_keeps_the_columns_that_fit(slow_report: BenchReport) -> None:
    """Below the full table's width, latency columns go from the right and a caption says
    where they are; numbers are never cut (which columns fit depends on the digits)."""
    buffer = io.StringIO()
    slow_report.render(Console(file=buffer, width=80, color_system=None))
    text = buffer.getvalue()
    assert "…" not in text  # nothing truncated
    dropped = "1st run" not in text
    assert dropped == ("more columns: wider terminal" in " ".join(text.split()))
    table = latency_table(slow_report, width=60)  # too narrow for all eight columns
    names = [column.header for column in table.columns]
    assert names[:3] == ["setting", "model", "latency"] and len(names) < 8
    buffer = io.StringIO()
    Console(file=buffer, width=60, color_system=None).print(table)
    assert "…" not in buffer.getvalue()


def test_summary_line(slow_report: BenchReport) -> None:
    line = slow_report.summary_line()
    assert line.count(": slower (") == 4
    assert line.count("× slower, beyond the 3% margin)") == 4  # what each interval establishes
    assert "cpu/all/batch 2" in line
    assert "(margin ±3%, budget " in line and ", took " in line


def _with_estimate(report: BenchReport, d: list[float]) -> BenchReport:
    changed = copy.deepcopy(report)
    comparison = changed.comparisons[0]
    comparison.estimate = speedup_over_pairs(d, margin=0.03)
    comparison.seconds_per_pair = 0.5
    return changed


def test_inconclusive_says_what_a_decisive_run_needs(slow_report: BenchReport) -> None:
    report = _with_estimate(slow_report, [0.02, 0.09, -0.01, 0.08])  # ~4.5% faster, noisy
    comparison = report.comparisons[0]
    assert comparison.verdict == "inconclusive"
    needed = comparison.estimate.pairs_needed
    assert needed is not None and needed > 4
    assert comparison.seconds_needed() == pytest.approx(needed * 0.5)
    text = verdict_text(comparison)
    assert f"about {needed} pairs would decide" in text and "for this setting" in text
    assert text.endswith("raise --budget)")  # an option bench and optimize --bench share
    assert f"inconclusive (about {needed} pairs would decide" in report.to_markdown()
    data = json.loads(report.to_json())["comparisons"][0]
    assert data["pairs_needed"] == needed


def test_equivalent_is_reported_as_such(slow_report: BenchReport) -> None:
    report = _with_estimate(slow_report, [0.001, -0.002, 0.0, 0.002, -0.001])
    assert report.comparisons[0].verdict == "equivalent"
    assert verdict_text(report.comparisons[0]) == "equivalent"
    assert report.failure() is None


def test_noise_floor_with_calibration_shows_the_aa_result(slow_report: BenchReport) -> None:
    report = copy.deepcopy(slow_report)
    report.comparisons[0].calibration = speedup_over_pairs([0.004, -0.003, 0.001], margin=0.03)
    line = noise_floor_text(report.comparisons[0])
    assert line.startswith("A/A 1.001× [")
    assert "equivalent, pairs vary ±0.4%" in line


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
    assert "cpu/disable (s)" in buffer.getvalue()  # the setting's share of the budget


def test_plot_body_ends_below_hiccups_that_reach_p99() -> None:
    """A sub-millisecond model with 1.5 % scheduler hiccups at 10 ms: p99 is a hiccup, so a
    plot up to p99 would be a flat line under them; the body ends at Tukey's far fence."""
    from bnfold.bench.plot import _body_top

    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.normal(0.1, 0.005, 985), np.full(15, 10.0)])
    assert np.percentile(sample, 99) > 5.0
    assert _body_top(sample) < 0.2
    steady = rng.normal(0.1, 0.005, 1000)
    assert _body_top(steady) == pytest.approx(np.percentile(steady, 99))


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [
        (1.017, 1.043, "at least 1.7% faster, not shown to exceed the 3% margin"),
        (1.061, 1.102, "at least 6.1% faster, beyond the 3% margin"),
        (0.90, 0.95, "at least 5.3% slower, beyond the 3% margin"),
        (0.98, 0.99, "at least 1.0% slower, within the ±3% margin"),
        (1.01, 1.05, "at least 1.0% faster, not shown to exceed the 3% margin"),
        (0.988, 1.014, "between 1.2% slower and 1.4% faster, within the ±3% margin"),
        (0.95, 1.10, "between 5.3% slower and 10.0% faster, no difference shown"),
        (0.2, 0.5, "at least 2× slower, beyond the 3% margin"),
        (1.0304, 1.05, "at least 3.04% faster, beyond the 3% margin"),
    ],
)
def test_every_interval_is_said_in_words(low: float, high: float, words: str) -> None:
    """What the interval establishes, whatever the verdict (issue 26: 1.030× [1.017, 1.043]
    read as 'faster by 1.7-4.3%' when it was inconclusive)."""
    estimate = speedup_over_pairs([0.0, 0.01, -0.01], margin=0.03)
    estimate = dataclasses.replace(estimate, ci_low=low, ci_high=high)
    assert interval_words(estimate) == words


def test_too_few_pairs_have_no_interval_to_say() -> None:
    estimate = dataclasses.replace(
        speedup_over_pairs([0.0, 0.01], margin=0.03), ci_low=0.0, ci_high=float("inf")
    )
    assert interval_words(estimate).startswith("no interval")


@pytest.mark.parametrize(
    ("confidence", "text"),
    [(0.95, "95%"), (0.974, "97.4%"), (0.9927, "99.27%"), (0.999989, "99.9989%")],
)
def test_a_look_level_keeps_the_digits_that_tell_it_from_100(confidence: float, text: str) -> None:
    assert level_text(confidence) == text

"""The command line shows and uses the library's defaults; it never types one a second time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click
import pytest
from click.testing import CliRunner

from bnfold.bench import bench, budget, design
from bnfold.cli import main
from bnfold.verify import compare, settings, sites, verify

# The CLI leaves --default-dim unset: free dims are then chosen from the graph (its help says
# so), where bench() called directly sizes them 1.
CHOSEN_BY_THE_CLI: set[tuple[str, str]] = set()  # every default is the library's


def _help(command: str) -> str:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click wraps help text


@pytest.mark.parametrize(("command", "function"), [("verify", verify), ("bench", bench)])
def test_every_option_defaults_to_the_library_keyword(
    command: str, function: Callable[..., Any]
) -> None:
    cli = main.commands[command]
    library = inspect.signature(function).parameters
    # What the command receives when only the two models are given (nothing is run).
    given = cli.make_context(command, ["original.onnx", "candidate.onnx"]).params
    compared = 0
    for param in cli.params:
        name = param.name or ""
        if not isinstance(param, click.Option) or name not in library:
            continue
        if (command, name) in CHOSEN_BY_THE_CLI:
            continue
        expected = library[name].default
        if isinstance(expected, tuple):
            expected = ",".join(expected)  # --level disable,all
        value = None if given[name] == () else given[name]  # a repeatable option given never
        assert value == expected, name
        compared += 1
    assert compared >= (19 if command == "bench" else 14)  # the options both spell alike


def test_bench_help_shows_the_design_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help("bench")
    assert f"[default: {design.DEFAULT_PAIRS}; x>=2]" in text
    assert f"[default: {design.DEFAULT_WARMUP}; x>=0]" in text
    assert f"[default: {design.DEFAULT_MARGIN_PCT}; 0<=x<100]" in text
    assert f"[default: {','.join(design.DEFAULT_LEVELS)}]" in text
    # Read from the constants, not copied: changing one changes --help.
    assert f"Default: {budget.DEFAULT_BUDGET_S:g} s, grown" in text
    monkeypatch.setattr(design, "DEFAULT_PAIRS", 37)
    monkeypatch.setattr(budget, "DEFAULT_BUDGET_S", 12.0)
    monkeypatch.setattr(budget, "MAX_DEFAULT_BUDGET_S", 99.0)
    monkeypatch.setattr(budget, "WARMUP_FRACTION", 0.25)
    monkeypatch.setattr(design, "DEFAULT_LEVELS", ("basic",))
    text = _help("bench")
    assert "[default: 37; x>=2]" in text
    assert "Default: 12 s, grown" in text and "at most 99 s" in text
    assert "(and at least 25% of its timed time)" in text
    assert "[default: basic]" in text


def test_verify_help_shows_the_tolerance_table_and_site_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _help("verify")
    assert "Default per dtype: fp32 1e-4, fp64 1e-10, fp16 5e-2, bf16 0.4." in text
    assert "Default per dtype: fp32 1e-4, fp64 1e-9, fp16 1e-2, bf16 8e-2." in text
    assert "--sites [folds|all|none]" in text and "[default: folds]" in text
    tolerances = {**compare.DEFAULT_TOLERANCES, "float32": (2e-5, 3e-3)}
    monkeypatch.setattr(compare, "DEFAULT_TOLERANCES", tolerances)
    monkeypatch.setattr(settings, "DEFAULT_TOLERANCES", tolerances)
    monkeypatch.setattr(settings, "DEFAULT_LEVELS", "basic")
    monkeypatch.setattr(sites, "SITE_MODES", ("folds", "none"))
    text = _help("verify")
    assert "Default per dtype: fp32 2e-5," in text and "Default per dtype: fp32 3e-3," in text
    assert "--sites [folds|none]" in text
    assert "CPU with optimizations disabled. [default: basic]" in text


def test_optimize_names_each_judges_level_default() -> None:
    verify_levels = settings.DEFAULT_LEVELS
    bench_levels = ",".join(design.DEFAULT_LEVELS)
    assert f"Default: {verify_levels} for verify, {bench_levels} for bench." in _help("optimize")

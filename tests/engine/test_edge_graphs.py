"""Adversarial edge graphs (issue 10): every fold is exact or refused, on every graph ONNX allows.

Each case (built in ``edge_*.py``, one file per class of the issue) must satisfy the fuzzer's
property (``check_optimize_is_safe``: no exception, a valid model with unchanged outputs,
the same numbers as the unfolded model under onnxruntime with ``ORT_DISABLE_ALL``, a second
run that changes nothing, a report whose names exist) and its own expectation per BN: folded
where the fold is exact, refused with the stated reason where it is not.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from tests.builders.edges import float16 as edge_float16
from tests.builders.edges import formats as edge_formats
from tests.builders.edges import reports as edge_reports
from tests.builders.edges import scopes as edge_scopes
from tests.builders.edges import shapes as edge_shapes
from tests.builders.edges import slots as edge_slots
from tests.builders.edges import true_reports as edge_true_reports
from tests.builders.edges.build import ANY_REASON, FOLDED, EdgeCase
from tests.builders.fuzz.checks import check_optimize_is_safe

BUILDERS = [
    *edge_slots.CASES,
    *edge_scopes.CASES,
    *edge_shapes.CASES,
    *edge_formats.CASES,
    *edge_reports.CASES,
    *edge_float16.CASES,
    *edge_true_reports.CASES,
]


def assert_expected_outcomes(case: EdgeCase, result: object) -> None:
    """Each BN named in ``case.expect`` was folded or kept with an allowed reason."""
    report = result.report  # type: ignore[attr-defined]
    folded = {fold.bn for fold in report.folds}
    kept = {skip.bn: skip for skip in report.skipped}
    for label, allowed in case.expect.items():
        if label in folded:
            assert FOLDED in allowed, f"{label} was folded; expected one of {sorted(allowed)}"
        else:
            skip = kept.get(label)
            assert skip is not None, f"{label}: neither folded nor reported as kept"
            assert ANY_REASON in allowed or skip.reason in allowed, (
                f"{label} kept as {skip.reason} ({skip.detail}); expected one of {sorted(allowed)}"
            )


@pytest.mark.parametrize("build", BUILDERS, ids=lambda build: build.__name__)
def test_edge_graph_folds_exactly_or_refuses(build) -> None:  # type: ignore[no-untyped-def]
    case = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow in numpy casts
        result = check_optimize_is_safe(case.model, case.feeds, case.dtype)
    assert_expected_outcomes(case, result)
    if case.extra is not None:
        case.extra(case.model, result)


@pytest.mark.parametrize("build", BUILDERS, ids=lambda build: build.__name__)
def test_edge_graph_through_the_cli_exits_0_with_a_valid_model(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``bnfold optimize`` on a valid graph never fails the run (no traceback, no exit 70):
    exit 0, and the written model passes the full checker with the same graph outputs."""
    from bnfold.cli import main

    case = build()
    source, target = tmp_path / "edge.onnx", tmp_path / "edge.folded.onnx"
    onnx.save(case.model, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = CliRunner().invoke(main, ["optimize", str(source), "-o", str(target), "-q"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    written = onnx.load(target)
    onnx.checker.check_model(written, full_check=True)
    assert list(written.graph.output) == list(case.model.graph.output)

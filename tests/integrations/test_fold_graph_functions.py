"""Issue 22: ``fold_graph`` carries folds inside local functions (and functions inlined to
fold per call site) back into the caller's onnx-graphsurgeon graph."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

gs = pytest.importorskip("onnx_graphsurgeon")

from bnfold.engine.functions import batchnorms_per_call  # noqa: E402
from bnfold.integrations.graphsurgeon import fold_graph  # noqa: E402
from tests.builders.edges import functions as edge_functions  # noqa: E402
from tests.builders.edges.build import EdgeCase  # noqa: E402
from tests.builders.fuzz.checks import run_reference  # noqa: E402


@pytest.mark.parametrize(
    "build",
    [
        edge_functions.function_body_constants,
        edge_functions.attribute_reference_epsilon,
        edge_functions.modules_as_functions,
    ],
)
def test_a_fold_inside_a_function_reaches_the_callers_graph(
    build: Callable[[], EdgeCase],
) -> None:
    case = build()
    graph = gs.import_onnx(case.model)
    report = fold_graph(graph)
    assert report.folds
    exported = gs.export_onnx(graph)
    exported.ir_version = case.model.ir_version
    assert batchnorms_per_call(exported) == 0
    onnx.checker.check_model(exported, full_check=True)
    for feeds in case.feeds:
        want, got = run_reference(case.model, feeds), run_reference(exported, feeds)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
    again = fold_graph(graph)
    assert not again.folds  # the first call's folds are in the graph: nothing left to fold

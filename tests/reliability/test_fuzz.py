"""Property-based fuzzing of ``bnfold.optimize`` over random valid graphs.

Strategy: ``tests.builders.fuzz.graphs.random_models``; property: ``tests.builders.fuzz.checks.check_optimize_is_safe``
(never crashes, folds exactly or refuses with a reason, idempotent), with and without
``lower_standalone``. CI runs the ``ci`` hypothesis profile (500 fixed examples); a long run:

    BNFOLD_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/reliability/test_fuzz.py -q
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.builders.fuzz.checks import check_optimize_is_safe
from tests.builders.fuzz.graphs import FuzzModel, random_models
from tests.builders.fuzz.settings import fuzz_settings


@pytest.mark.slow
@fuzz_settings()
@given(random_models(), st.booleans())
def test_optimize_folds_exactly_or_refuses_with_a_reason(
    drawn: FuzzModel, lower_standalone: bool
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fp16 overflow in numpy casts
        result = check_optimize_is_safe(
            drawn.model, drawn.feeds, drawn.dtype, lower_standalone=lower_standalone
        )
    # Shown by --hypothesis-show-statistics: how often each outcome was exercised.
    event(f"dtype {drawn.dtype.name}")
    for fold in result.report.folds:
        event(f"fold {fold.pattern}")
    for skip in result.report.skipped:
        event(f"kept {skip.reason}")

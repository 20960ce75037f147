"""The fuzz property of ``tests/reliability/test_fuzz.py`` under the quantize and npu profiles:
never crashes, folds exactly or keeps with a reason, idempotent, valid, reports true.

``check_optimize_is_safe`` folds (and folds again, for idempotence) under the profile drawn.
Default: the ``ci`` profile (500 fixed examples); a long run, which passed with 2,000 when
the profiles landed:
``BNFOLD_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/targets/test_fuzz_targets.py``.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.builders.fuzz.checks import check_optimize_is_safe
from tests.builders.fuzz.graphs import FuzzModel, random_models
from tests.builders.fuzz.settings import fuzz_settings


@pytest.mark.slow
@fuzz_settings()
@given(random_models(), st.sampled_from(["quantize", "npu"]))
def test_every_profile_folds_exactly_or_keeps_with_a_reason(drawn: FuzzModel, target: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fp16 overflow in numpy casts
        result = check_optimize_is_safe(drawn.model, drawn.feeds, drawn.dtype, target=target)
    assert result is not None and result.report.target == target

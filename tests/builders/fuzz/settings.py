"""Hypothesis profiles for the fuzz tests (registered on import: ``tests/reliability/conftest.py``
imports this module, so ``--hypothesis-profile=long`` finds them).

- ``ci`` (default): 500 examples (about 6 s on 2 cores), derandomized (the same examples on every run, so CI never
  fails on a new random draw), no example database written into the checkout.
- ``long``: ``BNFOLD_FUZZ_EXAMPLES`` examples (default 5000), fresh random draws each run:
  ``BNFOLD_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/reliability/test_fuzz.py -q``
  or ``.venv/bin/python -m pytest tests/reliability --hypothesis-profile=long``.

The profiles are applied to the fuzz tests only (``fuzz_settings``), never loaded globally, so
the other suites' hypothesis settings are unchanged. Every failure a long run finds becomes an explicit test in ``test_fuzz_regressions.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("BNFOLD_FUZZ_EXAMPLES") or 5000),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)


def fuzz_settings() -> settings:
    """The profile the fuzz tests run under; only they use it (other tests keep theirs)."""
    chosen = settings.get_current_profile_name()  # --hypothesis-profile=long sets it
    long_run = chosen == "long" or bool(os.environ.get("BNFOLD_FUZZ_EXAMPLES"))
    return settings.get_profile("long" if long_run else "ci")

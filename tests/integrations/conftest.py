"""Fixtures for the integration tests: torch exports share one dynamo op registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fast_dynamo_exports() -> Iterator[None]:
    """Build torch's dynamo op registry once per process (about 1.7 s per export otherwise).

    Only where torch is installed: the hook and action tests need neither torch nor this.
    """
    try:
        from tests.builders import nets
    except ImportError:
        yield
        return
    with nets._reuse_torchlib_registry():
        yield

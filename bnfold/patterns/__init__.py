"""The fold patterns; the first that matches a site folds it (order: ``registry``).

Each pattern registers itself in its own file (``@register(stage)``), says which op it folds
into (``op_type``) and on which side of the site (``side``); the walks stop at exactly those
ops (``target_ops``), so a registered pattern is always reached. What an affine may pass on
the way is ``optable``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from ..engine.protocol import Pattern
from .registry import build_patterns, registered_names


def default_patterns(disabled: Iterable[str] = ()) -> list[Pattern]:
    """Every pattern not named in ``disabled``, in the order they are tried."""
    return build_patterns(disabled)


PATTERN_NAMES = registered_names()


@cache
def target_ops(side: str) -> frozenset[str]:
    """Op types the default patterns fold into on ``side`` (``producer`` or ``consumer``):
    the walks stop at these, so a registered pattern is always reached."""
    return frozenset(p.op_type for p in default_patterns() if p.side.name == side)

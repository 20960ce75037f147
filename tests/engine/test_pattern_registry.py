"""The registry is the one list of patterns: every pattern class is in it, and the walks
stop at exactly the ops the registered patterns fold into."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import bnfold.patterns as patterns
from bnfold.patterns import PATTERN_NAMES, default_patterns, target_ops
from bnfold.patterns.optable import ROLES


def _pattern_classes() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(patterns.__path__):
        loaded = importlib.import_module(f"bnfold.patterns.{module.name}")
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if (
                cls.__module__ == loaded.__name__
                and getattr(cls, "op_type", "")
                and hasattr(cls, "match")
            ):
                found.append(cls)
    return found


def test_every_pattern_class_is_registered() -> None:
    names = set(PATTERN_NAMES)
    unregistered = [cls.__name__ for cls in _pattern_classes() if cls.name not in names]
    assert not unregistered, f"pattern classes the registry does not list: {unregistered}"


def test_the_walks_stop_at_every_registered_target() -> None:
    built = default_patterns()
    for pattern in built:
        if pattern.side.name in ("producer", "consumer"):
            assert pattern.op_type in target_ops(pattern.side.name), pattern.name
    # An op is either a fold target or something the affine passes, never both.
    targets = target_ops("producer") | target_ops("consumer")
    assert not targets & set(ROLES), sorted(targets & set(ROLES))


def test_group_patterns_use_only_enabled_patterns() -> None:
    built = {p.name: p for p in default_patterns(disabled=["bn-conv", "conv-bn"])}
    assert "Conv" not in built["bn-consumers"].consumers  # type: ignore[attr-defined]
    assert all(p.name != "conv-bn" for p in built["concat-bn"].producers)  # type: ignore[attr-defined]
    assert "conv-bn-split" in built  # only the named pattern is off

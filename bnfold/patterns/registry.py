"""The pattern registry: each pattern module registers its own patterns, in a stage.

A pattern class is registered with ``@register(STAGE)`` in its own file; ``default_patterns``
imports every module of this package, so a new pattern is one new file (plus its test and
its README row): nothing else lists it. Stages order the tries for one site:

1. ``PRODUCER``: into the layer that computes the site's input (removes the whole affine);
2. ``PRODUCER_GROUP``: into several producers, or into another affine (Concat slices, BN);
3. ``CONSUMER``: into the layer that reads the site's output (also the whole affine);
4. ``CONSUMER_GROUP``: into every layer that reads it;
5. ``SPLIT``: a producer pattern again, moving only the scale through an activation and
   leaving the shift as one Add (``register(PRODUCER, split=True)`` adds it).

A pattern built from others (a group) has a ``from_patterns(built)`` class method that gets
the patterns built so far; the others are built with no arguments.

A pattern turned off (``--disable NAME``) is built too, as a ``Disabled`` stand-in: asked
where it would be, it never plans, but says it would have folded the site (``no-pattern``,
naming itself), so a BN only it would fold is not reported with another side's reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ..engine.outcomes import Skip
from ..engine.protocol import Answer, FoldContext, Pattern, Plan, Side, Target
from ..engine.sites import AffineSite

PRODUCER, PRODUCER_GROUP, CONSUMER, CONSUMER_GROUP, SPLIT = 10, 20, 30, 40, 50

Factory = Callable[[list[Pattern]], Pattern]
T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    stage: int
    sequence: int
    build: Factory


_ENTRIES: list[Entry] = []


def register(stage: int, *, split: bool = False) -> Callable[[T], T]:
    """Class decorator: register the pattern class in ``stage`` (and its split variant)."""

    def decorate(cls: T) -> T:
        name: str = cls.name  # type: ignore[attr-defined]
        from_patterns = getattr(cls, "from_patterns", None)
        build: Factory = from_patterns if from_patterns is not None else (lambda built: cls())  # type: ignore[operator]
        _add(Entry(name, stage, len(_ENTRIES), build))
        if split:
            variant = lambda built: cls(through_activations=True)  # type: ignore[operator]  # noqa: E731
            _add(Entry(f"{name}-split", SPLIT, len(_ENTRIES), variant))
        return cls

    return decorate


def _add(entry: Entry) -> None:
    if all(existing.name != entry.name for existing in _ENTRIES):  # a module imported twice
        _ENTRIES.append(entry)


def _load_all() -> None:
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")


class Disabled:
    """A pattern turned off: asked like it, it answers its refusal, or ``no-pattern`` where it
    would have folded (group patterns do not build on it: it is no pattern class of theirs)."""

    def __init__(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self.name = pattern.name
        self.op_type = pattern.op_type

    @property
    def side(self) -> Side:
        return self.pattern.side

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return self.pattern.accepts(ctx, site)

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[object]) -> Answer:
        answer = self.pattern.match(ctx, site, target)
        if not isinstance(answer, Plan):
            return answer
        return Skip(
            "no-pattern",
            f"{self.name} would fold it into {answer.fold.into}, but is disabled "
            f"(--disable {self.name})",
        )


def build_patterns(disabled: Iterable[str] = ()) -> list[Pattern]:
    """Every registered pattern, in the order they are tried; those named in ``disabled`` as
    ``Disabled`` stand-ins that never fold."""
    _load_all()
    off = set(disabled)
    built: list[Pattern] = []
    for entry in sorted(_ENTRIES, key=lambda e: (e.stage, e.sequence)):
        pattern = entry.build(built)
        built.append(Disabled(pattern) if entry.name in off else pattern)
    return built


def registered_names() -> tuple[str, ...]:
    _load_all()
    return tuple(e.name for e in sorted(_ENTRIES, key=lambda e: (e.stage, e.sequence)))

"""What every pattern shares: the context it may look at, and the ``Pattern`` protocol.

A pattern is *match, check, then plan*: ``match`` never mutates the model and returns a
``Plan`` (its edits as data, see ``bnfold.engine.plan``), a ``Skip`` (this pattern applies but a
precondition fails) or ``None`` (this pattern does not apply here). Only the editor writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .graph import GraphView, node_label
from .outcomes import Fold, Skip
from .plan import Plan
from .shapes import Shape

if TYPE_CHECKING:
    from .sites import AffineSite


@dataclass
class FoldContext:
    """What a pattern may look at: the scoped graph index (with opset, shapes and types)."""

    view: GraphView

    @property
    def opset(self) -> int:
        return self.view.opset

    def shapes(self) -> Mapping[str, Shape]:
        return self.view.shapes()


class Pattern(Protocol):
    """``op_type``: the op the pattern folds into; ``side``: ``producer`` (the layer that
    computes the site's input) or ``consumer`` (the layer that reads its output)."""

    name: str
    op_type: str
    side: str

    def match(self, ctx: FoldContext, site: AffineSite) -> Plan | Skip | None: ...


__all__ = ["Fold", "FoldContext", "Pattern", "Plan", "Skip", "node_label"]

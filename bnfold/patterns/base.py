"""What every pattern shares: Skip (a refusal with a stable reason code), Fold, the context.

A pattern is *match, check, then fold*: ``match`` never mutates the model and returns a
``Plan`` (everything computed, ready to write), a ``Skip`` (this pattern applies but a
precondition fails) or ``None`` (this pattern does not apply here). ``apply`` only writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import onnx

from ..editor import GraphEditor
from ..graph import GraphView, node_label
from ..outcomes import Fold, Skip

if TYPE_CHECKING:
    from ..sites import AffineSite


@dataclass
class Plan:
    """A checked fold: ``write`` performs the edit; ``nodes`` are the nodes it reads or rewrites."""

    fold: Fold
    nodes: list[onnx.NodeProto]
    write: Callable[[GraphEditor], None]


@dataclass
class FoldContext:
    """What a pattern may look at: the graph index, the opset, shapes (lazy), and options."""

    view: GraphView
    opset: int
    shapes: Callable[[], dict[str, tuple[int | str | None, ...]]]


class Pattern(Protocol):
    name: str

    def match(self, ctx: FoldContext, site: AffineSite) -> Plan | Skip | None: ...


__all__ = ["Fold", "FoldContext", "Pattern", "Plan", "Skip", "node_label"]

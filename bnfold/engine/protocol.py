"""What every pattern shares: the context it may look at, the ``Side`` and ``Pattern`` protocols.

A site is folded into a layer on one of its *sides*: the layer that computes its input
(producer), or the layers that read its output (consumer). A ``Side`` walks from the site to
the node a fold on that side would go into (its ``Target``), once per site and round; the
driver then asks only the patterns of that side that fold into the target's op type
(``dispatch``).

A pattern is *match, check, then plan*: ``match`` never mutates the model and answers with a
``Plan`` (its edits as data, see ``bnfold.engine.plan``), a ``Skip`` (the fold is refused, and
why: the report shows it) or ``NotMine`` (nothing to say: the fold would gain nothing, or the
pattern does not handle this kind of site; never reported). Only the editor writes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import onnx

from .graph import GraphView, node_label
from .outcomes import Fold, Skip
from .plan import Plan
from .shapes import Shape
from .targets import DEFAULT_TARGET, Profile, profile

if TYPE_CHECKING:
    from .sites import AffineSite

T = TypeVar("T")
W = TypeVar("W")

ANY_OP = "*"  # a pattern's ``op_type`` for a target of several nodes (of any op types)


@dataclass(frozen=True)
class NotMine:
    """The answer "not mine": not a refusal, so the report says nothing of it.

    ``why`` says which case it is, for tests and debugging (``no-gain``, ``low-precision``,
    ``several-consumers``...).
    """

    why: str


@dataclass(frozen=True, eq=False)
class Target(Generic[W]):
    """Where a side's walk from a site ends: the node(s) a fold would go into, and ``way``,
    what the walk found on the way there (the side's own data: the engine never reads it)."""

    nodes: tuple[onnx.NodeProto, ...]
    way: W

    @property
    def op_type(self) -> str:
        """What the driver dispatches on: the node's op type (``*`` for several nodes)."""
        return self.nodes[0].op_type if len(self.nodes) == 1 else ANY_OP


Answer = Plan | Skip | NotMine


@dataclass
class FoldContext:
    """What a pattern may look at: the scoped graph index (with opset, shapes and types), and
    the deployment ``profile`` whose rules decide what an exact fold may cost (``targets``).

    One context serves one round of one graph: what ``once`` computes (a walk from a site)
    is kept for the rest of the round, when the graph index is the same.
    """

    view: GraphView
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)
    profile: Profile = field(default_factory=lambda: profile(DEFAULT_TARGET))

    @property
    def opset(self) -> int:
        return self.view.opset

    def shapes(self) -> Mapping[str, Shape]:
        return self.view.shapes()

    def once(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` is asked in this round; its value after."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


class Side(Protocol):
    """One way from a site to the node a fold goes into. ``reach`` walks there: a ``Target``,
    a ``Skip`` (nothing on this side can take the fold, and why) or ``NotMine`` (this side
    has nothing to say about this site). The driver calls it at most once per site and round."""

    name: str

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[Any] | Skip | NotMine: ...


class Pattern(Protocol):
    """``side``: the walk that finds the node the pattern folds into; ``op_type``: that
    node's op type (``*``: several nodes). The driver asks a pattern only about sites it
    ``accepts`` and targets of its side and op type."""

    name: str
    op_type: str

    @property
    def side(self) -> Side: ...

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        """Whether the pattern handles sites like ``site`` at all (its dtype, say), before
        any walk: a side whose patterns all decline it is not walked, and its refusal is
        not reported."""
        ...

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Any]) -> Answer: ...


__all__ = [
    "ANY_OP",
    "Answer",
    "Fold",
    "FoldContext",
    "NotMine",
    "Pattern",
    "Plan",
    "Side",
    "Skip",
    "Target",
    "node_label",
]

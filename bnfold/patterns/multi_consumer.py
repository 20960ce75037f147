"""One affine read by several linear layers: fold it into every one of them.

``z_i = W_i·(s ⊙ x + t) + b_i`` for each reader ``i`` (a head of a multi-output model, the
branches after a ``Split`` of the channels): each layer gets its own ``W_i' = W_i·s_i`` and
``b_i' = b_i + W_i·t_i`` (the consumer patterns' formulas, with ``(s_i, t_i)`` the affine as
it reaches that layer), the readers read the site's input, and the site goes. A weight two
readers share is copied, since each now holds a different scale (the editor copies any
tensor whose other uses a plan does not rewrite).

Exact when every reader's fold is: any branch that is refused refuses the whole fold (with
that branch's reason), since the affine must vanish from every path or stay.
"""

from __future__ import annotations

from ..engine.outcomes import Skip
from ..engine.plan import Edit, RemoveNodes, SetInput, combined_plan
from ..engine.protocol import (
    ANY_OP,
    Answer,
    FoldContext,
    Pattern,
    Plan,
    Target,
    node_label,
)
from ..engine.sites import AffineSite
from .consumer import ConsumerFold
from .consumer_walk import Branch
from .registry import CONSUMER_GROUP, register
from .sides import CONSUMERS


@register(CONSUMER_GROUP)
class MultiConsumerFold:
    """Fold into every consumer of ``site`` (each ``ConsumerFold`` plans its own branch)."""

    name = "bn-consumers"
    op_type = ANY_OP  # whatever the single-consumer patterns take
    side = CONSUMERS

    def __init__(self, consumers: list[ConsumerFold]) -> None:
        self.consumers = {pattern.op_type: pattern for pattern in consumers}

    @classmethod
    def from_patterns(cls, built: list[Pattern]) -> MultiConsumerFold:
        """Each branch may go into any enabled single-consumer pattern."""
        return cls([p for p in built if isinstance(p, ConsumerFold)])

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return True

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[list[Branch]]) -> Answer:
        branches = target.way
        plans: list[Plan] = []
        for branch in branches:
            pattern = self.consumers.get(branch.consumer.op_type)
            if pattern is None:
                return Skip(
                    "no-pattern",
                    f"no enabled pattern folds into {node_label(branch.consumer)}",
                )
            plan = pattern.plan(
                ctx, site, branch.consumer, branch.passes, branch.axis, branch.affine
            )
            if not isinstance(plan, Plan):
                return plan  # one branch refused or gains nothing: so does the whole fold
            plans.append(plan)
        return _merge(site, plans, [branch.reader for branch in branches], self.name)


def _merge(site: AffineSite, plans: list[Plan], readers: list, name: str) -> Plan:
    """One plan: each branch's weight and bias edits, then one rewiring and one removal."""
    edits: list[Edit] = []
    for plan in plans:
        edits += [
            edit
            for edit in plan.edits
            if not isinstance(edit, RemoveNodes)
            and not (isinstance(edit, SetInput) and edit.name == site.input)
        ]
    seen: set[int] = set()
    for reader in readers:
        if id(reader) in seen:
            continue
        seen.add(id(reader))
        edits += [
            SetInput(reader, index, site.input)
            for index, input_name in enumerate(reader.input)
            if input_name == site.output
        ]
    edits.append(RemoveNodes(tuple(site.nodes)))
    return combined_plan(
        plans,
        site,
        pattern=name,
        direction="consumer",
        through=sorted({op for plan in plans for op in plan.fold.through}),
        edits=edits,
    )

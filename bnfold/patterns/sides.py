"""The sides of a site, each a walk to the node a fold on that side goes into.

Two walks serve the four sides, each run once per site and round (kept in the
``FoldContext``): the walk back (``chain.walk_back``) passes activations and notes where a
walk that may not would have stopped, so the producer side and the split side (producer
patterns again, through activations) share it; the walk forward (``consumer_walk``) serves
the consumer side (one reader) and the consumers side (several).

A side's ``Target`` carries what its patterns need: a ``Chain`` back to the layer, one
``Branch`` to the reading layer, or every ``Branch``.
"""

from __future__ import annotations

from ..engine.outcomes import Skip
from ..engine.protocol import FoldContext, NotMine, Target
from ..engine.sites import AffineSite
from .chain import Chain, WalkBack, walk_back
from .consumer_walk import Branch, walk_to_consumers


def walked_back(ctx: FoldContext, site: AffineSite) -> WalkBack:
    """The walk back from ``site``, once per round."""
    return ctx.once(("walk-back", site.input, site.output), lambda: walk_back(ctx.view, site))


def walked_forward(ctx: FoldContext, site: AffineSite) -> list[Branch] | Skip:
    """The walk forward from ``site``, once per round."""
    return ctx.once(("walk-forward", site.input, site.output), lambda: walk_to_consumers(ctx, site))


class ProducerSide:
    """The layer that computes the site's input, with no activation between."""

    name = "producer"

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[Chain] | Skip | NotMine:
        chain = walked_back(ctx, site).direct
        return chain if isinstance(chain, Skip) else Target((chain.linear,), chain)


class SplitSide:
    """The layer that computes the site's input through activations (only the scale moves)."""

    name = "producer-split"

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[Chain] | Skip | NotMine:
        chain = walked_back(ctx, site).through
        if isinstance(chain, Skip):
            return chain
        if not chain.activations:
            return NotMine("no-activation")  # the producer side's
        return Target((chain.linear,), chain)


# Linear layers that no consumer pattern folds into, and why: the walk stops at them as at
# any op it cannot pass, and a refusal that names one says why it is not folded there.
NO_CONSUMER_FOLD = {
    "ConvTranspose": (
        "a ConvTranspose takes a fold only from its output side: a shift before it reaches "
        "border outputs through fewer kernel taps than inner ones, so it is no per-channel bias"
    ),
}


def _why_not_into(refusal: Skip) -> Skip:
    """``refusal`` (the walk's ``no-linear-consumer``), saying why a linear layer it names
    takes no fold from its input side."""
    if refusal.reason not in ("no-linear-consumer", "consumer-input-shared"):
        return refusal
    named = [op for op in NO_CONSUMER_FOLD if f"read by {op} " in refusal.detail]
    if not named:
        return refusal
    return Skip(
        refusal.reason, "; ".join([refusal.detail, *(NO_CONSUMER_FOLD[op] for op in named)])
    )


class ConsumerSide:
    """The one layer that reads the site's output."""

    name = "consumer"

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[Branch] | Skip | NotMine:
        branches = walked_forward(ctx, site)
        if isinstance(branches, Skip):
            return _why_not_into(branches)
        if len(branches) != 1:
            return NotMine("several-consumers")  # the consumers side's
        return Target((branches[0].consumer,), branches[0])


class ConsumersSide:
    """Every layer that reads the site's output, when there are several."""

    name = "consumer-all"

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[list[Branch]] | Skip | NotMine:
        branches = walked_forward(ctx, site)
        if isinstance(branches, Skip):
            return NotMine("walk-refused")  # the consumer side reports it
        if len(branches) < 2:
            return NotMine("one-consumer")
        return Target(tuple(branch.consumer for branch in branches), branches)


PRODUCER = ProducerSide()
SPLIT = SplitSide()
CONSUMER = ConsumerSide()
CONSUMERS = ConsumersSide()

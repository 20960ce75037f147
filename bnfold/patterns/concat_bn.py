"""Concat of layer outputs → BN: each layer takes its own slice of the affine.

``Concat(y₁, …, y_k)`` along the BN's channel axis puts channels ``o_i … o_i + C_i − 1`` of the
result in ``y_i``. A per-channel ``s·y + t`` acts on each part alone, so

    s·Concat(y₁, …, y_k) + t = Concat(s⁽¹⁾·y₁ + t⁽¹⁾, …, s⁽ᵏ⁾·y_k + t⁽ᵏ⁾),
    s⁽ⁱ⁾ = s[o_i : o_i + C_i],  t⁽ⁱ⁾ = t[o_i : o_i + C_i]

and each slice folds into the layer that computes ``y_i`` (any producer pattern: Conv,
ConvTranspose, Gemm, MatMul, through what those walk through). The Concat stays; the BN goes.
Exact only when every part folds: one that cannot (a graph input, an op nothing folds into)
refuses the whole fold with its reason. Constant ops and no-ops between the Concat and the
BN are composed or passed first. Spec: https://onnx.ai/onnx/operators/onnx__Concat.html
"""

from __future__ import annotations

from ..engine.elementwise import elementwise_affine
from ..engine.foldmath import Affine
from ..engine.graph import int_attribute
from ..engine.outcomes import Skip
from ..engine.plan import combined_plan
from ..engine.protocol import Answer, FoldContext, Pattern, Plan, Target, node_label
from ..engine.sites import AffineSite
from .chain import Chain, walk_to_linear
from .optable import NOOP, role
from .producer import ProducerFold, splice_out
from .registry import PRODUCER_GROUP, register
from .sides import PRODUCER


@register(PRODUCER_GROUP)
class ConcatBatchNorm:
    """Fold each slice of a site into the producer of the matching Concat input."""

    name = "concat-bn"
    op_type = "Concat"
    side = PRODUCER

    def __init__(self, producers: list[ProducerFold]) -> None:
        self.producers = producers
        self.by_op: dict[str, list[ProducerFold]] = {}
        for pattern in producers:
            self.by_op.setdefault(pattern.op_type, []).append(pattern)

    @classmethod
    def from_patterns(cls, built: list[Pattern]) -> ConcatBatchNorm:
        """Each slice may go into any enabled producer pattern that folds into a layer (no
        split variants; not ``bn-affine``, whose BN may itself fold away later)."""
        return cls(
            [
                p
                for p in built
                if isinstance(p, ProducerFold)
                and not p.through_activations
                and p.op_type != "BatchNormalization"
            ]
        )

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return True

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        view = ctx.view
        chain = target.way
        concat = chain.linear
        if chain.shape_readers or any(
            role(node, view.elem_type(node.input[0])) != NOOP for node in chain.passes
        ):
            return Skip(
                "unsupported-chain",
                f"only no-ops may sit between {node_label(concat)} and the site",
            )
        if site.rank is None:
            return Skip("axis-not-proven", f"rank of {site.input!r} is unknown")
        axis = int_attribute(concat, "axis", 0)
        axis += site.rank if axis < 0 else 0
        if axis != site.axis:
            return Skip(
                "channel-axis-mismatch",
                f"{node_label(concat)} joins axis {axis}, the affine acts on axis {site.axis}",
            )
        total = Affine.identity(site.affine.channels)
        for node in chain.elementwise:
            step = elementwise_affine(
                view, node, rank=site.rank, axis=axis, channels=site.affine.channels
            )
            if step is None or isinstance(step, Skip):
                return step or Skip("not-per-channel", f"{node_label(node)} is not per channel")
            total = total.then(step)
        total = total.then(site.affine)
        shapes = ctx.shapes()
        plans: list[Plan] = []
        start = 0
        for slot, name in enumerate(concat.input):
            shape = shapes.get(name)
            width = shape[axis] if shape is not None and len(shape) > axis else None
            if not isinstance(width, int):
                return Skip(
                    "axis-not-proven", f"{node_label(concat)} input {name!r} has no static width"
                )
            part = AffineSite(
                [concat],
                name,
                concat.output[0],
                Affine(total.scale[start : start + width], total.shift[start : start + width]),
                axis,
                site.rank,
                site.is_batchnorm,
                None if site.output_scale is None else site.output_scale[start : start + width],
            )
            start += width
            found = self._fold_part(ctx, part, slot)
            if isinstance(found, Skip):
                return found
            plans.append(found)
        if start != total.channels:
            return Skip(
                "channel-mismatch",
                f"{node_label(concat)} joins {start} channels, the site has {total.channels}",
            )
        edits = [edit for plan in plans for edit in plan.edits]
        edits += splice_out(chain, site, concat.output[0], None)
        return combined_plan(
            plans,
            site,
            pattern=self.name,
            direction="producer (per Concat slice)",
            through=["Concat", *chain.through],
            edits=edits,
            nodes=(*site.nodes, *chain.elementwise, *chain.passes, concat),
        )

    def _fold_part(self, ctx: FoldContext, part: AffineSite, slot: int) -> Plan | Skip:
        """The first plan for one Concat input from the producer patterns for the layer that
        computes it (one walk back), or why none applies."""
        nothing = Skip("no-linear-producer", f"nothing folds {part.input!r}")
        if not self.producers:
            return nothing
        chain = walk_to_linear(ctx.view, part)
        if isinstance(chain, Skip):
            return chain
        if chain.shape_readers:
            return Skip("producer-output-shared", "a tensor on the way is also read for its shape")
        refusal: Skip | None = None
        for pattern in self.by_op.get(chain.linear.op_type, ()):
            found = pattern.fold(ctx, part, chain, into=(part.nodes[0], slot))
            if isinstance(found, Plan):
                return found
            if isinstance(found, Skip):
                refusal = refusal or found
        return refusal or nothing

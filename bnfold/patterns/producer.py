"""Fold a per-channel affine into the linear layer that produces its input.

For ``y = W x + b`` followed by constant per-channel ops and a BN, all composed into one
affine ``s·y + t`` over the layer's output channel axis:

    W' = s ⊙ W   (output-channel slices of W scaled by s)
    b' = s · b + t

Subclasses say where a layer keeps W and b and which weight axis holds its output channels;
this module does the checklist, the composition and the graph edit once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..engine.elementwise import elementwise_affine
from ..engine.foldmath import (
    CANCELLATION_BOUND,
    LOW_PRECISION,
    Affine,
    all_finite,
    cancellation,
    precision_lost,
    round_to,
)
from ..engine.outcomes import Fold, Skip
from ..engine.plan import (
    AddConstant,
    Edit,
    Fresh,
    InsertNode,
    Name,
    RemoveNodes,
    SetConstant,
    SetInput,
    SetOutput,
)
from ..engine.protocol import Answer, FoldContext, NotMine, Plan, Side, Target, node_label
from ..engine.scaled_weights import scaled_constant
from ..engine.sites import AffineSite
from .carriers import carrier_skip
from .chain import Chain
from .layout import trace_axis_back
from .sides import PRODUCER, SPLIT

Slot = tuple[onnx.NodeProto, int]  # a node and one of its input slots


@dataclass
class Layer:
    """What a producer pattern needs to know about one linear node."""

    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None
    channels: int
    output_rank: int | None
    channel_axis: int
    weight_index: int | None = None  # the weight's input slot, when not the pattern's


# A kept shift Add on a rank-4 (N, C, H, W) feature map breaks onnxruntime's NCHWc chain of
# Conv/pool kernels (a constant-broadcast Add is not NCHWc), while a BatchNormalization there
# becomes an NCHWc depthwise Conv: measured slower at level all (benchmarks/fold_shapes.md).
# Kept there unless the deployment profile splits feature maps (``engine.targets``).
NCHW_RANK = 4


class ProducerFold:
    """Base of the producer patterns; subclasses implement ``inspect`` and ``weight_factors``."""

    name = "producer"
    op_type = ""
    side: Side = PRODUCER
    weight_index = 1
    bias_index: int | None = 2

    # ---- what subclasses provide -------------------------------------------------------
    def inspect(self, ctx: FoldContext, node: onnx.NodeProto) -> Layer | Skip:
        raise NotImplementedError

    def weight_factors(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        """Per-slice factors (float64, broadcastable to W) with ``W' = W · factors``."""
        raise NotImplementedError

    def scaled_weight(self, layer: Layer, scale: np.ndarray) -> np.ndarray:
        """``W' = s ⊙ W`` in float64, in memory (a small weight, or one not in a file)."""
        return np.asarray(layer.weight, dtype=np.float64) * self.weight_factors(layer, scale)

    def slot_of_weight(self, layer: Layer) -> int:
        return self.weight_index if layer.weight_index is None else layer.weight_index

    def new_bias(self, layer: Layer, affine: Affine) -> np.ndarray:
        """``b' = s·b + t`` (``t`` alone without a bias)."""
        if layer.bias is None:
            return affine.shift
        return affine.scale * np.asarray(layer.bias, dtype=np.float64).reshape(-1) + affine.shift

    def bias_edits(
        self, layer: Layer, bias: np.ndarray, site: AffineSite, *, direct: bool
    ) -> tuple[list[Edit], Name]:
        """Edits that store ``b'``, and the name of the tensor that now carries ``s·y + t``.

        ``direct``: no op sits between the layer and the site, so the tensor may be given the
        site's output name right away. The default keeps ``b'`` in the layer's bias input.
        """
        assert self.bias_index is not None
        base = tensor_base(layer.node, "bias")
        return [SetConstant(layer.node, self.bias_index, bias, base)], layer.node.output[0]

    # ---- the shared checklist ----------------------------------------------------------
    def __init__(self, *, through_activations: bool = False) -> None:
        # With activations between layer and site, only the non-negative scale moves into
        # the layer; the shift stays behind as one Add ("split").
        self.through_activations = through_activations
        if through_activations:
            self.name = f"{self.name}-split"
            self.side = SPLIT

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return True

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Chain]) -> Answer:
        """The plan for ``site`` into ``target`` (a node of ``op_type``, walked back from it)."""
        return self.fold(ctx, site, target.way)

    def fold(
        self, ctx: FoldContext, site: AffineSite, chain: Chain, *, into: Slot | None = None
    ) -> Answer:
        """The plan for ``site`` into ``chain.linear``, a node of ``op_type``; with ``into`` (a
        node and input slot, e.g. a Concat's), the site's nodes stay: the folded layer's output
        feeds that slot again (``concat_bn``)."""
        layer = self.inspect(ctx, chain.linear)
        if isinstance(layer, Skip):
            return layer
        affine = site.affine
        if layer.channels != affine.channels:
            return Skip(
                "channel-mismatch",
                f"{node_label(layer.node)} has {layer.channels} output channels, the site {affine.channels}",
            )
        axes = _trace_channel_axis(ctx, chain, site.axis)
        if isinstance(axes, Skip):
            return axes
        axis = axes[0] if axes else site.axis
        if axis != layer.channel_axis:
            return Skip(
                "channel-axis-mismatch",
                f"the affine acts on axis {axis} of {node_label(layer.node)}'s output, its channels are on axis "
                f"{layer.channel_axis}",
            )
        moving = affine
        staying_shift: np.ndarray | None = None
        if self.through_activations:
            if not site.has_scale:
                return NotMine("no-gain")  # nothing would move
            moving = Affine(affine.scale, np.zeros(affine.channels))
            staying_shift = affine.shift if site.has_shift else None
            if staying_shift is not None and site.rank is None:
                return Skip("axis-not-proven", f"rank of {site.input!r} is unknown")
        elif not site.is_batchnorm and self.bias_index is None and not site.has_scale:
            return NotMine("no-gain")  # a shift alone into a layer without bias input
        for node, at in zip(chain.passes, axes, strict=True):
            refusal = carrier_skip(ctx.view, node, moving, ctx.opset, at)
            if refusal is not None:
                return refusal
        if (
            staying_shift is not None
            and site.rank == NCHW_RANK
            and not ctx.profile.split_feature_maps
        ):
            return Skip(
                "slower-at-level-all",
                f"the shift would stay as an Add on {node_label(layer.node)}'s 4-D feature "
                "map, which breaks onnxruntime's NCHWc layout at level all (it reorders "
                "around the Add, not around the BN): kept, see benchmarks/fold_shapes.md",
            )
        total = Affine.identity(layer.channels)
        for node in chain.elementwise:
            if layer.output_rank is None:
                return Skip(
                    "axis-not-proven", f"rank of {node_label(layer.node)}'s output is unknown"
                )
            step = elementwise_affine(
                ctx.view,
                node,
                rank=layer.output_rank,
                axis=layer.channel_axis,
                channels=layer.channels,
            )
            if step is None or isinstance(step, Skip):
                return step or Skip(
                    "not-per-channel", f"{node_label(node)} is not a per-channel constant op"
                )
            total = total.then(step)
        return self._plan(ctx, site, chain, layer, total.then(moving), staying_shift, into)

    def _plan(
        self,
        ctx: FoldContext,
        site: AffineSite,
        chain: Chain,
        layer: Layer,
        total: Affine,
        staying_shift: np.ndarray | None,
        into: Slot | None = None,
    ) -> Plan | Skip:
        dtype = layer.weight.dtype
        # A large weight still in its file becomes a recipe, computed while the output is
        # written (bnfold.storage.recipes); the same float64 product and one rounding either way.
        weight = scaled_constant(
            ctx.view,
            layer.node.input[self.slot_of_weight(layer)],
            layer.weight,
            self.weight_factors(layer, total.scale),
        ) or round_to(self.scaled_weight(layer, total.scale), dtype)
        try:
            bias = round_to(self.new_bias(layer, total), dtype)
        except ValueError as exc:
            return Skip(
                "param-shape-mismatch",
                f"bias of {node_label(layer.node)} does not broadcast: {exc}",
            )
        shift = None
        if staying_shift is not None:
            assert site.rank is not None
            shape = (len(staying_shift),) + (1,) * (site.rank - site.axis - 1)
            shift = round_to(staying_shift.reshape(shape), dtype)
        for rounded, what in ((weight, "weight"), (bias, "bias"), (shift, "shift")):
            if rounded is None:
                continue
            if not all_finite(rounded.value):
                return Skip("overflow", f"folded {what} overflows {dtype}")
            if precision_lost(rounded):
                return Skip(
                    "precision-loss",
                    f"rounding the folded {what} to {dtype} costs {rounded.max_rel_error:.1e} "
                    "of its largest value (subnormal or cancelled values)",
                )
        if dtype.name in LOW_PRECISION and site.output_scale is not None and shift is None:
            factor = cancellation(bias.value, site.output_scale)
            if factor > CANCELLATION_BOUND:
                return Skip(
                    "precision-loss",
                    f"the folded bias is {factor:.0f} times the BatchNormalization's output "
                    f"scale: {dtype} rounding of the folded weight would be amplified as much",
                )
        fold = Fold(
            bn=site.label,
            into=node_label(layer.node),
            pattern=self.name,
            direction="producer" if shift is None else "producer (scale), shift kept as Add",
            through=chain.through,
            dtype=str(dtype),
            rounding_error=max(weight.max_rel_error, bias.max_rel_error),
            kind=site.kind,
        )
        edits: list[Edit] = [
            SetConstant(
                layer.node,
                self.slot_of_weight(layer),
                weight.value,
                tensor_base(layer.node, "weight"),
            )
        ]
        direct = not chain.passes and shift is None and into is None
        stored, carrier = self.bias_edits(layer, bias.value, site, direct=direct)
        edits += stored
        if into is not None:
            edits += _splice_into(chain, into, carrier)
        else:
            edits += splice_out(chain, site, carrier, None if shift is None else shift.value)
        return Plan(
            fold,
            [*site.nodes, *chain.elementwise, *chain.passes, *chain.shape_readers, layer.node],
            edits,
            target=layer.node,
            site_output=site.output,
        )


def _trace_channel_axis(ctx: FoldContext, chain: Chain, site_axis: int) -> list[int] | Skip:
    """The site's channel axis at the input of each pass (data order), followed back from the
    site; the first is where it lies on the layer's output."""
    axis = site_axis
    axes: list[int] = []
    if not chain.passes:
        return axes
    shapes = ctx.shapes()
    for node in reversed(chain.passes):
        traced = trace_axis_back(node, axis, shapes)
        if traced is None:
            return Skip(
                "axis-not-proven", f"cannot prove where {node_label(node)} moves the channel axis"
            )
        axis = traced
        axes.insert(0, axis)
    return axes


def splice_out(
    chain: Chain, site: AffineSite, carrier: Name, shift: np.ndarray | None
) -> list[Edit]:
    """Remove the folded constant ops and the site; rewire so the site's output name stays.

    ``carrier`` is the tensor that now holds the folded affine (the layer's output, or that
    of the bias ``Add`` a MatMul needed); the passes, if any, read it again. A shift that
    could not move stays as one ``Add`` in the site's place, named after the site.
    """
    edits: list[Edit] = [
        RemoveNodes((*chain.elementwise, *site.nodes), keep_value_info=(site.output,))
    ]
    removed = {node.output[0] for node in chain.elementwise} | {chain.linear.output[0]}
    for reader in chain.shape_readers:
        for index, name in enumerate(reader.input):
            if name in removed:
                edits.append(SetInput(reader, index, site.output))
    last: onnx.NodeProto | None = None
    last_output: Name = carrier
    if chain.passes:
        edits += _relink_passes(chain, carrier)
        last = chain.passes[-1]
        last_output = last.output[0]
    if shift is not None:
        assert last is not None  # a shift stays behind only when activations sit between
        shift_name = Fresh(f"{site.nodes[-1].name or site.output}_shift")
        edits.append(AddConstant(shift_name, shift, anchor=last))
        edits.append(
            InsertNode(
                "Add",
                (last_output, shift_name),
                (site.output,),
                Fresh(site.nodes[-1].name or "shift"),
                anchor=last,
            )
        )
    elif last_output != site.output:
        node = last if last is not None else chain.linear
        edits.append(SetOutput(node, 0, site.output))
    return edits


def _splice_into(chain: Chain, into: Slot, carrier: Name) -> list[Edit]:
    """Remove the folded constant ops; the passes, or else input ``into`` itself, read
    ``carrier`` (the layer's output, or its new bias Add's) again."""
    edits: list[Edit] = [RemoveNodes(tuple(chain.elementwise))] if chain.elementwise else []
    node, slot = into
    last: Name = carrier
    if chain.passes:
        edits += _relink_passes(chain, carrier)
        last = chain.passes[-1].output[0]
    if last != node.input[slot]:  # constant ops that sat after a no-op are gone
        edits.append(SetInput(node, slot, last))
    return edits


def _relink_passes(chain: Chain, carrier: Name) -> list[Edit]:
    """The passes read ``carrier`` and then each other, in data order, as one chain again.

    The folded constant ops may sit between passes (``Identity → Add → Identity``): once they
    are removed, a pass whose data input was such an op's output reads the pass before it.
    """
    edits: list[Edit] = [SetInput(chain.passes[0], 0, carrier)]
    for before, node in zip(chain.passes, chain.passes[1:], strict=False):
        if node.input[0] != before.output[0]:
            edits.append(SetInput(node, 0, before.output[0]))
    return edits


def tensor_base(node: onnx.NodeProto, what: str) -> str:
    """Base name for a tensor bnfold creates for ``node`` (made unique by the editor)."""
    return f"{node.name or node.output[0]}_{what}_bnfold"

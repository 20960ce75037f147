"""Fold a per-channel affine into the linear layer that reads it (BN *before* a layer).

For ``z = W·(s ⊙ x + t) + b`` with the affine on W's input axis K:

    W' = W with its input-channel slices scaled by s,     b' = b + W·t

- MatMul ``x[…, K] · W[K, N]``: ``W'[k, n] = s[k]·W[k, n]``, ``b' = b + t·W`` (the bias is the
  constant ``Add`` after the MatMul, or a new one; under a profile that asks, also the Add
  behind no-op Casts, ``MatMul → Cast → Add(b)`` as Keras 3 on torch exports a Dense). With
  the constant on the left, ``W[M, K] · x[…, K, N]`` and the affine on x's axis −2:
  ``W'[m, k] = W[m, k]·s[k]``, ``b'[m] = b[m] + (W·t)[m]``, added per row (shape ``[M, 1]``).
- Gemm ``α·A'·B' + β·C``: the affine acts on A's K axis; B's K axis is scaled and
  ``C' = β·C + α·(t·B')``, written with ``β = 1``.
- Conv: ``W'[o, j] = s[g(o)·C/g + j]·W[o, j]``, ``b'[o] = b[o] + Σ W[o, j, k…]·t[g(o)·C/g + j]``.
  Exact only when no input position is padding: padding happens *after* the affine in the
  original, so a padded border sees 0 where the fold would see ``t``. With padding the fold
  is done only when ``t = 0``; otherwise it is refused (``padded-consumer``).

On the way the affine may pass ops it commutes with (``carriers``), and reshapes that merge
the channel axis with static axes after it; then each channel's (s, t) repeats over the
features it became (``Flatten`` of ``[N, C, H, W]``: ``H·W`` features per channel).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import onnx

from ..engine.elementwise import elementwise_affine
from ..engine.foldmath import (
    LOW_PRECISION,
    Affine,
    Rounded,
    all_finite,
    along_axis,
    round_to,
    scale_along,
)
from ..engine.graph import GraphView, float_attribute, int_attribute
from ..engine.outcomes import Fold, Skip
from ..engine.plan import (
    AddConstant,
    Edit,
    Fresh,
    InsertNode,
    RemoveNodes,
    SetConstant,
    SetFloatAttribute,
    SetInput,
    SetOutput,
)
from ..engine.protocol import Answer, FoldContext, NotMine, Plan, Target, node_label
from ..engine.scaled_weights import scaled_constant
from ..engine.sites import AffineSite
from .carriers import has_padding
from .consumer_walk import Branch, consumer_slots
from .layer_checks import constant_weight, optional_bias
from .optable import NOOP, role
from .producer import tensor_base
from .registry import CONSUMER, register
from .sides import CONSUMER as CONSUMER_SIDE


@dataclass(frozen=True)
class BiasChange:
    """How a consumer fold stores ``b' = b + W·t``: the rounded bias (None when nothing is
    added), the ``edits`` that store it, whether they add a node, and further nodes they
    rewrite (a bias Add): no other fold of the same round may read those, since it would see
    their old constants."""

    value: Rounded | None
    edits: tuple[Edit, ...] = ()
    adds_node: bool = False
    rewrites: tuple[onnx.NodeProto, ...] = ()


class ConsumerFold:
    """Base of the consumer patterns: the gain rule and the rewiring (``plan`` per layer)."""

    name = "consumer"
    op_type = ""
    side = CONSUMER_SIDE

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return True

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Branch]) -> Answer:
        branch = target.way
        return self.plan(ctx, site, branch.consumer, branch.passes, branch.axis, branch.affine)

    def plan(
        self,
        ctx: FoldContext,
        site: AffineSite,
        consumer: onnx.NodeProto,
        passes: list[onnx.NodeProto],
        axis: int,
        affine: Affine,
    ) -> Answer:
        raise NotImplementedError

    def finish(
        self,
        site: AffineSite,
        consumer: onnx.NodeProto,
        passes: list[onnx.NodeProto],
        weight: Rounded,
        bias: BiasChange,
        *,
        weight_slot: int = 1,
    ) -> Answer:
        """Check the rounded tensors and the gain; build the plan."""
        if not site.is_batchnorm and bias.adds_node and len(site.nodes) <= 1:
            return NotMine("no-gain")  # moving one constant op to a new one
        dtype = weight.value.dtype
        if dtype.name in LOW_PRECISION:
            # z = (W·s)·x + (b + W·t) reads the un-normalised x: its partial sums can overflow
            # float16 where the original's normalised ones did not. Nothing here bounds x.
            return Skip(
                "low-precision-consumer",
                f"{node_label(consumer)} computes in {dtype}: it would read the activations "
                "before normalisation, whose range is not proven safe",
            )
        for rounded in (weight, bias.value):
            if rounded is not None and not all_finite(rounded.value):
                return Skip(
                    "overflow",
                    f"folded weights of {node_label(consumer)} overflow {weight.value.dtype}",
                )
        fold = Fold(
            bn=site.label,
            into=node_label(consumer),
            pattern=self.name,
            direction="consumer",
            through=[node.op_type for node in passes],
            dtype=str(weight.value.dtype),
            rounding_error=max(
                weight.max_rel_error, bias.value.max_rel_error if bias.value else 0.0
            ),
            kind=site.kind,
        )
        reader = passes[0] if passes else consumer
        edits: list[Edit] = [
            SetConstant(consumer, weight_slot, weight.value, tensor_base(consumer, "weight")),
            *bias.edits,
            *(
                SetInput(reader, index, site.input)
                for index, name in enumerate(reader.input)
                if name == site.output
            ),
            RemoveNodes(tuple(site.nodes)),
        ]
        return Plan(
            fold,
            [*site.nodes, *passes, consumer, *bias.rewrites],
            edits,
            target=consumer,
            site_output=site.output,
        )


@register(CONSUMER)
class MatMulConsumer(ConsumerFold):
    name = "bn-matmul"
    op_type = "MatMul"

    def plan(self, ctx, site, consumer, passes, axis, affine):
        view = ctx.view
        # x @ W: the affine is on x's last axis (K), W's rows are scaled, the bias is a row.
        # W @ x (constant on the left): on x's axis −2 (K), W's columns, the bias a column.
        # The slot the walk came in by decides (the same rule), not a name: after a Split the
        # data is whichever of its outputs this MatMul reads.
        left = consumer_slots(ctx, consumer) == (1,)
        data = consumer.input[1 if left else 0]
        w_slot, k_axis = (0, 1) if left else (1, 0)
        weight = constant_weight(view, consumer, w_slot, "weight")
        if isinstance(weight, Skip):
            return weight
        if weight.ndim != 2:
            return Skip(
                "unsupported-weight-rank",
                f"{node_label(consumer)} weight has rank {weight.ndim}, not 2",
            )
        shape = ctx.shapes().get(data)
        if shape is None:
            return Skip("axis-not-proven", f"rank of {node_label(consumer)}'s input is unknown")
        reduced = len(shape) - 2 if left else len(shape) - 1
        if axis != reduced or reduced < 0:
            return Skip(
                "channel-axis-mismatch",
                f"the affine acts on axis {axis}, {node_label(consumer)} reduces axis {reduced}",
            )
        if weight.shape[k_axis] != affine.channels:
            return Skip(
                "channel-mismatch",
                f"{node_label(consumer)} reads {weight.shape[k_axis]} features, the affine has {affine.channels}",
            )
        dtype = weight.dtype
        new_weight = scaled_constant(
            view, consumer.input[w_slot], weight, along_axis(affine.scale, k_axis, 2)
        ) or round_to(scale_along(weight, affine.scale, k_axis), dtype)
        w64 = np.asarray(weight, dtype=np.float64)
        delta = w64 @ affine.shift if left else affine.shift @ w64
        if left:
            delta = delta.reshape(-1, 1)  # one value per output row, broadcast over columns
        rank = max(len(shape), 2)
        out_axis, out_channels = (
            (rank - 2, weight.shape[0]) if left else (rank - 1, weight.shape[1])
        )
        bias_add = _bias_add_after(ctx, consumer, rank=rank, axis=out_axis, channels=out_channels)
        finish = functools.partial(
            self.finish, site, consumer, passes, new_weight, weight_slot=w_slot
        )
        if bias_add is not None:
            add, index, old = bias_add
            # Broadcast, not flatten: a bias per feature keeps its shape; a scalar (or [1])
            # bias grows to one value per feature, which the Add's output already has, so
            # the Add's output keeps its shape as long as the bias does not outrank it.
            bias = round_to(np.asarray(old, np.float64) + delta, dtype)
            if bias.value.ndim > rank:
                return Skip(
                    "param-shape-mismatch",
                    f"bias {list(np.shape(old))} of {node_label(add)} has rank {np.ndim(old)}, "
                    f"more than its output's {rank}",
                )
            stored = SetConstant(add, index, bias.value, tensor_base(add, "bias"))
            return finish(BiasChange(bias, (stored,), rewrites=(add,)))
        if not np.any(delta):
            return finish(BiasChange(None))
        bias = round_to(delta, dtype)
        output = consumer.output[0]
        inner = Fresh(f"{output}_unbiased")
        bias_name = Fresh(tensor_base(consumer, "bias"))
        edits = (
            SetOutput(consumer, 0, inner, like=output),
            AddConstant(bias_name, bias.value, anchor=consumer),
            InsertNode("Add", (inner, bias_name), (output,), Fresh(f"{site.label}_bias"), consumer),
        )
        return finish(BiasChange(bias, edits, adds_node=True))


def _bias_add_after(
    ctx: FoldContext, node: onnx.NodeProto, *, rank: int, axis: int, channels: int
) -> tuple[onnx.NodeProto, int, np.ndarray] | None:
    """The constant ``Add`` that alone reads ``node``'s output and adds a bias per feature on
    ``axis``, with its bias operand.

    Under a profile with ``bias_across_noop_casts`` the Add may sit behind Casts to the type
    their input already has, each the only reader of what it reads (no graph output): such a
    Cast is the identity, so ``b + W·t`` there is the same function as a new Add before it,
    one node fewer (``engine.targets``).
    """
    view = ctx.view
    output = node.output[0]
    add = view.only_consumer(output)
    while ctx.profile.bias_across_noop_casts and add is not None and _is_noop_cast(view, add):
        output = add.output[0]
        add = view.only_consumer(output)
    if add is None or add.op_type != "Add" or view.is_graph_output(output):
        return None
    step = elementwise_affine(view, add, rank=rank, axis=axis, channels=channels)
    if step is None or isinstance(step, Skip):
        return None
    index = 1 if add.input[0] == output else 0
    value = view.constant_value(add.input[index])
    return (add, index, value) if value is not None else None


def _is_noop_cast(view: GraphView, node: onnx.NodeProto) -> bool:
    """``node`` is a ``Cast`` to the element type its input already has (an exporter's)."""
    return node.op_type == "Cast" and role(node, view.elem_type(node.input[0])) == NOOP


@register(CONSUMER)
class GemmConsumer(ConsumerFold):
    name = "bn-gemm"
    op_type = "Gemm"

    def plan(self, ctx, site, consumer, passes, axis, affine):
        if ctx.opset < 7:
            return Skip("unsupported-opset", f"Gemm-{ctx.opset} broadcasting rules are not handled")
        weight = constant_weight(ctx.view, consumer, 1, "B")
        if isinstance(weight, Skip):
            return weight
        bias = optional_bias(ctx.view, consumer, 2)
        if isinstance(bias, Skip):
            return bias
        k_axis_a = 0 if int_attribute(consumer, "transA", 0) else 1
        if axis != k_axis_a:
            return Skip(
                "channel-axis-mismatch",
                f"the affine acts on axis {axis} of A, Gemm reduces axis {k_axis_a}",
            )
        trans_b = int_attribute(consumer, "transB", 0)
        k_axis_b = 1 if trans_b else 0
        if weight.ndim != 2 or weight.shape[k_axis_b] != affine.channels:
            return Skip(
                "channel-mismatch",
                f"{node_label(consumer)} B {list(weight.shape)} vs {affine.channels} channels",
            )
        dtype = weight.dtype
        new_weight = scaled_constant(
            ctx.view, consumer.input[1], weight, along_axis(affine.scale, k_axis_b, 2)
        ) or round_to(scale_along(weight, affine.scale, k_axis_b), dtype)
        b_kn = np.asarray(weight, np.float64).T if trans_b else np.asarray(weight, np.float64)
        alpha = float_attribute(consumer, "alpha", 1.0)
        beta = float_attribute(consumer, "beta", 1.0)
        delta = alpha * (affine.shift @ b_kn)
        old = np.zeros(1) if bias is None else beta * np.asarray(bias, np.float64)
        new_bias = round_to(old + delta, dtype)
        edits = (
            SetConstant(consumer, 2, new_bias.value, tensor_base(consumer, "bias")),
            SetFloatAttribute(consumer, "beta", 1.0),
        )
        return self.finish(site, consumer, passes, new_weight, BiasChange(new_bias, edits))


@register(CONSUMER)
class ConvConsumer(ConsumerFold):
    name = "bn-conv"
    op_type = "Conv"

    def plan(self, ctx, site, consumer, passes, axis, affine):
        weight = constant_weight(ctx.view, consumer, 1, "weight")
        if isinstance(weight, Skip):
            return weight
        bias = optional_bias(ctx.view, consumer, 2)
        if isinstance(bias, Skip):
            return bias
        if axis != 1:
            return Skip(
                "channel-axis-mismatch",
                f"the affine acts on axis {axis}, Conv's channels are axis 1",
            )
        group = int_attribute(consumer, "group", 1)
        in_per_group = weight.shape[1]
        if in_per_group * group != affine.channels or weight.shape[0] % group:
            return Skip(
                "channel-mismatch",
                f"{node_label(consumer)} reads {in_per_group * group} channels, the affine has {affine.channels}",
            )
        if np.any(affine.shift) and has_padding(consumer, ctx.view):
            return Skip(
                "padded-consumer",
                f"{node_label(consumer)} pads its input: the border would see the shift",
            )
        out_per_group = weight.shape[0] // group
        # input channel read by weight slice [o, j]: g(o)·(C/g) + j
        index = (np.arange(weight.shape[0]) // out_per_group)[:, None] * in_per_group + np.arange(
            in_per_group
        )[None, :]
        spatial = (1,) * (weight.ndim - 2)
        w64 = np.asarray(weight, np.float64)
        dtype = weight.dtype
        factors = affine.scale[index].reshape(index.shape + spatial)
        new_weight = scaled_constant(ctx.view, consumer.input[1], weight, factors) or round_to(
            w64 * factors, dtype
        )
        delta = np.sum(
            w64 * affine.shift[index].reshape(index.shape + spatial),
            axis=tuple(range(1, weight.ndim)),
        )
        old = (
            np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64).reshape(-1)
        )
        new_bias = round_to(old + delta, dtype)
        stored = SetConstant(consumer, 2, new_bias.value, tensor_base(consumer, "bias"))
        return self.finish(site, consumer, passes, new_weight, BiasChange(new_bias, (stored,)))

"""The weight-range change of a fold (``weight_stats``), read off its plan: which weights it
rewrites in the layers it goes into, and along which axis each holds its output channels."""

from __future__ import annotations

import numpy as np
import onnx

from ..storage.recipes import ScaledTensor
from .graph import GraphView, int_attribute, node_label
from .plan import Plan, SetConstant
from .weight_stats import WeightRange, by_channel, channel_stats


def weight_range_changes(view: GraphView, plan: Plan) -> list[WeightRange]:
    """The range change of every float weight ``plan`` rewrites in the layers it folds into
    (not a quantized layer's: its weight is a DequantizeLinear's integer input)."""
    targets = [node for node in (plan.target, *plan.more_targets) if node is not None]
    changes = []
    for edit in plan.edits:
        if not isinstance(edit, SetConstant) or not any(edit.node is t for t in targets):
            continue
        axis = output_axis(edit.node, edit.slot)
        if axis is None:
            continue  # not a weight: a bias, maybe a new input (a Conv without one)
        before = view.constant_value(edit.node.input[edit.slot])
        if before is None or before.ndim < 2:
            continue
        after = edit.value.evaluate() if isinstance(edit.value, ScaledTensor) else edit.value
        group = int_attribute(edit.node, "group", 1) if edit.node.op_type == "ConvTranspose" else 1
        changes.append(
            WeightRange(
                node_label(edit.node),
                edit.node.input[edit.slot],
                axis % before.ndim,
                channel_stats(by_channel(before, axis, group)),
                channel_stats(by_channel(np.asarray(after), axis, group)),
            )
        )
    return changes


def output_axis(node: onnx.NodeProto, slot: int) -> int | None:
    """The axis of ``node``'s input ``slot`` that holds its output channels, for a weight
    slot of a linear layer; None for any other input."""
    if node.op_type == "Conv" and slot == 1:
        return 0  # [C_out, C_in/group, k…]
    if node.op_type == "ConvTranspose" and slot == 1:
        return 1  # [C_in, C_out/group, k…]
    if node.op_type == "Gemm" and slot == 1:
        return 0 if int_attribute(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        return -1 if slot == 1 else -2  # x @ W: W's columns; W @ x: W's rows
    return None

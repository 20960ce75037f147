"""When an affine may pass through an op that sits between it and the layer it folds into.

``f(s·x + t) = s·f(x) + t`` must hold per channel:

- linear, channel-preserving ops (GlobalAveragePool, Identity, Dropout at inference, layout
  ops): always; AveragePool: when every window's weights sum to 1, i.e. no padding or
  ``count_include_pad=0`` (else only for ``t = 0``);
- MaxPool, GlobalMaxPool: for ``s >= 0`` (max commutes with increasing maps; padding is −∞);
- Relu, LeakyRelu: ``f(s·x) = s·f(x)`` for ``s >= 0``, but no shift passes (callers move
  only the scale through them).
"""

from __future__ import annotations

import numpy as np
import onnx

from .constants import dropout_is_inference
from .foldmath import Affine
from .graph import GraphView, attribute, int_attribute
from .outcomes import Skip


def carrier_skip(view: GraphView, node: onnx.NodeProto, affine: Affine, opset: int) -> Skip | None:
    """Why ``affine`` cannot pass through ``node`` (None when it can)."""
    op = node.op_type
    negative = bool(np.any(affine.scale < 0))
    shifted = bool(np.any(affine.shift != 0))
    if op in ("MaxPool", "GlobalMaxPool", "Relu", "LeakyRelu") and negative:
        return Skip("negative-scale", f"a negative scale does not commute with {op}")
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return Skip("unsupported-attribute", "MaxPool's Indices output is used")
    if (
        op == "AveragePool"
        and shifted
        and has_padding(node)
        and int_attribute(node, "count_include_pad", 0)
    ):
        return Skip("padded-average", "AveragePool averages padding zeros (count_include_pad=1)")
    if op == "Dropout" and not dropout_is_inference(view, node):
        return Skip("training-mode", "Dropout runs in training mode")
    return None


def has_padding(node: onnx.NodeProto) -> bool:
    """Whether a Conv/pool node pads its input (explicit pads or SAME auto-padding)."""
    pads = attribute(node, "pads")
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    padded = isinstance(pads, list) and any(pads)
    return auto in ("SAME_UPPER", "SAME_LOWER") or padded

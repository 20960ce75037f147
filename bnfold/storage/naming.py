"""How reports and messages name a node: one rule, so a fold report and verify name the same
node the same way."""

from __future__ import annotations

import onnx


def node_label(node: onnx.NodeProto) -> str:
    """A node's name, or ``<OpType:first-output>`` for unnamed nodes (reports, messages)."""
    return node.name or f"<{node.op_type}:{node.output[0] if node.output else ''}>"

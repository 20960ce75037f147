"""The one table of ops an affine may pass on its way to the layer it folds into.

Which ops a fold *targets* is not listed here: each pattern says so (``op_type``, ``side``)
and ``bnfold.patterns.target_ops`` collects them from the registry, so a new pattern is
matched as soon as it is registered. This table says how every other op relates to a per-channel
affine ``s·x + t`` that reaches it (``f`` is the op):

- ``NOOP``: ``f(x) = x`` here (``Identity``, ``Cast`` to the type it already has, ``Dropout``
  at inference): everything passes, every axis stays where it is;
- ``LINEAR``: linear and channel-preserving, ``f(s·x + t) = s·f(x) + t``
  (``GlobalAveragePool``; ``AveragePool`` when its windows' weights sum to 1);
- ``MAX``: ``f(s·x + t) = s·f(x) + t`` for ``s >= 0`` (max commutes with increasing maps);
- ``ACTIVATION``: ``f(s·x) = s·f(x)`` for ``s >= 0`` only; no shift passes;
- ``LAYOUT``: moves or merges axes (``Transpose``, ``Reshape``, ``Flatten``, ``Squeeze``,
  ``Unsqueeze``); the channel axis is traced from shapes (``layout``);
- ``SLICE``: keeps a part of some axes (``Slice``); passes when the channel axis is not one
  of them (a per-channel affine commutes with slicing other axes).

Pooling ops keep only axis 1 as a per-channel axis (``POOLING``).
"""

from __future__ import annotations

import onnx

NOOP, LINEAR, MAX, ACTIVATION, LAYOUT, SLICE = (
    "noop",
    "linear",
    "max",
    "activation",
    "layout",
    "slice",
)

ROLES: dict[str, str] = {
    "Identity": NOOP,
    "Cast": NOOP,  # only to the type it already has: see ``role``
    "Dropout": NOOP,  # only at inference: ``carriers.carrier_skip`` checks
    "GlobalAveragePool": LINEAR,
    "AveragePool": LINEAR,
    "MaxPool": MAX,
    "GlobalMaxPool": MAX,
    "Relu": ACTIVATION,
    "LeakyRelu": ACTIVATION,
    "Transpose": LAYOUT,
    "Reshape": LAYOUT,
    "Flatten": LAYOUT,
    "Squeeze": LAYOUT,
    "Unsqueeze": LAYOUT,
    "Slice": SLICE,
}

POOLING = frozenset({"GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool"})


def role(node: onnx.NodeProto, elem_type: int | None = None) -> str | None:
    """The role of ``node`` in the table, or None when no affine passes it.

    ``elem_type``: the element type of the node's input, when known; a ``Cast`` is a no-op
    only when it casts to that same type (an exporter's float→float Cast).
    """
    if node.domain not in ("", "ai.onnx"):
        return None
    found = ROLES.get(node.op_type)
    if node.op_type == "Cast":
        target = next((a.i for a in node.attribute if a.name == "to"), None)
        if elem_type is None or target != elem_type:
            return None
    return found


def passes(
    node: onnx.NodeProto, elem_type: int | None = None, *, through_activations: bool = True
) -> bool:
    """Whether an affine may pass ``node`` at all (the carrier checks come after)."""
    found = role(node, elem_type)
    if found is None:
        return False
    return through_activations or found != ACTIVATION

"""Weak evidence: graph outputs that cannot show a difference for the inputs used.

A comparison only proves something if the compared values move when the model changes. On
random inputs they often do not:

- **saturated**: a probability-like output (produced by Softmax/Sigmoid/HardSigmoid through
  layout ops, or every value in [0, 1]) whose elements sit within ``atol`` of 0 or 1. There
  the slope is below the tolerance: ``d sigmoid(z) = v (1 - v) dz``, so a 1 % error of the
  logit moves ``v`` by ~``0.01 |z| v (1 - v)``, under ``atol`` once ``min(v, 1 - v) < atol``.
  Weak when at least ``SATURATED_SHARE`` of all elements (over every input set) are.
- **constant**: every element of every input set is the same value, or (two input sets or
  more) every input set gives the same array: the output does not depend on the inputs tried.
- **nonfinite**: no element of any input set is finite (all NaN or Inf): the comparison only
  checks that the candidate is as broken, "worst error 0" proves nothing.
- **integer** / **bool**: an integer or boolean output (an ArgMax label, a ``Greater``
  threshold) moves only when an error crosses a decision boundary: a 1 % logit error usually
  leaves every label as it was.
- **same argmax**: a probability-like output of rank <= 2 (batch x classes) where every row of
  every input set has the same argmax (at least two rows): the inputs do not exercise the
  classifier.

Sites (``sites.py``) are not judged here: they sit before the saturating op. A weak output
fails the run as inconclusive only where a difference between the models reaches it past no
compared site (``sites.SitePlan.uncovered``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..runtime.specs import is_floating
from .compare import plain_number, tolerance_for

SATURATED_SHARE = 0.99
_PROBABILITY_OPS = frozenset({"Softmax", "Sigmoid", "HardSigmoid"})
_TRANSPARENT = frozenset(
    {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "Dropout"}
)


@dataclass
class Weakness:
    """Why one output is weak evidence (``kind``: saturated | constant | nonfinite | integer |
    bool | same-argmax)."""

    output: str
    kind: str
    message: str
    share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "kind": self.kind,
            "message": self.message,
            "share": self.share,
        }


def _probability_producers(model: onnx.ModelProto) -> set[str]:
    """Graph outputs whose value comes from a Softmax/Sigmoid through layout-only ops."""
    producer = {out: node for node in model.graph.node for out in node.output if out}
    result = set()
    for vi in model.graph.output:
        name, steps = vi.name, 0
        while name in producer and steps < 32:
            node = producer[name]
            if node.op_type in _PROBABILITY_OPS:
                result.add(vi.name)
                break
            if node.op_type not in _TRANSPARENT or not node.input:
                break
            name, steps = node.input[0], steps + 1
    return result


def weak_outputs(
    model: onnx.ModelProto,
    reference_runs: list[dict[str, Any]],
    atol: float | None = None,
    input_sets: list[dict[str, Any]] | None = None,
) -> dict[str, Weakness]:
    """``{output: Weakness}`` for the graph outputs the reference values say are weak evidence.

    ``input_sets``: the inputs of the runs; an output the same in every run is weak only when
    the inputs differed (None: assume they did)."""
    if not reference_runs:
        return {}
    varied = input_sets is None or any(
        not all(np.array_equal(np.asarray(feeds[k]), np.asarray(first[k])) for k in first)
        for first in input_sets[:1]
        for feeds in input_sets[1:]
    )
    probabilities = _probability_producers(model)
    result: dict[str, Weakness] = {}
    for name in reference_runs[0]:
        values = [run.get(name) for run in reference_runs]
        if any(v is None or isinstance(v, list) for v in values):
            continue
        arrays = [np.asarray(v) for v in values]
        weakness = _judge(name, arrays if varied else arrays[:1], name in probabilities, atol)
        if weakness is not None:
            result[name] = weakness
    return result


def _judge(
    name: str, arrays: list[np.ndarray], from_probability_op: bool, atol: float | None
) -> Weakness | None:
    total = sum(a.size for a in arrays)
    if total == 0:
        return Weakness(name, "constant", f"output `{name}` is empty: it cannot show a difference")
    first = arrays[0].flat[0]
    same = all(np.array_equal(a, np.full(a.shape, first, dtype=a.dtype)) for a in arrays)
    if same and (total > 1 or len(arrays) > 1):
        return Weakness(
            name,
            "constant",
            f"output `{name}` is {plain_number(first)} in every element of every input set: it cannot show a difference",
            1.0,
        )
    if len(arrays) > 1 and all(np.array_equal(arrays[0], a, equal_nan=_nan_ok(a)) for a in arrays):
        return Weakness(
            name,
            "constant",
            f"output `{name}` is the same in all {len(arrays)} input sets: it does not depend on"
            " the inputs tried, so it cannot show a difference",
            1.0,
        )
    kind = arrays[0].dtype.kind
    if kind in "iub":
        what = "bool" if kind == "b" else "integer"
        return Weakness(
            name,
            what,
            f"output `{name}` is {arrays[0].dtype.name} (a label or threshold): it changes only"
            " when an error crosses a decision boundary, so a small error rarely shows",
            1.0,
        )
    if not is_floating(arrays[0].dtype):
        return None
    if not any(np.isfinite(a).any() for a in arrays):
        return Weakness(
            name,
            "nonfinite",
            f"output `{name}` has no finite element (all NaN or Inf) in any input set: it cannot"
            " show a difference",
            1.0,
        )
    floats = [a.astype(np.float64) for a in arrays]
    finite = [f[np.isfinite(f)] for f in floats]
    in_unit = all(f.size == 0 or (f.min() >= 0.0 and f.max() <= 1.0) for f in finite)
    if not (from_probability_op or in_unit):
        return None
    tol = tolerance_for(arrays[0].dtype, atol, None)[0]
    saturated = sum(
        int(np.count_nonzero(np.minimum(np.abs(f), np.abs(1.0 - f)) <= tol)) for f in floats
    )
    share = saturated / total
    if share >= SATURATED_SHARE:
        return Weakness(
            name,
            "saturated",
            f"output `{name}` is saturated (within {tol:g} of 0 or 1) in {share:.0%} of elements:"
            " it cannot show a difference",
            share,
        )
    return _same_argmax(name, floats)


def _nan_ok(array: np.ndarray) -> bool:
    return array.dtype.kind in "fc"


def _same_argmax(name: str, floats: list[np.ndarray]) -> Weakness | None:
    if floats[0].ndim == 0 or floats[0].ndim > 2 or floats[0].shape[-1] < 2:
        return None
    rows = np.concatenate([np.argmax(f.reshape(-1, f.shape[-1]), axis=-1) for f in floats])
    if rows.size >= 2 and (rows == rows[0]).all():
        return Weakness(
            name,
            "same-argmax",
            f"output `{name}` has the same argmax ({int(rows[0])}) for all {rows.size} rows of every"
            " input set: the inputs do not exercise it",
            1.0,
        )
    return None

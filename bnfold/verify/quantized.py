"""Quantized tensors judged in quantization steps (issue 24).

In a QDQ model a fold of BatchNormalization scales the weight's DequantizeLinear scale and
quantizes the int32 bias again at its new scale ``x_scale * w_scale'``: the bias is rounded
once more, and so is every activation a QuantizeLinear rounds downstream. A correct fold can
therefore move an element by one whole step of the tensor's scale wherever the float value sat
near a rounding boundary, and so does onnxruntime's own switch from DQ -> float Conv -> Q to
``QLinearConv`` (integer accumulation, its own requantization). An absolute tolerance cannot
judge that: a step is 0.05 at one scale and 1 (an int8 label) at another.

**Which tensors** (``quant_grids``; constant scale and zero point only):

- *quantized*: produced by ``QuantizeLinear`` (an integer tensor): steps are ``|cand - ref|``;
- *dequantized*: a float tensor produced by ``DequantizeLinear``: steps are
  ``round(|cand - ref| / scale)``;
- *before-quantize*: a float tensor that reaches a ``QuantizeLinear`` directly or through
  ``Relu``/``Clip``/``Identity``/``MaxPool`` alone (a fold site before the activation's Q):
  both sides are quantized with that Q's scale, zero point and type, and the steps are the
  difference of the two integers: what the Q downstream sees.

A per-channel scale is broadcast along the Q/DQ ``axis``.

**Verdict** (``judge_in_steps``): a tensor passes when no element moved by more than
``MAX_STEPS`` (1) and at most ``SHARE_BOUND`` of its elements moved at all. The bound is
measured, on ``tests/builders/qdq_judge.py`` (int8 per-channel Conv + int32 bias -> BN -> Relu
-> uint8 Q -> Conv -> int8 Q, 8 x 12 x 12 output, 3 random input sets, onnxruntime 1.31 CPU,
``disable`` and ``all``): the exact fold moves 0-0.17 % of the int8 output (at most 1 step);
one channel's weight scale x 1.05 moves 27-33 % of it, by up to 4 steps. ``SHARE_BOUND = 1 %``
sits ~6x above the exact fold and ~27x below that corruption; the step limit alone already
catches it.

**Across layers** (``local.py``). Each layer re-quantizes what the previous one moved, so an
exact fold's one-step moves spread and grow downstream (the 4-layer 64-channel model: 0.03 % of
layer 0 by 1 step, 7 % of the output by up to 3 steps) and the verdict above, applied end to
end, rejects it. On CPU every quantized tensor is therefore also judged *locally*: the region
that computes it from the nearest ``QuantizeLinear`` outputs (or graph inputs), cut out of each
model and fed the original's integers, judged by the same verdict. A float site or output
downstream of them is judged locally the same way, by the float rule. A tensor all of whose
upstream regions were judged so (*covered*) is decided by those local verdicts alone (its end
to end moves are reported); anything else keeps the end-to-end verdict.

**Same level.** For quantized tensors the reference is the original at the candidate's own
optimization level (CPU): onnxruntime's kernel choice (``QLinearConv`` at ``basic`` and above)
then acts on both, and what remains is the fold's. How far the kernel choice alone moves the
original (original at the level against original at ``disable``) is measured separately
(``level_effect``) and reported, never judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..storage.lazyio import tensor_array
from .compare import OutputComparison, StepJudgement, plain_number

MAX_STEPS = 1
SHARE_BOUND = 0.01
_PASS_THROUGH = frozenset({"Relu", "Clip", "Identity", "MaxPool"})
_INTEGER_RANGES = {
    "uint8": (0, 255),
    "int8": (-128, 127),
    "uint16": (0, 65535),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class QuantGrid:
    """How one tensor is quantized: ``kind`` (quantized | dequantized | before-quantize),
    the Q/DQ ``node`` the scale comes from, ``scale``/``zero_point`` and the ``axis`` of a
    per-channel scale, and the integer type (``qtype``)."""

    name: str
    kind: str
    node: str
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    qtype: str

    def describe(self) -> str:
        scale = self.scale.reshape(-1)
        where = (
            f"scale {float(scale[0]):.4g}"
            if scale.size == 1
            else f"per-channel scale ({scale.size} along axis {self.axis})"
        )
        return f"{self.kind}, {where} of `{self.node}`"

    def to_dict(self) -> dict[str, Any]:
        scale = self.scale.reshape(-1)
        return {
            "kind": self.kind,
            "node": self.node,
            "qtype": self.qtype,
            "axis": self.axis,
            "channels": int(scale.size),
            "scale_min": float(scale.min()),
            "scale_max": float(scale.max()),
        }

    def _along(self, values: np.ndarray, ndim: int) -> np.ndarray:
        flat = values.reshape(-1).astype(np.float64)
        if flat.size == 1 or ndim == 0:
            return flat[:1].reshape(()) if flat.size == 1 else flat
        shape = [1] * ndim
        shape[self.axis % ndim] = flat.size
        return flat.reshape(shape)

    def steps(self, reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Per element, how many steps of the scale ``candidate`` is from ``reference``."""
        if self.kind == "quantized":
            return np.abs(candidate.astype(np.int64) - reference.astype(np.int64))
        scale = self._along(self.scale, reference.ndim)
        if self.kind == "dequantized":
            diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
            return np.rint(diff / scale).astype(np.int64)
        zero = self._along(self.zero_point, reference.ndim)
        low, high = _INTEGER_RANGES.get(self.qtype, (-(2**31), 2**31 - 1))

        def quantize(values: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(values.astype(np.float64) / scale) + zero, low, high)

        return np.abs(quantize(candidate) - quantize(reference)).astype(np.int64)


def _constants(model: onnx.ModelProto) -> dict[str, Any]:
    """Initializers and ``Constant`` outputs of the top-level graph, read on demand."""
    found: dict[str, Any] = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    found[node.output[0]] = attribute.t
    return found


def _grid(
    node: onnx.NodeProto, name: str, kind: str, constants: dict[str, Any], base_dir: Path | None
) -> QuantGrid | None:
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None
    tensors = [constants.get(n) for n in node.input[1:3]]
    if tensors[0] is None or (len(node.input) > 2 and node.input[2] and tensors[1] is None):
        return None  # a computed scale or zero point: not judged in steps
    try:
        scale = np.asarray(tensor_array(tensors[0], base_dir))
        zero = (
            np.asarray(tensor_array(tensors[1], base_dir))
            if len(tensors) > 1 and tensors[1] is not None
            else np.zeros(1, np.uint8)
        )
    except (ValueError, OSError):
        return None
    if not np.issubdtype(scale.dtype, np.floating) or not np.all(scale > 0):
        return None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if any(a.name == "block_size" and a.i for a in node.attribute):
        return None  # blocked quantization: not a per-tensor or per-channel grid
    return QuantGrid(name, kind, node.name or node.op_type, scale, zero, int(axis), zero.dtype.name)


def quant_grids(
    model: onnx.ModelProto, names: list[str], base_dir: Path | None = None
) -> dict[str, QuantGrid]:
    """``{name: QuantGrid}`` for the ``names`` (graph outputs, sites) that are quantized."""
    constants = _constants(model)
    producer = {out: node for node in model.graph.node for out in node.output if out}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {vi.name for vi in model.graph.output}
    grids: dict[str, QuantGrid] = {}
    for name in names:
        node = producer.get(name)
        grid = None
        if node is not None and node.op_type == "QuantizeLinear":
            grid = _grid(node, name, "quantized", constants, base_dir)
        elif node is not None and node.op_type == "DequantizeLinear":
            grid = _grid(node, name, "dequantized", constants, base_dir)
        else:
            current, steps = name, 0
            while steps < 8 and (current == name or current not in outputs):
                users = consumers.get(current, [])
                if len(users) != 1:
                    break
                user = users[0]
                if user.op_type == "QuantizeLinear" and user.input[0] == current:
                    grid = _grid(user, name, "before-quantize", constants, base_dir)
                    break
                if user.op_type not in _PASS_THROUGH or user.input[0] != current:
                    break
                current, steps = user.output[0], steps + 1
        if grid is not None:
            grids[name] = grid
    return grids


def step_judgement(grid: QuantGrid, reference: Any, candidate: Any) -> StepJudgement | None:
    """Steps between two values of a quantized tensor; None when they cannot be judged so
    (shape or dtype differs, a non-finite float)."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    if ref.shape != cand.shape or ref.dtype != cand.dtype:
        return None
    if ref.dtype.kind == "f" and not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        return None
    steps = grid.steps(ref, cand) if ref.size else np.zeros(0, np.int64)
    return StepJudgement(
        max_steps=int(steps.max()) if steps.size else 0,
        moved=int(np.count_nonzero(steps)),
        total=int(ref.size),
        share_bound=SHARE_BOUND,
        max_steps_allowed=MAX_STEPS,
        grid=grid.describe(),
    )


def judge_in_steps(
    comparison: OutputComparison, grid: QuantGrid, reference: Any, candidate: Any
) -> OutputComparison:
    """``comparison`` decided again in steps of ``grid`` (the module docstring's verdict)."""
    judged = step_judgement(grid, reference, candidate)
    if judged is None:
        return comparison
    ref, cand = np.asarray(reference), np.asarray(candidate)
    steps = grid.steps(ref, cand) if ref.size else np.zeros(0, np.int64)
    too_far = judged.max_steps > MAX_STEPS
    too_many = judged.share > SHARE_BOUND
    used = max(judged.max_steps / MAX_STEPS, judged.share / SHARE_BOUND)
    reason = None
    worst: list[int] | None = None
    worst_ref = worst_cand = None
    if too_far or too_many:
        flat = int(np.argmax(steps))
        worst = [int(i) for i in np.unravel_index(flat, ref.shape)] if ref.shape else []
        worst_ref, worst_cand = float(ref.flat[flat]), float(cand.flat[flat])
        what = []
        if too_far:
            what.append(f"an element moved {judged.max_steps} steps (at most {MAX_STEPS} allowed)")
        if too_many:
            what.append(
                f"{judged.moved} of {judged.total} elements ({judged.share:.2%}) moved"
                f" (at most {SHARE_BOUND:.0%} allowed)"
            )
        reason = (
            f"in quantization steps ({grid.describe()}): {'; '.join(what)};"
            f" e.g. at [{', '.join(str(i) for i in worst)}]: reference {plain_number(worst_ref, ref.dtype)},"
            f" candidate {plain_number(worst_cand, cand.dtype)}"
        )
    return replace(
        comparison,
        passed=not (too_far or too_many),
        reason=reason,
        mismatched=judged.moved if reason else 0,
        nonfinite_mismatched=0,
        tolerance_used=used,
        worst_index=worst,
        worst_reference=worst_ref,
        worst_candidate=worst_cand,
        float64=None,
        steps=judged,
    )


def judge_quantized(
    comparisons: dict[str, OutputComparison],
    reference: Mapping[str, Any],
    produced: Mapping[str, Any],
    grids: Mapping[str, QuantGrid],
) -> dict[str, OutputComparison]:
    """Every comparison of a quantized tensor decided in steps instead."""
    if not grids:
        return comparisons
    judged = dict(comparisons)
    for name, comparison in comparisons.items():
        grid = grids.get(name)
        if grid is not None and name in reference and name in produced:
            judged[name] = judge_in_steps(comparison, grid, reference[name], produced[name])
    return judged


def level_effect(
    unoptimized: list[dict[str, Any]],
    optimized: list[dict[str, Any]],
    grids: Mapping[str, QuantGrid],
) -> dict[str, StepJudgement]:
    """How many steps onnxruntime's own kernel choice moves the original: the original at a
    level against the original at ``disable``, per quantized tensor, over all input sets."""
    effect: dict[str, StepJudgement] = {}
    for before, after in zip(unoptimized, optimized, strict=True):
        for name, grid in grids.items():
            if name not in before or name not in after:
                continue
            judged = step_judgement(grid, before[name], after[name])
            if judged is not None:
                effect[name] = effect[name].merge(judged) if name in effect else judged
    return effect


def effect_line(level: str, effect: Mapping[str, StepJudgement]) -> str:
    """``kernel choice at all (original vs original at disable): `y` 0 of 1152 moved ...``."""
    parts = [
        f"`{name}` {j.moved} of {j.total} elements moved ({j.share:.2%}), at most {j.max_steps} step(s)"
        for name, j in effect.items()
    ]
    return (
        f"onnxruntime's kernel choice at {level} (the original at {level} vs at disable, in"
        f" quantization steps; not judged): {'; '.join(parts) or 'nothing compared'}"
    )

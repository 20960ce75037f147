"""The safety net before anything is written: the folded model must be as valid as the input.

Checked on a skeleton of the model (large initializers replaced by typed graph inputs, so no
tensor bytes are read or copied):

1. the full onnx checker with strict shape inference (``full_check=True``), wherever the
   input passed it;
2. every graph output keeps the element type and shape that inference gave it in the input,
   or a more specific shape (``refines``): a symbolic or unknown dim that inference now
   resolves to a number (a lowered BN's ``Mul`` by ``[C, 1, 1]`` tells it the channel count
   the BN's parameters already fixed). The model runs on exactly the inputs it ran on; a
   number that changes, a symbol that becomes another or a dim that is lost still counts.

A fold that breaks either is found and refused (``self-check-failed``; ``passes``), never
written, and never fails the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from .shapes import Shape, shape_skeleton, value_shape


@dataclass(frozen=True)
class Validity:
    """What the input satisfied, so the output is held to exactly that."""

    checker_ok: bool
    outputs: dict[str, tuple[int, Shape | None]]


def assess(model: onnx.ModelProto) -> Validity:
    skeleton = shape_skeleton(model)
    return Validity(_checker_problem(skeleton) is None, _output_signature(skeleton))


def problem(model: onnx.ModelProto, baseline: Validity) -> str | None:
    """What is wrong with ``model`` that was right with the input (None: nothing)."""
    skeleton = shape_skeleton(model)
    if baseline.checker_ok:
        found = _checker_problem(skeleton)
        if found is not None:
            return f"onnx checker: {found}"
    outputs = _output_signature(skeleton)
    for name, (elem, shape) in baseline.outputs.items():
        now = outputs.get(name)
        if now is None:
            return f"graph output {name!r} is no longer produced"
        if now[0] != elem or (shape is not None and not refines(now[1], shape)):
            return f"graph output {name!r} changed from {_show(elem, shape)} to {_show(*now)}"
    return None


def refines(now: Shape | None, before: Shape) -> bool:
    """Whether ``now`` says at least what ``before`` says: the same rank, each number kept,
    each symbol kept or resolved to a number, an unknown dim anything."""
    if now is None or len(now) != len(before):
        return False
    for new, old in zip(now, before, strict=True):
        if old is None:
            continue
        if isinstance(old, str) and isinstance(new, int):
            continue
        if new != old:
            return False
    return True


def _checker_problem(skeleton: onnx.ModelProto) -> str | None:
    try:
        onnx.checker.check_model(skeleton, full_check=True)
    except Exception as exc:  # noqa: BLE001 - any checker or inference error is the finding
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__
    return None


def _output_signature(skeleton: onnx.ModelProto) -> dict[str, tuple[int, Shape | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False)
    except Exception:  # noqa: BLE001 - no inference, declared types only
        inferred = skeleton
    known = {value.name: value for value in inferred.graph.value_info}
    signature: dict[str, tuple[int, Shape | None]] = {}
    for output in inferred.graph.output:
        value = output
        if not value.type.tensor_type.HasField("shape") and output.name in known:
            value = known[output.name]
        signature[output.name] = (int(value.type.tensor_type.elem_type), value_shape(value))
    return signature


def _show(elem: int, shape: Shape | None) -> str:
    name = onnx.TensorProto.DataType.Name(elem) if elem else "?"
    return f"{name}{list(shape) if shape is not None else '[?]'}"

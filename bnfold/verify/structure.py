"""Structural checks on the candidate before any number is compared.

A folded model must be a drop-in replacement: it passes the ONNX checker with
``full_check=True`` (strict shape inference), keeps the graph's input and output names,
element types and shapes, and keeps the IR version and every opset import. Each difference
raises ``StructureMismatch`` (exit 3) with a one-line message that names it.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import ModelLoadError
from ..runtime.inputs import declared_shape, graph_inputs


class StructureMismatch(ModelLoadError):
    """The candidate is not a valid drop-in replacement for the original (exit 3)."""


# Serialized protos at or past this size cannot be checked in memory (protobuf's 2 GiB limit).
_IN_MEMORY_LIMIT = 2**31 - 2**20


def checker_error(model: onnx.ModelProto, path: Path | None) -> str | None:
    """First line of ``onnx.checker.check_model(full_check=True)``'s complaint, or None if valid.

    The path form lets onnx read a > 2 GiB model with external data itself.
    """
    try:
        if path is not None:
            onnx.checker.check_model(str(path), full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker and shape inference raise several types
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        return (lines[0] if lines else type(exc).__name__)[:300]
    return None


def check_onnx(
    candidate: onnx.ModelProto,
    candidate_path: Path | None,
    original: onnx.ModelProto | None = None,
    original_path: Path | None = None,
) -> list[str]:
    """Fail if the candidate fails the ONNX checker (full_check) where the original passes.

    The candidate must be at least as valid as the original: when the original already fails
    the checker (onnxruntime runs some models the checker refuses, e.g. graph outputs without
    a shape), the candidate's failure is noted, not held against it. Returns notes.
    """
    if candidate_path is None and candidate.ByteSize() >= _IN_MEMORY_LIMIT:
        return [
            "ONNX checker skipped: the in-memory candidate is over 2 GiB (pass its path to check it)"
        ]
    problem = checker_error(candidate, candidate_path)
    if problem is None:
        return []
    if original is not None:
        too_big = original_path is None and original.ByteSize() >= _IN_MEMORY_LIMIT
        original_problem = None if too_big else checker_error(original, original_path)
        if original_problem is not None:
            return [
                f"the original fails the ONNX checker too ({original_problem}); not held against the candidate"
            ]
    raise StructureMismatch(
        f"candidate fails the ONNX checker (full_check): {problem}",
        hint="the candidate is not a valid ONNX model; rerun the optimizer or report it",
    )


def _signature(values: list[onnx.ValueInfoProto]) -> dict[str, tuple[str, str]]:
    result = {}
    for vi in values:
        kind = vi.type.WhichOneof("value") or "unknown"
        if kind == "tensor_type":
            elem = onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type).lower()
            shape = declared_shape(vi)
            shape_text = (
                "?"
                if shape is None
                else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
            )
            result[vi.name] = (elem, shape_text)
        else:
            result[vi.name] = (kind, "")
    return result


def _compare_signatures(
    kind: str, original: dict[str, tuple[str, str]], candidate: dict[str, tuple[str, str]]
) -> None:
    missing = [name for name in original if name not in candidate]
    added = [name for name in candidate if name not in original]
    if missing or added:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(repr(n) for n in missing)}")
        if added:
            parts.append(f"new {', '.join(repr(n) for n in added)}")
        raise StructureMismatch(
            f"candidate graph {kind}s differ from the original: {'; '.join(parts)}",
            hint=f"a folded model must keep every graph {kind} name",
        )
    for name, (elem, shape) in original.items():
        cand_elem, cand_shape = candidate[name]
        if elem != cand_elem:
            raise StructureMismatch(
                f"candidate graph {kind} {name!r} is {cand_elem}, the original is {elem}"
            )
        if shape != cand_shape:
            raise StructureMismatch(
                f"candidate graph {kind} {name!r} has shape {cand_shape}, the original has {shape}"
            )


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    # "" and "ai.onnx" are the same default domain.
    return {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}


def check_interface(original: onnx.ModelProto, candidate: onnx.ModelProto) -> None:
    """Same graph inputs/outputs (names, element types, shapes), IR version and opsets."""
    if candidate.ir_version != original.ir_version:
        raise StructureMismatch(
            f"candidate IR version is {candidate.ir_version}, the original's is {original.ir_version}",
            hint="a folded model must keep the IR version",
        )
    original_opsets, candidate_opsets = _opsets(original), _opsets(candidate)
    if original_opsets != candidate_opsets:
        changed = sorted(
            f"{domain or 'ai.onnx'}: {original_opsets.get(domain, 'none')} -> {candidate_opsets.get(domain, 'none')}"
            for domain in set(original_opsets) | set(candidate_opsets)
            if original_opsets.get(domain) != candidate_opsets.get(domain)
        )
        raise StructureMismatch(
            f"candidate opset imports differ from the original: {', '.join(changed)}",
            hint="a folded model must keep every opset version",
        )
    _compare_signatures(
        "input", _signature(graph_inputs(original)), _signature(graph_inputs(candidate))
    )
    _compare_signatures(
        "output", _signature(list(original.graph.output)), _signature(list(candidate.graph.output))
    )


def check_structure(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    candidate_path: Path | None = None,
    original_path: Path | None = None,
) -> list[str]:
    """Interface first (cheap, names the difference), then the ONNX checker; returns notes."""
    check_interface(original, candidate)
    return check_onnx(candidate, candidate_path, original, original_path)

"""Model-local functions whose BNs only fold per call site: find them, count, inline them.

A function body is folded once for every call (``driver``), which is exact only for what is
the same at every call. Torch's ``export_modules_as_functions`` makes weights and BN
parameters function inputs, bound at each call site to the caller's initializers, and puts
a BN in one function and the layer it follows in another; an attribute may refer to the
caller's (``epsilon=$eps``). None of that folds inside the body, yet each call site folds.

So, when BNs stay inside local functions after the body folds, the driver tries again with
the called local functions *inlined* at their call sites by
onnx's own inliner, which binds each call's inputs and attributes (``$eps`` becomes that
call's value). The inlined run is kept only when fewer BatchNormalization nodes run per
inference (``batchnorms_per_call``); otherwise the model stays as the body folds left it.
The report lists each inlined function (``FunctionAction``). Functions that are not
model-local, the IR version, the opset imports and the graph's inputs and outputs are never
changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import onnx

from .batchnorm import is_batchnorm
from .graph import opset_version, opset_version_of, subgraphs

FunctionId = tuple[str, str, str]  # (domain, name, overload): a function's IR identity


@dataclass
class FunctionAction:
    """What was done to a model-local function so its BNs fold per call site."""

    function: str
    action: str  # "inlined"
    calls: int
    reason: str


def function_id(function: onnx.FunctionProto) -> FunctionId:
    return (function.domain, function.name, function.overload)


def call_id(node: onnx.NodeProto) -> FunctionId:
    return (node.domain, node.op_type, node.overload)


def function_label(key: FunctionId) -> str:
    domain, name, overload = key
    label = f"{domain}.{name}" if domain else name
    return f"{label}:{overload}" if overload else label


def _nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    for node in nodes:
        yield node
        for sub in subgraphs(node):
            yield from _nodes(sub.node)


def batchnorms_per_call(model: onnx.ModelProto) -> int:
    """BatchNormalization nodes one inference runs, each local function counted per call
    (loop bodies once): what onnxruntime's graph holds after it inlines the functions."""
    local = {function_id(f): f for f in model.functions}
    memo: dict[FunctionId, int] = {}

    def count(nodes: Iterable[onnx.NodeProto], seen: frozenset[FunctionId]) -> int:
        total = 0
        for node in _nodes(nodes):
            key = call_id(node)
            if is_batchnorm(node):
                total += 1
            elif key in local and key not in seen:
                if key not in memo:
                    memo[key] = count(local[key].node, seen | {key})
                total += memo[key]
        return total

    return count(model.graph.node, frozenset())


def inline_candidates(model: onnx.ModelProto) -> list[FunctionId]:
    """When a called local function still runs a BatchNormalization per call (in its body
    or in a function it calls): every called local function in the model's standard opset;
    else none."""
    local = {function_id(f): f for f in model.functions}
    opset = opset_version(model)
    holds: dict[FunctionId, bool] = {}

    def holds_bn(key: FunctionId, seen: frozenset[FunctionId]) -> bool:
        if key not in holds:
            holds[key] = any(
                is_batchnorm(node)
                or (
                    call_id(node) in local
                    and call_id(node) not in seen
                    and holds_bn(call_id(node), seen | {key})
                )
                for node in _nodes(local[key].node)
            )
        return holds[key]

    called = reachable_calls(model)
    inlinable = [
        key
        for key in local
        if key in called and opset_version_of(local[key].opset_import, default=opset) == opset
    ]
    if not any(holds_bn(key, frozenset({key})) for key in inlinable):
        return []
    # The layer a BN folds into, or the activation it passes, is often another function's
    # (torch puts Linear, BatchNorm1d and ReLU in one each): inline them all, as
    # onnxruntime does; the driver keeps the result only when fewer BNs run.
    return inlinable


def reachable_calls(model: onnx.ModelProto) -> dict[FunctionId, int]:
    """How many call sites each local function has, counting calls from inside functions
    that are themselves called (from the main graph, at any depth)."""
    local = {function_id(f): f for f in model.functions}
    sites: dict[FunctionId, int] = {}
    pending = [model.graph.node]
    visited: set[FunctionId] = set()
    while pending:
        for node in _nodes(pending.pop()):
            key = call_id(node)
            if key in local:
                sites[key] = sites.get(key, 0) + 1
                if key not in visited:
                    visited.add(key)
                    pending.append(local[key].node)
    return sites


def inline(model: onnx.ModelProto, keys: list[FunctionId]) -> bool:
    """Inline every call of the functions ``keys`` in ``model`` (in place), with onnx's
    inliner; False (the model untouched) when that fails or would change what must stay:
    IR version, opset imports, graph inputs and outputs, other functions."""
    from onnx import inliner

    selected = sorted({(domain, name) for domain, name, _ in keys})
    try:
        result = inliner.inline_selected_functions(model, selected, exclude=False)
    except Exception:  # noqa: BLE001 - a model onnx cannot inline keeps its functions
        return False
    kept = {function_id(f) for f in model.functions} - {tuple(k) for k in keys}
    if (
        result.ir_version != model.ir_version
        or _opsets(result) != _opsets(model)
        or [v.name for v in result.graph.input] != [v.name for v in model.graph.input]
        or [v.name for v in result.graph.output] != [v.name for v in model.graph.output]
        or not kept <= {function_id(f) for f in result.functions}
    ):
        return False
    model.CopyFrom(result)
    return True


def _opsets(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return sorted((entry.domain, int(entry.version)) for entry in model.opset_import)


__all__ = [
    "FunctionAction",
    "FunctionId",
    "batchnorms_per_call",
    "function_label",
    "inline",
    "inline_candidates",
    "reachable_calls",
]

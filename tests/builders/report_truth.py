"""Property 6 about the input (issue 22): a report names each BN as the input model does, and
a refusal about a BN is about that BN.

``check_optimize_is_safe`` (``fuzz.checks``) checks the report against the written model
(every ``into`` a node there, every kept BN a BN there); this checks it against the model it
was given:

- each folded BatchNormalization is a node of the input, named by its label there (a
  ``bn-affine`` merge renames the merged BN's output, an unnamed node's label), and no BN is
  folded twice, or both folded and kept;
- a refusal that is about a BN's own node (``spatial-off``, ``param-missing``,
  ``training-mode`` without a Dropout on the way) is true of that node, not of a BN before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import onnx

SUBGRAPH_OPS = ("If", "Loop", "Scan")


def _attribute(node: onnx.NodeProto, name: str) -> int | None:
    found = [a.i for a in node.attribute if a.name == name]
    return found[0] if found else None


def _training(node: onnx.NodeProto) -> bool:
    return (
        _attribute(node, "training_mode") == 1
        or _attribute(node, "is_test") == 0
        or sum(1 for name in node.output[1:] if name) > 0
    )


# Refusals about the BN itself: each must be true of the reported BN's own node.
OWN_REASONS: dict[str, Callable[[onnx.NodeProto, str], bool]] = {
    "spatial-off": lambda node, detail: _attribute(node, "spatial") == 0,
    "param-missing": lambda node, detail: len(node.input) < 5,
    "training-mode": lambda node, detail: _training(node) or "Dropout" in detail,
}


def _walk(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attribute.g)
            for sub in attribute.graphs:
                yield from _walk(sub)


def label(node: onnx.NodeProto) -> str:
    """The report's name of a node: its name, else ``<OpType:first output>``."""
    return node.name or f"<{node.op_type}:{node.output[0] if node.output else ''}>"


def assert_reports_true_of_input(report: object, model: onnx.ModelProto) -> None:
    """The properties above (skipped for models with local functions, whose nodes a report
    names per function)."""
    if len(model.functions):
        return
    nodes = {label(node): node for node in _walk(model.graph)}
    folds = report.folds  # type: ignore[attr-defined]
    skipped = report.skipped  # type: ignore[attr-defined]
    bns = [fold.bn for fold in folds if fold.kind == "BatchNormalization"]
    if not any(node.op_type in SUBGRAPH_OPS for node in nodes.values()):
        # (Subgraphs may reuse a label in another scope.)
        missing = [bn for bn in bns if nodes.get(bn) is None]
        assert not missing, f"report: folded {missing}, no such node in the input"
        twice = {bn for bn in bns if bns.count(bn) > 1}
        assert not twice, f"report: {sorted(twice)} folded twice"
        # (A kept BN that merges went into is named as the written model names it: a merge
        # into an unnamed BN gives it the merged site's output, and so its label.)
        merged_into = {fold.into for fold in folds if fold.pattern == "bn-affine"}
        both = ({skip.bn for skip in skipped} - merged_into) & set(bns)
        assert not both, f"report: {sorted(both)} both folded and kept"
    for skip in skipped:
        node, own = nodes.get(skip.bn), OWN_REASONS.get(skip.reason)
        if node is not None and node.op_type == "BatchNormalization" and own is not None:
            assert own(node, skip.detail), (
                f"report on {skip.bn}: {skip.reason} ({skip.detail}) is not true of it"
            )

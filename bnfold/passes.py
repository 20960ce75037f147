"""The driver: run the patterns over every graph to a fixed point, clean up once, count.

Each round indexes the graph once, finds its affine sites (BatchNormalization nodes, and
per-channel Mul/Add chains; see ``sites``) and tries the patterns on each in graph order. Folds
whose nodes do not overlap are written in the same round; an overlapping one waits for the
next round, which sees the graph as it now is. The round that folds nothing is the last, and
its refusals are the report's. Subgraphs (If/Loop/Scan bodies) are folded after their parent,
with the parent's constants visible to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .batchnorm import is_batchnorm
from .editor import GraphEditor, NameAllocator
from .graph import ConstantCache, GraphView, infer_tensors, opset_version, subgraphs
from .lowering import lower_to_mul_add
from .outcomes import Fold, Skip
from .patterns import default_patterns
from .patterns.base import FoldContext, Pattern, Plan, node_label
from .sites import AffineSite, all_sites

MAX_ROUNDS = 64


@dataclass(frozen=True)
class FoldOptions:
    """``disabled``: pattern names not to apply (see ``bnfold.patterns.PATTERN_NAMES``);
    ``lower_standalone``: rewrite BNs that stay as Mul + Add (see ``lowering``)."""

    disabled: frozenset[str] = frozenset()
    lower_standalone: bool = False


@dataclass
class SkippedBatchNorm:
    bn: str
    reason: str
    detail: str


@dataclass
class FoldOutcome:
    folds: list[Fold] = field(default_factory=list)
    skipped: list[SkippedBatchNorm] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def fold_model(
    model: onnx.ModelProto,
    options: FoldOptions = FoldOptions(),
    progress: Callable[[int], None] | None = None,
    *,
    base_dir: Path | None = None,
) -> FoldOutcome:
    """Fold ``model`` in place; return what was folded and what was refused, and why.

    ``base_dir`` is the folder external tensor data is read from.
    """
    patterns = [p for p in default_patterns() if p.name not in options.disabled]
    outcome = FoldOutcome()
    outcome.counts.update(batchnorm_before=count_batchnorms(model), nodes_before=count_nodes(model))
    state = _ModelState(model, options, base_dir)
    _fold_graph(state, model.graph, None, patterns, outcome, progress)
    outcome.counts.update(batchnorm_after=count_batchnorms(model), nodes_after=count_nodes(model))
    return outcome


class _ModelState:
    """What all graphs of one model share: opset, names, cached constants, shapes (lazy)."""

    def __init__(self, model: onnx.ModelProto, options: FoldOptions, base_dir: Path | None) -> None:
        self.model = model
        self.options = options
        self.opset = opset_version(model)
        self.names = NameAllocator(model)
        self.cache = ConstantCache(
            base_dir=base_dir, elem_types=self.elem_types_all, shapes=self.shapes
        )
        self._inferred: tuple[dict[str, tuple[int | str | None, ...]], dict[str, int]] | None = None

    def shapes(self) -> dict[str, tuple[int | str | None, ...]]:
        # Inferred once on the model as loaded: folding keeps every kept tensor's shape.
        if self._inferred is None:
            self._inferred = infer_tensors(self.model)
        return self._inferred[0]

    def alias_tensor(self, name: str, like: str) -> None:
        """Record that the new tensor ``name`` has the shape and type of ``like``."""
        if self._inferred is None:
            return  # inference has not run yet; when it does, it sees the new tensor
        shapes, types = self._inferred
        if like in shapes:
            shapes[name] = shapes[like]
        if like in types:
            types[name] = types[like]

    def elem_types_all(self) -> dict[str, int]:
        self.shapes()
        assert self._inferred is not None
        return self._inferred[1]

    def elem_type(self, name: str) -> int | None:
        return self.elem_types_all().get(name)


def _fold_graph(
    state: _ModelState,
    graph: onnx.GraphProto,
    outer: GraphView | None,
    patterns: list[Pattern],
    outcome: FoldOutcome,
    progress: Callable[[int], None] | None,
) -> None:
    skipped: dict[str, SkippedBatchNorm] = {}
    view = GraphView(graph, ir_version=state.model.ir_version, cache=state.cache, outer=outer)
    for _ in range(MAX_ROUNDS):
        editor = GraphEditor(view, state.names, state.cache, state.alias_tensor)
        ctx = FoldContext(view, state.opset, state.shapes)
        touched: set[int] = set()
        folded_any = deferred = False
        sites, refused = all_sites(view, state.opset, state.shapes)
        skipped.clear()
        for node, skip in refused.values():
            skipped[node_label(node)] = SkippedBatchNorm(node_label(node), skip.reason, skip.detail)
        for site in sites:
            result = _try_fold(ctx, site, patterns)
            if isinstance(result, Skip):
                if site.is_batchnorm:
                    skipped[site.label] = SkippedBatchNorm(site.label, result.reason, result.detail)
                continue
            if any(id(node) in touched for node in result.nodes):
                deferred = True
                continue
            result.write(editor)
            touched.update(id(node) for node in result.nodes)
            outcome.folds.append(result.fold)
            folded_any = True
            if progress is not None:
                progress(1)
        editor.cleanup()
        view = GraphView(graph, ir_version=state.model.ir_version, cache=state.cache, outer=outer)
        if not (folded_any or deferred):
            break
    if state.options.lower_standalone:
        _lower_remaining(state, view, skipped, outcome)
    outcome.skipped.extend(skipped.values())
    for node in list(graph.node):
        for sub in subgraphs(node):
            _fold_graph(state, sub, view, patterns, outcome, progress)


def _lower_remaining(
    state: _ModelState, view: GraphView, skipped: dict[str, SkippedBatchNorm], outcome: FoldOutcome
) -> None:
    """Rewrite the BNs that stay but are plain inference affines as Mul + Add."""
    editor = GraphEditor(view, state.names, state.cache, state.alias_tensor)
    sites, _ = all_sites(view, state.opset, state.shapes)
    for site in sites:
        elem = state.elem_type(site.input)
        if not site.is_batchnorm or site.label not in skipped or elem is None:
            continue
        lowered = lower_to_mul_add(editor, site, onnx.helper.tensor_dtype_to_np_dtype(elem))
        if lowered is not None:
            del skipped[site.label]
            outcome.folds.append(lowered)


# Refusals that only say "nothing to fold into on this side"; any other is more telling.
GENERIC_REASONS = frozenset(
    {"no-linear-producer", "no-linear-consumer", "consumer-input-is-graph-output"}
)


def _try_fold(ctx: FoldContext, site: AffineSite, patterns: Iterable[Pattern]) -> Plan | Skip:
    """The first pattern's plan; else the most telling refusal, with the other sides' details."""
    skips: list[Skip] = []
    for pattern in patterns:
        result = pattern.match(ctx, site)
        if isinstance(result, Plan):
            return result
        if isinstance(result, Skip) and result not in skips:
            skips.append(result)
    if not skips:
        return Skip("no-pattern", "no enabled pattern folds this BatchNormalization")
    main = next((skip for skip in skips if skip.reason not in GENERIC_REASONS), skips[0])
    others = [skip.detail for skip in skips if skip is not main and skip.reason in GENERIC_REASONS]
    return Skip(main.reason, "; ".join([main.detail, *others]))


def _walk(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from _walk(sub)


def count_nodes(model: onnx.ModelProto) -> int:
    """Nodes in the model, subgraphs included."""
    return sum(1 for _ in _walk(model.graph))


def count_batchnorms(model: onnx.ModelProto) -> int:
    """BatchNormalization nodes in the model, subgraphs included."""
    return sum(1 for node in _walk(model.graph) if is_batchnorm(node))

"""The driver: run the patterns over every graph to a fixed point, clean up, check, count.

The patterns are given (``bnfold.patterns.default_patterns``, built by the library's front
door): the engine is what patterns build on, so it never imports them.

Each round indexes the graph once, finds its affine sites (BatchNormalization nodes, and
per-channel Mul/Add chains; see ``sites``) and asks the patterns for a plan for each, in
graph order: for each side of the site only the patterns that fold into the op found there
(``dispatch``). The editor refuses plans invalid in this model (``unsupported-opset``) and
defers a plan that touches a node another plan of the round touched; the next round sees
the graph as it now is. The round that applies nothing is the last; its refusals are the
report's. Every fold removes at least one node, so the rounds end.

Subgraphs (If/Loop/Scan bodies) are folded after their parent, each in its own scope.

The safety net (``selfcheck``): after folding, the model must pass every check the input
passed. If it does not, folding starts again from the input with a check after each plan;
the first plan that breaks it is refused (``self-check-failed``) and the run repeats without
it, until the model is clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from . import selfcheck
from .batchnorm import is_batchnorm
from .casts import remove_noop_casts
from .constants import ConstantCache
from .dispatch import Dispatcher
from .editor import GraphEditor, NameAllocator
from .functions import (
    FunctionAction,
    FunctionId,
    batchnorms_per_call,
    function_id,
    function_label,
    inline,
    inline_candidates,
    reachable_calls,
)
from .graph import (
    AttributeReference,
    GraphView,
    node_label,
    opset_version,
    opset_version_of,
    sort_topologically,
    subgraphs,
)
from .lowering import MUL_ADD, lowering_plan
from .outcomes import Fold, Skip
from .plan import Plan
from .protocol import FoldContext, Pattern
from .quantized import quantized_lowering_plan
from .shapes import (
    MAIN_SCOPE,
    ModelShapes,
    ScopePath,
    function_scope,
    infer_model_shapes,
    scoped_graphs,
)
from .sites import AffineSite, all_sites
from .targets import DEFAULT_TARGET, NOT_LOWERABLE, Profile, profile
from .weight_ranges import weight_range_changes

SiteKey = tuple[ScopePath, str]  # (scope, site output): unique, since names are SSA per scope


@dataclass(frozen=True)
class FoldOptions:
    """``lower_standalone``: rewrite BNs that stay, as Mul + Add (True or ``mul-add``) or as a
    1×1 depthwise Conv (``dwconv``; see ``lowering``). ``target``: the deployment profile
    (``targets.TARGET_NAMES``)."""

    lower_standalone: bool | str = False
    target: str = DEFAULT_TARGET

    @property
    def profile(self) -> Profile:
        return profile(self.target)

    def lowering_forms(self) -> tuple[str, ...]:
        """The forms a BN nothing folds into is lowered to, tried in order; () keeps it.

        A form named (``--lower-as``) is the only one; else the profile's forms; else
        ``--lower-standalone`` alone means Mul + Add.
        """
        if isinstance(self.lower_standalone, str):
            return (self.lower_standalone,)
        if self.profile.lower_kept:
            return self.profile.lower_kept
        return (MUL_ADD,) if self.lower_standalone else ()


@dataclass
class SkippedBatchNorm:
    """A BN, or a BN-equivalent chain (``kind`` ``Mul+Add``...), kept with its reason."""

    bn: str
    reason: str
    detail: str
    kind: str = "BatchNormalization"


@dataclass
class FoldOutcome:
    folds: list[Fold] = field(default_factory=list)
    skipped: list[SkippedBatchNorm] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # The node each fold went into: labelled once folding is over (a later fold of the same
    # run may rename an unnamed node's output, which is its label).
    targets: list[tuple[Fold, Plan]] = field(default_factory=list, repr=False)
    # Local functions changed so their BNs fold per call site (``functions``).
    functions: list[FunctionAction] = field(default_factory=list)

    def label_targets(self) -> None:
        for fold, plan in self.targets:
            fold.into = plan.into_label()
        self.targets.clear()


def fold_model(
    model: onnx.ModelProto,
    patterns: Sequence[Pattern],
    options: FoldOptions = FoldOptions(),
    progress: Callable[[int], None] | None = None,
    *,
    base_dir: Path | None = None,
    reload: Callable[[], onnx.ModelProto] | None = None,
) -> FoldOutcome:
    """Fold ``model`` in place with ``patterns`` (tried in order, each only on its side and
    op type: ``dispatch``); return what was folded and what was refused, and why.

    ``base_dir`` is the folder external tensor data is read from. ``reload`` gives the input
    model again (for the safety net's second attempt); without it a copy is kept.
    """
    dispatcher = Dispatcher(patterns)
    baseline = selfcheck.assess(model)
    snapshot: onnx.ModelProto | None = None
    if reload is None:
        snapshot = onnx.ModelProto()
        snapshot.CopyFrom(model)

    def restore() -> None:
        model.CopyFrom(reload() if reload is not None else snapshot)

    run = _Run(model, dispatcher, options, base_dir, baseline, restore)
    if len(model.training_info):
        run.deny_all = Skip(
            "training-info",
            "the model carries training_info, whose bindings name tensors a fold would rewrite",
        )
    outcome = run.fold(progress)
    candidates = inline_candidates(model) if run.deny_all is None else []
    if not candidates:
        return outcome
    # BNs stay inside local functions: try again with those functions inlined at their call
    # sites (``functions``); keep that only when fewer BNs run per inference.
    left = batchnorms_per_call(model)
    kept = onnx.ModelProto()
    kept.CopyFrom(model)
    restore()
    calls = reachable_calls(model)
    if not inline(model, candidates):
        model.CopyFrom(kept)
        return outcome
    run.inlined = candidates
    run.denied.clear()
    inlined = run.fold(None)
    if batchnorms_per_call(model) >= left:
        model.CopyFrom(kept)
        return outcome
    for key in ("batchnorm_before", "nodes_before"):
        inlined.counts[key] = outcome.counts[key]
    inlined.functions = [
        FunctionAction(
            function_label(key),
            "inlined",
            calls.get(key, 0),
            "its BatchNormalization folds only per call site (parameters bound at the call, "
            "attributes set by the caller, or the layer in another function)",
        )
        for key in candidates
    ]
    return inlined


@dataclass
class _Run:
    """One way of folding a model: restarted from the input (``restore``, then the
    ``inlined`` functions inlined again) until the model passes the input's checks."""

    model: onnx.ModelProto
    dispatcher: Dispatcher
    options: FoldOptions
    base_dir: Path | None
    baseline: selfcheck.Validity
    restore: Callable[[], None]
    deny_all: Skip | None = None
    inlined: list[FunctionId] = field(default_factory=list)
    denied: dict[SiteKey, Skip] = field(default_factory=dict)

    def fold(self, progress: Callable[[int], None] | None) -> FoldOutcome:
        model = self.model
        check_each: Callable[[], str | None] | None = None
        while True:
            try:
                reordered = sort_topologically(model.graph)
                outcome = _fold_once(
                    model,
                    self.dispatcher,
                    self.options,
                    progress,
                    self.base_dir,
                    self.denied,
                    check_each,
                    self.deny_all,
                )
            except _PlanBroke as broke:
                self.denied[broke.key] = Skip("self-check-failed", broke.problem)
                outcome = None
            if outcome is not None:
                found = selfcheck.problem(model, self.baseline)
                if found is None or self.deny_all is not None:
                    if reordered and not outcome.folds and not outcome.counts["noop_casts_removed"]:
                        # Sorted only to fold: with nothing folded the input's order stays.
                        self._start_again()
                    return outcome
                if check_each is not None:
                    # No single plan broke it (cleanup did): refuse every fold, not guess.
                    self.deny_all = Skip("self-check-failed", found)
            # Start again from the input, checking after every plan to find the one to refuse.
            self._start_again()
            progress = None
            check_each = _checker(model, self.baseline)

    def _start_again(self) -> None:
        self.restore()
        if self.inlined and not inline(self.model, self.inlined):
            raise AssertionError("a model inlined once could not be inlined again")  # a bug


class _PlanBroke(Exception):
    def __init__(self, key: SiteKey, problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = key, problem


def _checker(model: onnx.ModelProto, baseline: selfcheck.Validity) -> Callable[[], str | None]:
    return lambda: selfcheck.problem(model, baseline)


def _fold_once(
    model: onnx.ModelProto,
    patterns: Dispatcher,
    options: FoldOptions,
    progress: Callable[[int], None] | None,
    base_dir: Path | None,
    denied: dict[SiteKey, Skip],
    check_each: Callable[[], str | None] | None,
    deny_all: Skip | None,
) -> FoldOutcome:
    outcome = FoldOutcome()
    outcome.counts.update(batchnorm_before=count_batchnorms(model), nodes_before=count_nodes(model))
    state = _ModelState(model, options, base_dir, denied, check_each)
    state.deny_all = deny_all
    state.fold_graph(model.graph, None, MAIN_SCOPE, patterns, outcome, progress)
    for function in model.functions:
        state.fold_function(function, patterns, outcome, progress)
    outcome.label_targets()
    removed = remove_noop_casts(model, lambda: state.model_shapes().types(MAIN_SCOPE))
    outcome.counts.update(noop_casts_removed=removed)
    outcome.counts.update(batchnorm_after=count_batchnorms(model), nodes_after=count_nodes(model))
    return outcome


class _ModelState:
    """What all graphs of one model share: names, shapes per scope, caches per scope."""

    def __init__(
        self,
        model: onnx.ModelProto,
        options: FoldOptions,
        base_dir: Path | None,
        denied: dict[SiteKey, Skip],
        check_each: Callable[[], str | None] | None,
    ) -> None:
        self.model = model
        self.options = options
        self.base_dir = base_dir
        self.opset = opset_version(model)
        self.names = NameAllocator(model)
        self.denied = denied
        self.check_each = check_each
        self.deny_all: Skip | None = None
        # Scopes that are function bodies: their own IR rules (no initializers) and opset.
        self.overrides: dict[ScopePath, tuple[int | None, int | None]] = {}
        self.caches: dict[ScopePath, ConstantCache] = {}
        self.lowered: set[SiteKey] = set()  # sites --lower-standalone wrote as Mul + Add
        self._shapes: ModelShapes | None = None

    def model_shapes(self) -> ModelShapes:
        # Inferred once on the model as loaded: folding keeps every kept tensor's shape.
        if self._shapes is None:
            self._shapes = infer_model_shapes(self.model)
        return self._shapes

    def view(self, graph: onnx.GraphProto, outer: GraphView | None, scope: ScopePath) -> GraphView:
        cache = self.caches.setdefault(scope, ConstantCache(base_dir=self.base_dir))
        ir_version, opset = self.overrides.get(scope[:1], (None, None))
        step = scope[0] if scope else None
        function = None
        if step is not None and step[0] == "function":
            function = function_label((str(step[1]), str(step[2]), str(step[3])))
        view = GraphView(
            graph,
            ir_version=ir_version or self.model.ir_version,
            opset=opset or self.opset,
            cache=cache,
            shapes=lambda: self.model_shapes().shapes(scope),
            types=lambda: self.model_shapes().types(scope),
            outer=outer,
            scope=scope,
        )
        view.function = function if outer is None else None
        return view

    def editor(self, view: GraphView) -> GraphEditor:
        scope = view.scope
        return GraphEditor(
            view, self.names, lambda name, like: self.model_shapes().alias(scope, name, like)
        )

    def fold_graph(
        self,
        graph: onnx.GraphProto,
        outer: GraphView | None,
        scope: ScopePath,
        patterns: Dispatcher,
        outcome: FoldOutcome,
        progress: Callable[[int], None] | None,
        *,
        ir_version: int | None = None,
        opset: int | None = None,
    ) -> None:
        skipped: dict[str, SkippedBatchNorm] = {}
        if ir_version is not None or opset is not None:
            self.overrides[scope] = (ir_version, opset)
        view = self.view(graph, outer, scope)
        # Each round that applies something removes a node (lowering adds one per BN, once).
        limit, rounds = 2 * len(graph.node) + 4, 0
        while True:
            rounds += 1
            if rounds > limit:
                raise AssertionError("folding did not reach a fixed point")  # a bug
            applied, deferred = self._round(view, patterns, skipped, outcome, progress)
            view = self.view(graph, outer, scope)
            if applied or deferred:
                continue
            # Lowered BNs are Mul/Add chains, which may fold together (two negative scales
            # make a positive one): fold again until nothing changes, so a rerun is a no-op.
            if not (
                self.options.lowering_forms() and self._lower_remaining(view, skipped, outcome)
            ):
                break
            view = self.view(graph, outer, scope)
        outcome.skipped.extend(skipped.values())
        for sub, sub_scope in list(scoped_graphs(graph, scope)):
            self.fold_graph(sub, view, sub_scope, patterns, outcome, progress)

    def fold_function(
        self,
        function: onnx.FunctionProto,
        patterns: Dispatcher,
        outcome: FoldOutcome,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Fold inside a model-local function's body, exactly for every call.

        The body is folded as a graph whose inputs are the function's inputs (values that
        differ per call, never constants) and whose new constants are ``Constant`` nodes
        (a function has no initializers; ``Constant`` values that refer to the caller's
        attributes are not constants either). Reports name ``domain.function/node``
        (``domain.function:overload/node`` for an IR-10 overload).
        """
        graph = onnx.GraphProto()
        graph.name = function.name
        graph.node.extend(function.node)
        graph.input.extend(onnx.helper.make_empty_tensor_value_info(n) for n in function.input)
        graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in function.output)
        scope = function_scope(function)
        found = FoldOutcome()
        opset = opset_version_of(function.opset_import, default=self.opset)
        self.fold_graph(graph, None, scope, patterns, found, progress, ir_version=3, opset=opset)
        found.label_targets()
        prefix = function_label(function_id(function)) + "/"
        for fold in found.folds:
            fold.bn, fold.into = prefix + fold.bn, prefix + fold.into
        for skip in found.skipped:
            skip.bn = prefix + skip.bn
        outcome.folds += found.folds
        outcome.skipped += found.skipped
        if found.folds:
            del function.node[:]
            function.node.extend(graph.node)

    def _round(
        self,
        view: GraphView,
        patterns: Dispatcher,
        skipped: dict[str, SkippedBatchNorm],
        outcome: FoldOutcome,
        progress: Callable[[int], None] | None,
    ) -> tuple[bool, bool]:
        """One round over the graph's sites: (anything applied, anything deferred)."""
        editor = self.editor(view)
        ctx = FoldContext(view, profile=self.options.profile)
        applied = deferred = False
        sites, refused = all_sites(view, view.opset, view.shapes)
        skipped.clear()
        for node, skip, kind in refused.values():
            skipped[node.output[0]] = SkippedBatchNorm(
                node_label(node), skip.reason, skip.detail, kind
            )
        for site in sites:
            result = self._plan(ctx, editor, site, patterns)
            if isinstance(result, Skip):
                if site.bn_like and (view.scope, site.output) not in self.lowered:
                    # A Mul+Add chain's refusal is reported like a BN's (not the ones that
                    # --lower-standalone wrote: their BN was reported as lowered).
                    skipped[site.output] = SkippedBatchNorm(
                        site.label, result.reason, result.detail, site.kind
                    )
                continue
            if editor.overlaps(result):
                deferred = True
                continue
            self._apply(editor, result, outcome)
            applied = True
            if progress is not None:
                progress(1)
        editor.cleanup()
        return applied, deferred

    def _plan(
        self, ctx: FoldContext, editor: GraphEditor, site: AffineSite, patterns: Dispatcher
    ) -> Plan | Skip:
        denied = self.deny_all or self.denied.get((ctx.view.scope, site.output))
        if denied is not None:
            return denied
        try:
            result = patterns.fold(ctx, site)
        except AttributeReference as ref:  # pads=$p, transB=$t...: one value per call site
            return Skip("attribute-reference", str(ref))
        if isinstance(result, Plan):
            refusal = editor.refusal(result)
            if refusal is not None:
                return refusal
        return result

    def _apply(self, editor: GraphEditor, plan: Plan, outcome: FoldOutcome) -> None:
        plan.fold.edits = plan.describe()
        if self.options.profile.weight_ranges:
            plan.fold.weight_ranges = weight_range_changes(editor.view, plan)
        outcome.folds.append(editor.apply(plan))
        if plan.target is not None:
            outcome.targets.append((plan.fold, plan))
        if self.check_each is not None:
            found = self.check_each()
            if found is not None:
                raise _PlanBroke((editor.view.scope, plan.site_output), found)

    def _lower_remaining(
        self, view: GraphView, skipped: dict[str, SkippedBatchNorm], outcome: FoldOutcome
    ) -> bool:
        """Rewrite the BNs that stay but are plain inference affines (``lowering``), in the
        first of ``lowering_forms`` that expresses each; under a profile that lowers, one
        that none expresses stays as ``not-lowerable``."""
        editor = self.editor(view)
        lowered = False
        forms = self.options.lowering_forms()
        sites, _ = all_sites(view, view.opset, view.shapes)
        for site in sites:
            elem = view.elem_type(site.input)
            if not site.is_batchnorm or site.output not in skipped:
                continue
            if self.deny_all is not None or (view.scope, site.output) in self.denied:
                continue
            plan = None if elem is None else _lowering(view, site, elem, forms)
            if plan is None:
                if self.options.profile.lower_kept:
                    skipped[site.output] = _not_lowerable(
                        skipped[site.output], site, elem, self.options.target
                    )
                continue
            if editor.refusal(plan) is not None or editor.overlaps(plan):
                continue
            del skipped[site.output]
            self.lowered.add((view.scope, site.output))
            self._apply(editor, plan, outcome)
            lowered = True
        editor.cleanup()
        return lowered


def _lowering(view: GraphView, site: AffineSite, elem: int, forms: tuple[str, ...]) -> Plan | None:
    """A quantized BN's own lowering (``quantized``), else the first form that expresses it."""
    quantized = quantized_lowering_plan(view, site)
    if quantized is not None:
        return quantized
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    return next(
        (plan for form in forms if (plan := lowering_plan(site, dtype, form)) is not None), None
    )


def _not_lowerable(
    kept: SkippedBatchNorm, site: AffineSite, elem: int | None, target: str
) -> SkippedBatchNorm:
    """``kept`` (a BN nothing folds into) as the lowering profile ``target`` reports it."""
    if kept.reason == NOT_LOWERABLE:
        return kept
    if site.rank is None:
        why = "the rank of its input is unknown"
    elif elem is None:
        why = "the dtype of its input is unknown"
    else:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        why = (
            f"neither form runs in {dtype} at rank {site.rank} on onnxruntime's CPU provider "
            "(or x·s + t would cancel in low precision)"
        )
    return SkippedBatchNorm(
        kept.bn,
        NOT_LOWERABLE,
        f"--target {target} lowers a BatchNormalization nothing folds into, but {why}; "
        f"not folded: {kept.reason}: {kept.detail}",
        kept.kind,
    )


def _walk(nodes: Iterable[onnx.NodeProto]) -> Iterable[onnx.NodeProto]:
    for node in nodes:
        yield node
        for sub in subgraphs(node):
            yield from _walk(sub.node)


def _all_nodes(model: onnx.ModelProto) -> Iterable[onnx.NodeProto]:
    yield from _walk(model.graph.node)
    for function in model.functions:
        yield from _walk(function.node)


def count_nodes(model: onnx.ModelProto) -> int:
    """Nodes in the model, subgraphs and local function bodies included."""
    return sum(1 for _ in _all_nodes(model))


def count_batchnorms(model: onnx.ModelProto) -> int:
    """BatchNormalization nodes in the model, subgraphs and local functions included."""
    return sum(1 for node in _all_nodes(model) if is_batchnorm(node))

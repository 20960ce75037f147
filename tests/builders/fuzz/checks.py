"""The property every model must satisfy under ``bnfold.optimize``, as one checking function.

``check_optimize_is_safe(model, feeds, dtype, target=...)``, each ``optimize`` under the
deployment profile ``target`` (``bnfold.engine.targets``; ``default`` unless named):

1. ``optimize`` does not raise (a refusal is a ``Skip`` in the report, never an exception);
2. the result is a valid model wherever the input is (onnx checker with ``full_check``,
   strict shape inference), every tensor holds one value field, and IR version, opsets,
   graph inputs and graph outputs (names, types, shapes) are unchanged;
3. every BatchNormalization (subgraphs included) is either folded or reported as kept with a
   reason:
   BN folds + BNs left == BNs before, and each BN left is in ``skipped`` with a reason code
   (``folds`` may also hold per-channel Mul/Add chains); nothing folded means the model is
   byte-identical to the input;
4. the result computes what the original computes, both run by onnxruntime with every graph
   optimization disabled (``ORT_DISABLE_ALL``; onnxruntime would otherwise fold the
   reference too), within ``TOLERANCE[dtype]``; opset <= 6 models, which onnxruntime has no
   kernels for, run under ``legacy_runtime`` (onnx's reference evaluator, legacy broadcasting);
5. idempotence: ``optimize`` of the result folds nothing and returns the same bytes;
6. the report is true of the written model: every fold's ``into`` is a node label in it
   (``node.name`` or ``<OpType:first output>``; a ``bn-affine`` merge whose BN folded on
   names where it finally went), every kept BN's label is a BN in it; and of the input
   (``report_truth``): each folded BN named as the input names it, once, and a refusal
   about a BN's own node true of that node.

Tolerance, per output: ``max|folded - original| <= rtol * max|original| + atol``. Folding
re-associates ``s * (W x + b) + t`` into ``(s W) x + (s b + t)``: one extra rounding of each
folded weight (relative ``2**-24`` in float32, ``2**-11`` in float16) and a different
summation order, each contributing a few units in the last place relative to the layer's
output magnitude, over at most ``MAX_STEPS`` layers. float32: ``rtol = 1e-4`` (about 800
units in the last place: room for depth and fan-in, yet a wrong fold, which is off by O(1)
relative, fails by orders of magnitude); ``atol = 1e-5`` for outputs that are all near 0.
float16: the same reasoning with ``2**-11``: ``rtol = 5e-2, atol = 2e-3``, measured against
the same model run in float32, and also passing when the folded error is at most twice the
unfolded float16 model's own error (``assert_no_worse_in_float16``: a chain of BNs with tiny
variances amplifies the original's per-op roundings, which the fold removes); values past
half of float16's range are left out (either side may overflow there). ``rtol`` was 2e-2
until a 3000-example run found a float16 Gemm → BN → BN → BN → BN whose folded output was
2.2% off the float32 truth (bound 2%): when the folded bias ``s·b + t`` is many times larger
than the output it cancels down to, its one float16 rounding (the fold's reported
``rounding_error``) is a larger share of the output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import onnx

import bnfold
from bnfold.engine.functions import batchnorms_per_call
from bnfold.engine.targets import DEFAULT_TARGET
from tests.builders.report_truth import assert_reports_true_of_input

TOLERANCE = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float16): (5e-2, 2e-3),
    np.dtype(np.float64): (1e-9, 1e-12),
}


def run_without_optimizations(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # a folded model the runtime refuses raises; no log spam
    options.intra_op_num_threads = 1  # reproducible summation order, and kind to 2 cores
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


class PropertyViolation(AssertionError):
    """A failed property, tagged with its kind (one of ``CATEGORIES``) so a corpus run can
    count them (``run_edge_corpus.py``)."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(f"[{category}] {message}")
        self.category = category


CATEGORIES = (
    "crash",  # optimize raised on a valid model
    "input-modified",  # optimize changed the ModelProto it was given
    "invalid-output",  # checker, inference, shapes, IR/opsets/IO changed, or the runtime refuses it
    "false-report",  # a count, reason or name in the report is not true of the written model
    "wrong-fold",  # the written model computes something else
    "non-idempotent",  # a second optimize folds again or writes other bytes
)


class _Violations:
    """Where failures go: raised at once (the default; hypothesis shrinks the first), or,
    with ``collect``, recorded so that one run reports every property that broke."""

    def __init__(self, collect: list[PropertyViolation] | None) -> None:
        self.collect = collect
        self.failed: set[str] = set()

    @contextmanager
    def check(self, category: str) -> Iterator[None]:
        """Report any failure inside the block as a ``PropertyViolation`` of ``category``."""
        try:
            yield
        except Exception as error:
            found = (
                error
                if isinstance(error, PropertyViolation)
                else PropertyViolation(category, f"{type(error).__name__}: {error}")
            )
            if self.collect is None:
                raise found from error
            self.failed.add(found.category)
            self.collect.append(found)


def check_optimize_is_safe(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]],
    dtype: np.dtype,
    *,
    lower_standalone: bool = False,
    target: str = DEFAULT_TARGET,
    collect: list[PropertyViolation] | None = None,
) -> bnfold.OptimizeResult | None:
    """Assert properties 1-6 above; return the result for further checks. A failure is a
    ``PropertyViolation`` whose ``category`` says which property broke; with ``collect``
    every failure is appended there instead and the checks go on (None if optimize raised).

    ``feeds`` may be a list (e.g. one per branch an ``If`` can take): each is checked.
    ``target`` is the profile of both ``optimize`` calls (the fold and the idempotence rerun).
    """
    found = _Violations(collect)
    original_bytes = model.SerializeToString()
    with found.check("crash"):
        result = bnfold.optimize(model, lower_standalone=lower_standalone, target=target)
        folded = result.model
    if "crash" in found.failed:
        return None
    with found.check("input-modified"):
        assert model.SerializeToString() == original_bytes, "optimize modified its input proto"

    with found.check("invalid-output"):
        assert_still_valid(model, folded)
        assert folded.ir_version == model.ir_version
        assert list(folded.opset_import) == list(model.opset_import)
        assert list(folded.graph.input) == list(model.graph.input)
        assert list(folded.graph.output) == list(model.graph.output), "graph outputs changed"

    report = result.report
    with found.check("false-report"):
        before, after = batchnorm_count_all(model), batchnorm_count_all(folded)
        if report.functions:  # functions inlined: each call site's BN counts (and folds)
            before, after = batchnorms_per_call(model), batchnorms_per_call(folded)
        bn_folds = [f for f in report.folds if f.kind == "BatchNormalization"]
        assert len(bn_folds) + after == before, (len(bn_folds), after, before)
        kept = {label for label, node in labelled_nodes(folded) if _is_bn(node)}
        reasons = {skip.bn: skip.reason for skip in report.skipped}
        assert all(reasons.get(label) for label in kept), (kept, report.skipped)
        assert_report_names_exist(report, folded)
        assert_reports_true_of_input(report, model)
        casts = report.counts.get("noop_casts_removed", 0)
        if not report.folds and not casts:
            assert folded.SerializeToString() == original_bytes, "nothing folded, yet it changed"
        elif not report.folds:  # only no-op Casts went: the rest as it was
            kept_nodes = [n for n in model.graph.node if n.op_type != "Cast"]
            assert [n.op_type for n in folded.graph.node if n.op_type != "Cast"] == [
                n.op_type for n in kept_nodes
            ], "only no-op Casts removed, yet other nodes changed"
            assert len(folded.graph.node) == len(model.graph.node) - casts

    for one_feeds in [feeds] if isinstance(feeds, dict) else feeds:
        _assert_same_outputs(model, folded, one_feeds, dtype, report.folds, found)

    with found.check("crash"):
        again = bnfold.optimize(folded, lower_standalone=lower_standalone, target=target)
        with found.check("non-idempotent"):
            assert not again.report.folds, f"not idempotent: {again.report.folds}"
            assert again.model.SerializeToString() == folded.SerializeToString(), "other bytes"
    return result


def _assert_same_outputs(
    model: onnx.ModelProto,
    folded: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    dtype: np.dtype,
    folds: list,
    found: _Violations,
) -> None:
    """Property 4 for one set of feeds (the original must run: if not, the case is broken)."""
    expected = run_reference(model, feeds)
    actual = None
    with found.check("invalid-output"):
        actual = run_reference(folded, feeds)
        assert expected.keys() == actual.keys()
    if actual is None or expected.keys() != actual.keys():
        return
    truth = None
    if np.dtype(dtype) == np.float16:
        truth = run_reference(as_float32(model), _as_float32_feeds(feeds))
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    with found.check("wrong-fold"):
        _compare_outputs(expected, actual, truth, rtol, atol, folds)


def _compare_outputs(
    expected: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    truth: dict[str, np.ndarray] | None,
    rtol: float,
    atol: float,
    folds: list,
) -> None:
    for name, reference in expected.items():
        got = actual[name]
        assert got.shape == reference.shape and got.dtype == reference.dtype, name
        if truth is None:
            _assert_close(name, got, reference, rtol, atol, folds)
        else:
            assert_no_worse_in_float16(name, got, reference, truth[name], rtol, atol)


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime with every optimization off; opset <= 6 (no onnxruntime kernels for
    Add-6, BatchNormalization-6, Gemm-6...): onnx's reference evaluator with the legacy rules."""
    if _default_opset(model) <= 6:
        from tests.builders.legacy_runtime import run_legacy

        return run_legacy(model, feeds)
    return run_without_optimizations(model, feeds)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def walk_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for each in walk_graphs(graph):
        yield from each.node


def walk_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph in it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from walk_graphs(attribute.g)
            for sub in attribute.graphs:
                yield from walk_graphs(sub)


def batchnorm_count_all(model: onnx.ModelProto) -> int:
    """BatchNormalization nodes in the model, subgraphs and local function bodies included."""
    return sum(_is_bn(node) for _, node in labelled_nodes(model))


def assert_still_valid(model: onnx.ModelProto, folded: onnx.ModelProto) -> None:
    """Property 2: the full checker (which includes strict shape inference with type checks)
    passes on the folded model wherever it passes on the input, surviving tensors keep their
    shapes, and every tensor holds exactly one value field."""
    if _passes(lambda: onnx.checker.check_model(model, full_check=True)):
        onnx.checker.check_model(folded, full_check=True)
    assert_shapes_kept(model, folded)
    for tensor in all_tensors(folded):
        fields = [name for name in VALUE_FIELDS if _has_field(tensor, name)]
        assert len(fields) <= 1, f"tensor {tensor.name!r} holds {fields}"


def assert_shapes_kept(model: onnx.ModelProto, folded: onnx.ModelProto) -> None:
    """Every tensor name of the main graph that survives the fold keeps its inferred shape
    and rank (a name that stays denotes the same value; issue 10, class 4)."""
    before, after = _inferred_shapes(model), _inferred_shapes(folded)
    for name, shape in after.items():
        old = before.get(name)
        if old is None or shape is None:
            continue
        assert len(old) == len(shape), f"{name!r}: rank {len(old)} became {len(shape)}"
        for was, now in zip(old, shape, strict=True):
            assert was is None or now is None or was == now, f"{name!r}: {old} became {shape}"


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...] | None]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer has no shapes to compare
        return {}
    graph = inferred.graph
    shapes: dict[str, tuple[int | None, ...] | None] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            shapes[value.name] = None
            continue
        shapes[value.name] = tuple(
            d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim
        )
    for tensor in graph.initializer:
        shapes.setdefault(tensor.name, tuple(tensor.dims))
    return shapes


# Where a TensorProto may keep its values; exactly one may be set (onnx checker's rule).
VALUE_FIELDS = (
    "raw_data",
    "float_data",
    "double_data",
    "int32_data",
    "int64_data",
    "uint64_data",
    "string_data",
    "external_data",
)


def _has_field(tensor: onnx.TensorProto, name: str) -> bool:
    if name == "raw_data":
        return tensor.HasField("raw_data")
    return len(getattr(tensor, name)) > 0


def _passes(check: Callable[[], object]) -> bool:
    try:
        check()
    except Exception:  # noqa: BLE001 - any failure of the check is the answer "no"
        return False
    return True


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initializers and Constant values of every graph."""
    for graph in walk_graphs(model.graph):
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    yield attribute.t


def node_labels(model: onnx.ModelProto) -> set[str]:
    """The report's name of every node in the model (subgraphs and local functions
    included; a function's as ``domain.function/node``)."""
    return {label for label, _ in labelled_nodes(model)}


def labelled_nodes(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.NodeProto]]:
    for node in walk_nodes(model.graph):
        yield _label(node), node
    for function in model.functions:
        prefix = f"{function.domain}.{function.name}" if function.domain else function.name
        prefix += f":{function.overload}/" if function.overload else "/"
        for inner in function.node:
            for node in walk_nodes(onnx.helper.make_graph([inner], "f", [], [])):
                yield prefix + _label(node), node


def _is_bn(node: onnx.NodeProto) -> bool:
    return node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx")


def assert_report_names_exist(report: object, folded: onnx.ModelProto) -> None:
    """Property 6: every fold's ``into`` names a node of the written model, and every BN the
    report says it kept is a BatchNormalization of the written model."""
    labels = node_labels(folded)
    kept = {label for label, node in labelled_nodes(folded) if _is_bn(node)}
    folds = report.folds  # type: ignore[attr-defined]
    lowered = {f.into for f in folds if getattr(f, "pattern", "") == "lower-standalone"}
    for fold in report.folds:  # type: ignore[attr-defined]
        if getattr(fold, "pattern", "") == "lower-standalone":
            continue  # its ``into`` is "Mul+Add", what the BN became, not a node label
        if getattr(fold, "via", "") and fold.into in lowered:
            continue  # merged into a BN that was lowered later: it went into the Mul+Add
        # One label, or several joined by ", " (a fold into more than one node).
        targets = [fold.into] if fold.into in labels else fold.into.split(", ")
        missing = [target for target in targets if target not in labels]
        assert not missing, f"report: folded into {missing}, no such node {sorted(labels)}"
    constants = _constant_names(folded)
    for skip in report.skipped:  # type: ignore[attr-defined]
        for name in re.findall(r"'([^']+)' is a constant", skip.detail):
            assert name in constants, f"report on {skip.bn}: {name!r} is not a constant"
        if getattr(skip, "kind", "BatchNormalization") != "BatchNormalization":
            # A kept Mul/Add chain is named after its last node.
            assert skip.bn in labels, f"report: kept chain {skip.bn!r}, no such node"
            continue
        assert skip.bn in kept, (
            f"report: kept {skip.bn!r}, no such BatchNormalization {sorted(kept)}"
        )


def _constant_names(model: onnx.ModelProto) -> set[str]:
    """Names that are constants in some graph of the model (initializers that are not also
    overridable graph inputs at IR >= 4, and Constant outputs); a name reused across scopes
    counts if any scope makes it a constant (a lenient, never-false test)."""
    names: set[str] = set()
    for graph in walk_graphs(model.graph):
        inputs = {value.name for value in graph.input}
        names.update(
            t.name for t in graph.initializer if model.ir_version < 4 or t.name not in inputs
        )
        names.update(n.output[0] for n in graph.node if n.op_type == "Constant")
    return names


def _label(node: onnx.NodeProto) -> str:
    """How the report names a node: its name, or ``<OpType:first output>``."""
    return node.name or f"<{node.op_type}:{node.output[0]}>"


def _assert_close(
    name: str, got: np.ndarray, reference: np.ndarray, rtol: float, atol: float, folds: list
) -> None:
    ref64, got64 = reference.astype(np.float64), got.astype(np.float64)
    # NaN/Inf where the original has them (e.g. a kept BN with a negative variance) must be
    # exactly there in the folded model too; the finite rest is compared with the bound.
    special = ~np.isfinite(ref64)
    if special.any():
        assert np.array_equal(np.isnan(got64), np.isnan(ref64)), f"{name}: NaN moved"
        assert np.array_equal(got64[np.isinf(ref64)], ref64[np.isinf(ref64)]), f"{name}: Inf moved"
        ref64, got64 = ref64[~special], got64[~special]
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    error = float(np.max(np.abs(got64 - ref64))) if ref64.size else 0.0
    assert error <= rtol * scale + atol, (
        f"{name}: max |folded - original| = {error:.3e}, bound {rtol * scale + atol:.3e} "
        f"(scale {scale:.3e}); folds: {[(f.bn, f.into, f.pattern) for f in folds]}"
    )


# Half of float16's largest value: past it, rounding a float64 result once (folded) or step
# by step (original) can overflow to inf on one side only, which says nothing about the fold.
FLOAT16_SAFE = 32752.0


def assert_no_worse_in_float16(
    name: str,
    got: np.ndarray,
    original: np.ndarray,
    truth: np.ndarray,
    rtol: float,
    atol: float,
) -> None:
    """float16: judged against the same model run in float32 (``truth``).

    The unfolded float16 model rounds after every op, and a chain of BNs with tiny variances
    amplifies those roundings; the folded one rounds once. So the fold passes when its error
    is within the usual bound, or at most twice the original's own float16 error.
    """
    truth64 = truth.astype(np.float64)
    usable = np.isfinite(truth64) & (np.abs(truth64) <= FLOAT16_SAFE)
    if not usable.any():
        return
    truth64 = truth64[usable]
    scale = float(np.max(np.abs(truth64)))

    def error(values: np.ndarray) -> float:
        difference = np.abs(values.astype(np.float64)[usable] - truth64)
        return float(np.max(np.nan_to_num(difference, nan=np.inf)))

    original_error, folded_error = error(original), error(got)
    bound = max(2 * original_error, rtol * scale) + atol
    assert folded_error <= bound, (
        f"{name}: float16 folded error {folded_error:.3e} vs float32, original's own "
        f"{original_error:.3e}, bound {bound:.3e} (scale {scale:.3e})"
    )


def as_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model computing in float32: in every graph (subgraphs included), float16
    initializers (any value field), Constant values, ``Cast(to=float16)``, inputs, outputs and
    value infos become float32."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for graph in walk_graphs(twin.graph):
        for index, tensor in enumerate(graph.initializer):
            if tensor.data_type == half:
                graph.initializer[index].CopyFrom(_float32_tensor(tensor))
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == half:
                    attribute.t.CopyFrom(_float32_tensor(attribute.t))
                if node.op_type == "Cast" and attribute.name == "to" and attribute.i == half:
                    attribute.i = single
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.tensor_type.elem_type == half:
                value.type.tensor_type.elem_type = single
    return twin


def _float32_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    from onnx import numpy_helper

    values = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(values, tensor.name)


def _as_float32_feeds(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        name: value.astype(np.float32) if value.dtype == np.float16 else value
        for name, value in feeds.items()
    }

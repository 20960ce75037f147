"""The property every model must satisfy under ``bnfold.optimize``, as one checking function.

``check_optimize_is_safe(model, feeds, dtype)``:

1. ``optimize`` does not raise (a refusal is a ``Skip`` in the report, never an exception);
2. the result is a valid model (onnx checker, full check) with the same IR version, opsets,
   graph inputs and graph outputs (names and types);
3. every BatchNormalization is either folded or reported as kept with a reason:
   BN folds + BNs left == BNs before, and each BN left is in ``skipped`` with a reason code
   (``folds`` may also hold per-channel Mul/Add chains); nothing folded means the model is
   byte-identical to the input;
4. the result computes what the original computes, both run by onnxruntime with every graph
   optimization disabled (``ORT_DISABLE_ALL``; onnxruntime would otherwise fold the
   reference too), within ``TOLERANCE[dtype]``;
5. idempotence: ``optimize`` of the result folds nothing and returns the same bytes.

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

import numpy as np
import onnx

import bnfold
from tests.helpers import batchnorm_count

TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float16): (5e-2, 2e-3)}


def run_without_optimizations(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # reproducible summation order, and kind to 2 cores
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def check_optimize_is_safe(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    dtype: np.dtype,
    *,
    lower_standalone: bool = False,
) -> bnfold.OptimizeResult:
    """Assert properties 1-5 above; return the result for further checks."""
    original_bytes = model.SerializeToString()
    result = bnfold.optimize(model, lower_standalone=lower_standalone)
    folded = result.model
    assert model.SerializeToString() == original_bytes, "optimize modified its input proto"

    onnx.checker.check_model(folded, full_check=True)
    assert folded.ir_version == model.ir_version
    assert list(folded.opset_import) == list(model.opset_import)
    assert list(folded.graph.input) == list(model.graph.input)
    assert list(folded.graph.output) == list(model.graph.output)

    report = result.report
    before, after = batchnorm_count(model), batchnorm_count(folded)
    bn_folds = [f for f in report.folds if f.kind == "BatchNormalization"]
    assert len(bn_folds) + after == before, (len(bn_folds), after, before)
    kept = {_label(node) for node in folded.graph.node if node.op_type == "BatchNormalization"}
    reasons = {skip.bn: skip.reason for skip in report.skipped}
    assert all(reasons.get(label) for label in kept), (kept, report.skipped)
    if not report.folds:
        assert folded.SerializeToString() == original_bytes, "nothing folded, yet it changed"

    expected = run_without_optimizations(model, feeds)
    actual = run_without_optimizations(folded, feeds)
    assert expected.keys() == actual.keys()
    truth = None
    if np.dtype(dtype) == np.float16:
        truth = run_without_optimizations(as_float32(model), _as_float32_feeds(feeds))
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    for name, reference in expected.items():
        got = actual[name]
        assert got.shape == reference.shape and got.dtype == reference.dtype, name
        if truth is None:
            _assert_close(name, got, reference, rtol, atol, report.folds)
        else:
            assert_no_worse_in_float16(name, got, reference, truth[name], rtol, atol)

    again = bnfold.optimize(folded, lower_standalone=lower_standalone)
    assert not again.report.folds, f"not idempotent: {again.report.folds}"
    assert again.model.SerializeToString() == folded.SerializeToString()
    return result


def _label(node: onnx.NodeProto) -> str:
    """How the report names a node: its name, or ``<OpType:first output>``."""
    return node.name or f"<{node.op_type}:{node.output[0]}>"


def _assert_close(
    name: str, got: np.ndarray, reference: np.ndarray, rtol: float, atol: float, folds: list
) -> None:
    ref64, got64 = reference.astype(np.float64), got.astype(np.float64)
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
    """The same model computing in float32: float16 initializers, inputs, outputs and value
    infos become float32 (enough for the fuzz models: they hold no Cast or Constant nodes)."""
    from onnx import numpy_helper

    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    for index, tensor in enumerate(twin.graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            values = numpy_helper.to_array(tensor).astype(np.float32)
            twin.graph.initializer[index].CopyFrom(numpy_helper.from_array(values, tensor.name))
    for value in [*twin.graph.input, *twin.graph.output, *twin.graph.value_info]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return twin


def _as_float32_feeds(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        name: value.astype(np.float32) if value.dtype == np.float16 else value
        for name, value in feeds.items()
    }

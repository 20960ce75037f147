"""Run opset <= 6 models, which onnxruntime has no kernels for (Add-6, Mul-6, Gemm-6,
BatchNormalization-6...), with ``onnx.reference.ReferenceEvaluator`` plus the legacy rules
onnx's reference implements wrongly or not at all.

Legacy broadcasting (Add/Sub/Mul/Div-1..6, Gemm-6's C): without ``broadcast=1`` both inputs
must have the same shape (anything else is an error, as in onnxruntime's old kernels); with
it, B's shape matches A's dims starting at ``axis`` (default: B's dims are A's last ones),
so ``A[N, C, H, W] · B[C]`` with ``axis=1`` scales channels, not columns. Spec:
https://github.com/onnx/onnx/blob/main/docs/Changelog.md#Add-6 and #Gemm-6.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun


def legacy_broadcast(a: np.ndarray, b: np.ndarray, broadcast: int | None, axis: int | None):
    """B reshaped so numpy broadcasting applies the legacy rule (see the module docstring)."""
    if not broadcast:
        if a.shape != b.shape:
            raise ValueError(f"legacy op without broadcast=1: shapes {a.shape} and {b.shape}")
        return b
    start = a.ndim - b.ndim if axis is None else axis
    if start < 0 or a.shape[start : start + b.ndim] != b.shape and b.size != 1:
        raise ValueError(f"legacy broadcast of {b.shape} into {a.shape} at axis {start}")
    if b.size == 1 and b.ndim:
        return b.reshape(())
    return b.reshape(b.shape + (1,) * (a.ndim - start - b.ndim))


def _binary(function):  # type: ignore[no-untyped-def]
    class Binary(OpRun):
        op_domain = ""

        def _run(self, a, b, broadcast=None, axis=None, consumed_inputs=None):  # type: ignore[no-untyped-def]
            return (function(a, legacy_broadcast(a, b, broadcast, axis)).astype(a.dtype),)

    return Binary


Add = type("Add", (_binary(np.add),), {})
Sub = type("Sub", (_binary(np.subtract),), {})
Mul = type("Mul", (_binary(np.multiply),), {})
Div = type("Div", (_binary(np.divide),), {})


class BatchNormalization(OpRun):
    """BN-1..6 in inference mode (``is_test=1``), per channel on axis 1 (``spatial=1``)."""

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, **attributes):  # type: ignore[no-untyped-def]
        epsilon = attributes.get("epsilon")
        epsilon = 1e-5 if epsilon is None else epsilon
        shape = (1, -1) + (1,) * (x.ndim - 2)
        wide = [np.asarray(p, np.float64).reshape(shape) for p in (scale, bias, mean, var)]
        gamma, beta, mu, sigma2 = wide
        out = (x.astype(np.float64) - mu) / np.sqrt(sigma2 + epsilon) * gamma + beta
        return (out.astype(x.dtype),)


class Gemm(OpRun):
    """Gemm-6: ``alpha·A'·B' + beta·C`` with C broadcast only when ``broadcast=1``."""

    op_domain = ""

    def _run(self, a, b, c, alpha=None, beta=None, broadcast=None, transA=None, transB=None):  # type: ignore[no-untyped-def]
        a = a.T if transA else a
        b = b.T if transB else b
        product = (1.0 if alpha is None else alpha) * (a @ b)
        if not broadcast and c.shape != product.shape:
            raise ValueError(f"Gemm-6 without broadcast=1: C {c.shape}, A·B {product.shape}")
        out = product + (1.0 if beta is None else beta) * c
        return (out.astype(a.dtype),)


LEGACY_OPS = [Add, Sub, Mul, Div, BatchNormalization, Gemm]


def run_legacy(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name, computed by onnx's reference evaluator with the legacy kernels."""
    session = ReferenceEvaluator(model, new_ops=LEGACY_OPS)
    names = [output.name for output in model.graph.output]
    return dict(zip(names, session.run(names, feeds), strict=True))

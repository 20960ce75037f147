"""Which quantized kernels onnxruntime formed: what a quantized fold's gain comes from.

A BatchNormalization between a QDQ Conv and its output Q keeps onnxruntime's QDQ fusion from
turning ``DQ -> Conv -> Q`` into ``QLinearConv`` (integer arithmetic); after the fold it can.
So for a model with QuantizeLinear/DequantizeLinear nodes, bench asks onnxruntime for its
optimized graph at each level (``SessionOptions.optimized_model_filepath``, CPU, into a
temporary folder) and counts the quantized kernels in it (``QUANTIZED_KERNELS``). The count
is reported beside the latency; it is never part of a verdict.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import onnx

from ..runtime.session import session_options
from ..storage.load import LoadedModel

QUANTIZED_KERNELS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "QGemm",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QLinearConcat",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearSoftmax",
        "QAttention",
    }
)
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


def is_quantized(loaded: LoadedModel) -> bool:
    """The model has QDQ nodes or quantized kernels in its top-level graph."""
    return any(n.op_type in _QDQ or n.op_type in QUANTIZED_KERNELS for n in loaded.model.graph.node)


def quantized_kernels(loaded: LoadedModel, level: str) -> dict[str, int] | str:
    """``{op type: count}`` of the quantized kernels in onnxruntime's optimized graph of
    ``loaded`` at ``level`` on CPU, or why it could not be read."""
    import onnxruntime as ort

    if loaded.path is None and loaded.has_external_data:
        return "an in-memory model with external data: its optimized graph is not written"
    source: str | bytes = (
        str(loaded.path) if loaded.path is not None else loaded.model.SerializeToString()
    )
    with tempfile.TemporaryDirectory(prefix="bnfold-kernels-") as folder:
        target = Path(folder) / "optimized.onnx"
        options = session_options(level)
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3  # not the "hardware specific optimizations" warning
        try:
            ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
            optimized = onnx.load(str(target), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - a note, never a failure of the bench
            return (
                f"optimized graph not read: {(str(exc).strip().splitlines() or ['error'])[0][:200]}"
            )
    counts = Counter(n.op_type for n in optimized.graph.node if n.op_type in QUANTIZED_KERNELS)
    return dict(sorted(counts.items()))


def kernel_notes(
    original: LoadedModel, candidate: LoadedModel, levels: list[str]
) -> tuple[dict[str, dict[str, dict[str, int] | str]], list[str]]:
    """``({role: {level: counts or reason}}, notes)`` when either model is quantized, else
    nothing."""
    if not (is_quantized(original) or is_quantized(candidate)):
        return {}, []
    found: dict[str, dict[str, dict[str, int] | str]] = {}
    for role, loaded in (("original", original), ("candidate", candidate)):
        found[role] = {level: quantized_kernels(loaded, level) for level in levels}
    notes = []
    for level in levels:
        parts = []
        for role in ("original", "candidate"):
            value = found[role][level]
            text = (
                value
                if isinstance(value, str)
                else ", ".join(f"{op} x{count}" for op, count in value.items()) or "none"
            )
            parts.append(f"{role} {text}")
        notes.append(
            f"quantized kernels at {level} (onnxruntime's optimized graph on cpu): {'; '.join(parts)}"
        )
    return found, notes

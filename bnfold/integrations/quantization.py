"""``quantize_int8``: bnfold's quantization-prep profile, then onnxruntime's static quantization.

onnxruntime's ``quantize_static`` cannot quantize a BatchNormalization, and its
``quant_pre_process`` folds a BN only where its own BASIC level does (straight after a Conv).
A BN after an activation (``Conv → Relu → BN``, onnxruntime issue #9938) therefore stays as a
float island between ``DequantizeLinear`` and ``QuantizeLinear``. The hand-off::

    bnfold.optimize(target="quantize")      every exact fold, splits included (scale
        |                                    ``s = γ/sqrt(σ² + ε)`` into the Conv, shift
        |                                    ``t = β − μ·s`` kept as one Add where it must stay)
    quant_pre_process                        onnxruntime's shape inference and BASIC level
        |
    quantize_static(QDQ, per-channel)        calibrated on the caller's data reader

``float_islands`` says what still runs in float afterwards: the affine and linear nodes
(BatchNormalization, Mul, Add, Conv, MatMul, ...) of onnxruntime's own ``ORT_ENABLE_ALL``
graph of the quantized model, where every quantized node has become a ``QLinear*`` or
integer kernel.

onnxruntime.quantization is imported only when a function here runs.
"""

from __future__ import annotations

import collections
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ..api import optimize
from ..engine.report import FoldReport
from ..errors import OutputWriteError

# Ops that do arithmetic in float when onnxruntime runs them: affine (what a BN is, or
# becomes as Mul/Add or a 1×1 depthwise Conv) and linear layers, fused or in NCHWc layout.
FLOAT_COMPUTE_OPS = frozenset(
    {
        "BatchNormalization",
        "Mul",
        "Add",
        "Sub",
        "Div",
        "Conv",
        "FusedConv",
        "ConvTranspose",
        "Gemm",
        "FusedGemm",
        "MatMul",
        "FusedMatMul",
    }
)


@dataclass
class QuantizeResult:
    """What ``quantize_int8`` wrote: the int8 QDQ model (``path``), the two intermediate
    files (``prepared``: bnfold's output; ``preprocessed``: ``quant_pre_process``'s) and the
    fold report of the first step."""

    path: Path
    prepared: Path
    preprocessed: Path
    report: FoldReport


def quantize_int8(
    model: str | Path | onnx.ModelProto,
    output: str | Path,
    calibration: Any,
    *,
    target: str = "quantize",
    per_channel: bool = True,
    work: str | Path | None = None,
) -> QuantizeResult:
    """Fold for ``target``, run ``quant_pre_process``, then ``quantize_static`` to ``output``.

    ``calibration`` is an ``onnxruntime.quantization.CalibrationDataReader`` over the model's
    inputs. The format is QDQ, activations uint8 and weights int8 (U8S8), weights
    ``per_channel``. The intermediate files go to ``work`` (default: beside ``output``), named
    ``OUTPUT.prep.onnx`` and ``OUTPUT.prep.pre.onnx``. A missing folder raises
    ``OutputWriteError`` before any work.
    """
    output = Path(output)
    folder = Path(work) if work is not None else output.parent
    for needed in (folder, output.parent):
        if not needed.is_dir():
            raise OutputWriteError(f"folder {needed} does not exist", hint="create it first")
    prepared = folder / f"{output.stem}.prep.onnx"
    preprocessed = folder / f"{output.stem}.prep.pre.onnx"
    result = optimize(model, target=target)
    onnx.save(result.model, prepared)
    quantize_with_onnxruntime(
        prepared, output, calibration, per_channel=per_channel, pre=preprocessed
    )
    return QuantizeResult(output, prepared, preprocessed, result.report)


def quantize_with_onnxruntime(
    model: str | Path,
    output: str | Path,
    calibration: Any,
    *,
    per_channel: bool = True,
    pre: str | Path | None = None,
) -> None:
    """onnxruntime's pipeline alone: ``quant_pre_process`` (to ``pre``, or a temporary file),
    then ``quantize_static`` (QDQ, uint8 activations, int8 weights) to ``output``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        preprocessed = Path(pre) if pre is not None else Path(folder) / "pre.onnx"
        quant_pre_process(str(model), str(preprocessed))
        quantize_static(
            str(preprocessed),
            str(output),
            calibration,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def float_islands(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Op type → count of the float affine and linear nodes (``FLOAT_COMPUTE_OPS``) in
    onnxruntime's ``ORT_ENABLE_ALL`` graph of ``model``: what still runs in float after
    quantization. Empty when everything quantized."""
    return {op: n for op, n in optimized_ops(model).items() if op in FLOAT_COMPUTE_OPS}


def optimized_ops(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Op type → count in onnxruntime's ``ORT_ENABLE_ALL`` graph of ``model`` on the CPU
    provider (``SessionOptions.optimized_model_filepath``): a quantized node appears there as
    its ``QLinear*`` or integer kernel, a float one as itself."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(sorted(collections.Counter(node.op_type for node in graph.node).items()))

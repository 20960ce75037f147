"""bnfold's QDQ folds against a hand fold written here in numpy, independently of bnfold.

The hand fold does only what issue 24 asks of a fold into a quantized layer: the BN (or its
Mul/Add) goes, the weight DequantizeLinear's per-channel scale becomes ``scale · s``, the int32
bias is re-quantized as ``round((s·b + t) / (x_scale · scale · s))`` at scale ``x_scale ·
scale · s``; nothing else changes. bnfold's output must form exactly as many quantized kernels
in onnxruntime's optimized graph (``ORT_ENABLE_ALL``) as the hand fold, with the same
dequantized weights and biases (float32 rounding apart) and outputs within one step.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import bnfold
from tests.builders.graphs import random_feeds, run_unoptimized
from tests.builders.qdq import QdqSpec, qdq_conv_model, qdq_dense_model

# onnxruntime's integer kernels (CPU): what a QDQ layer becomes when it is fused
QUANTIZED_KERNELS = frozenset(
    {"ConvInteger", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm"}
)
OUTPUT_STEP = 0.04  # the scale of the models' last QuantizeLinear


def _kernels(model: onnx.ModelProto) -> Counter[str]:
    """The quantized op types in onnxruntime's optimized CPU graph at ``ORT_ENABLE_ALL``."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "optimized.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ops = [node.op_type for node in onnx.load(path).graph.node]
    return Counter(op for op in ops if op.startswith("QLinear") or op in QUANTIZED_KERNELS)


def _arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(value, name))


def _hand_fold(
    model: onnx.ModelProto, prefix: str, s: np.ndarray, t: np.ndarray, removed: list[str]
) -> None:
    """Fold ``s·y + t`` into layer ``prefix`` (its ``w_scale``, ``b``, ``b_scale``, ``x_scale``
    initializers) and remove the nodes named ``removed``, rewiring their readers."""
    values = _arrays(model)
    w_scale = (values[prefix + "w_scale"].astype(np.float64) * s).astype(np.float32)
    bias = values[prefix + "b"].astype(np.float64) * values[prefix + "b_scale"]
    b_scale = (values[prefix + "x_scale"].astype(np.float64) * w_scale).astype(np.float32)
    _set(model, prefix + "w_scale", w_scale)
    _set(model, prefix + "b", np.rint((s * bias + t) / b_scale).astype(np.int32))
    _set(model, prefix + "b_scale", b_scale)
    nodes = {node.name: node for node in model.graph.node}
    for name in removed:
        gone = nodes[name]
        for node in model.graph.node:
            for i, value in enumerate(node.input):
                if value == gone.output[0]:
                    node.input[i] = gone.input[0]
        model.graph.node.remove(gone)


def _hand_folded_convs(spec: QdqSpec) -> onnx.ModelProto:
    model = qdq_conv_model(spec)
    values = _arrays(model)
    for i in range(spec.layers):
        p = f"l{i}_"
        gamma, beta, mean, var = (
            values[p + n].astype(np.float64) for n in ("gamma", "beta", "mean", "var")
        )
        s = gamma / np.sqrt(var + 1e-5)  # BatchNormalization's default epsilon
        _hand_fold(model, p, s, beta - mean * s, [p + "bn"])
    return model


def _hand_folded_gemm() -> onnx.ModelProto:
    model = qdq_dense_model("Gemm")
    values = _arrays(model)
    s, t = values["gamma"].astype(np.float64), values["beta"].astype(np.float64)
    _hand_fold(model, "", s, t, ["bn_mul", "bn_add"])
    return model


def _dequantized_constants(model: onnx.ModelProto) -> list[np.ndarray]:
    """Each DequantizeLinear of constants, evaluated in float64, in node order."""
    values = _arrays(model)
    out = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in values:
            continue
        q = values[node.input[0]].astype(np.float64)
        scale = values[node.input[1]].astype(np.float64)
        zero = values[node.input[2]].astype(np.float64) if len(node.input) > 2 else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        out.append((q - np.reshape(zero, shape if np.ndim(zero) else ())) * scale.reshape(shape))
    return out


CASES = {
    "4-layer Conv": (
        lambda: qdq_conv_model(QdqSpec(layers=4, final_q=True)),
        lambda: _hand_folded_convs(QdqSpec(layers=4, final_q=True)),
    ),
    "Gemm": (lambda: qdq_dense_model("Gemm"), _hand_folded_gemm),
}


@pytest.mark.parametrize("case", CASES)
def test_bnfold_forms_the_quantized_kernels_a_hand_fold_forms(case: str) -> None:
    build, hand_fold = CASES[case]
    original, hand = build(), hand_fold()
    folded = bnfold.optimize(original).model
    onnx.checker.check_model(hand, full_check=True)
    expected = _kernels(hand)
    assert sum(expected.values()) >= sum(_kernels(original).values())
    assert _kernels(folded) == expected
    mine, theirs = _dequantized_constants(folded), _dequantized_constants(hand)
    assert len(mine) == len(theirs)
    for got, want in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    for seed in (0, 1):
        feeds = random_feeds(original, seed)
        got = run_unoptimized(folded, feeds)["y"]
        want = run_unoptimized(hand, feeds)["y"]
        assert np.max(np.abs(got - want)) <= OUTPUT_STEP * (1 + 1e-5)

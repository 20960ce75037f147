"""QDQ (quantized) models as NVIDIA ModelOpt or pytorch-quantization write them.

One layer: ``Q(x) → DQ → Conv(DQ(int8 W, scale), DQ(int32 b, x_scale·w_scale)) → BN → Relu``;
layers chain through ``QuantizeLinear → DequantizeLinear`` of the activations, and the last
one ends in a float output (``final_q=False``) or ``Q → DQ`` (onnxruntime then forms a
``QLinearConv`` for every layer whose BN is gone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graphs import make_model, tensor

QDQ_OPSET = 13


@dataclass(frozen=True)
class QdqSpec:
    """What a QDQ test model looks like."""

    layers: int = 1
    channels: int = 8
    size: int = 8
    per_channel: bool = True
    bias: str | None = "int32"  # "int32", "float" or None
    negative_gamma: bool = False  # some γ < 0
    weight_min: bool = False  # a channel holds −128 (not symmetric)
    relu: bool = True
    final_q: bool = False
    batchnorm: bool = True
    # Zero point of the activations after a Relu: "int8" (0) or "uint8" (0, the type's minimum:
    # onnxruntime then drops the Relu and forms QLinearConv; with int8 0 it fuses Conv+Relu).
    relu_zero_point: str = "uint8"
    seed: int = 0


def _symmetric(weight: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """int8 values in [−127, 127] and their scale (per output channel or per tensor)."""
    if per_channel:
        peak = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
        scale = (peak / 127).astype(np.float32)
        shaped = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    else:
        scale = np.asarray(np.abs(weight).max() / 127, dtype=np.float32)
        shaped = scale
    values = np.clip(np.rint(weight / shaped), -127, 127).astype(np.int8)
    return values, scale


def qdq_conv_model(spec: QdqSpec = QdqSpec()) -> onnx.ModelProto:
    """``spec.layers`` QDQ Conv → BN → Relu layers, ``channels`` wide, ``size``² maps."""
    rng = np.random.default_rng(spec.seed)
    c, nodes, inits = spec.channels, [], []
    current = "x"
    zero8 = np.asarray(0, dtype=np.int8)
    after_relu = np.asarray(0, dtype=np.uint8 if spec.relu_zero_point == "uint8" else np.int8)
    for i in range(spec.layers):
        p = f"l{i}_"
        x_scale = np.asarray(0.05 if i == 0 else 0.04, dtype=np.float32)
        inits += [
            numpy_helper.from_array(x_scale, p + "x_scale"),
            numpy_helper.from_array(zero8 if i == 0 or not spec.relu else after_relu, p + "x_zp"),
        ]
        nodes += [
            helper.make_node(
                "QuantizeLinear", [current, p + "x_scale", p + "x_zp"], [p + "xq"], name=p + "q"
            ),
            helper.make_node(
                "DequantizeLinear", [p + "xq", p + "x_scale", p + "x_zp"], [p + "xd"], name=p + "dq"
            ),
        ]
        # He-scaled, so each layer keeps its input's range (a trained net's gain, about 1)
        weight = rng.standard_normal((c, c, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * c))
        values, w_scale = _symmetric(weight, spec.per_channel)
        if spec.weight_min:
            values[0, 0, 0, 0] = -128
        w_zp = np.zeros(w_scale.shape, dtype=np.int8)
        inits += [
            numpy_helper.from_array(values, p + "w"),
            numpy_helper.from_array(w_scale, p + "w_scale"),
            numpy_helper.from_array(w_zp, p + "w_zp"),
        ]
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [p + "w", p + "w_scale", p + "w_zp"],
                [p + "wd"],
                name=p + "w_dq",
                axis=0,
            )
        )
        conv_inputs = [p + "xd", p + "wd"]
        float_bias = (rng.standard_normal(c) * 0.1).astype(np.float32)
        if spec.bias == "int32":
            b_scale = (x_scale * np.broadcast_to(w_scale, (c,))).astype(np.float32)
            b_q = np.rint(float_bias / b_scale).astype(np.int32)
            inits += [
                numpy_helper.from_array(b_q, p + "b"),
                numpy_helper.from_array(b_scale, p + "b_scale"),
            ]
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [p + "b", p + "b_scale"],
                    [p + "bd"],
                    name=p + "b_dq",
                    axis=0,
                )
            )
            conv_inputs.append(p + "bd")
        elif spec.bias == "float":
            inits.append(numpy_helper.from_array(float_bias, p + "b"))
            conv_inputs.append(p + "b")
        nodes.append(
            helper.make_node("Conv", conv_inputs, [p + "conv"], name=p + "conv", pads=[1, 1, 1, 1])
        )
        out = p + "conv"
        if spec.batchnorm:
            gamma = rng.uniform(0.5, 2.0, c).astype(np.float32)
            if spec.negative_gamma:
                gamma[::2] *= -1
            params = [
                gamma,
                (rng.standard_normal(c) * 0.5).astype(np.float32),
                (rng.standard_normal(c) * 0.2).astype(np.float32),
                rng.uniform(0.5, 2.0, c).astype(np.float32),
            ]
            names = [p + n for n in ("gamma", "beta", "mean", "var")]
            inits += [numpy_helper.from_array(v, n) for v, n in zip(params, names, strict=True)]
            nodes.append(
                helper.make_node("BatchNormalization", [out, *names], [p + "bn"], name=p + "bn")
            )
            out = p + "bn"
        if spec.relu:
            nodes.append(helper.make_node("Relu", [out], [p + "relu"], name=p + "relu"))
            out = p + "relu"
        current = out
    if spec.final_q:
        inits += [
            numpy_helper.from_array(np.asarray(0.04, dtype=np.float32), "y_scale"),
            numpy_helper.from_array(after_relu if spec.relu else zero8, "y_zp"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [current, "y_scale", "y_zp"], ["yq"], name="y_q"),
            helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="y_dq"),
        ]
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"], name="y_identity"))
    shape = [1, c, spec.size, spec.size]
    return make_model(
        nodes,
        [tensor("x", shape)],
        [tensor("y", shape, TensorProto.FLOAT)],
        inits,
        opset=QDQ_OPSET,
    )


def qdq_dense_model(
    op_type: str = "Gemm",
    *,
    bias: str | None = "int32",
    negative_gamma: bool = False,
    per_channel: bool = True,
    seed: int = 0,
) -> onnx.ModelProto:
    """``Q → DQ → Gemm(DQ int8 Wᵀ [N, K], transB=1)`` or ``MatMul(DQ int8 W [K, N])``, then a
    BN written as per-column ``Mul`` and ``Add``, ``Relu``, ``Q → DQ``."""
    rng = np.random.default_rng(seed)
    k, n = 16, 8
    weight = rng.standard_normal((n, k)).astype(np.float32) * 0.2
    values, w_scale = _symmetric(weight, per_channel)
    x_scale = np.asarray(0.05, dtype=np.float32)
    zero8, zero_u8 = np.asarray(0, dtype=np.int8), np.asarray(0, dtype=np.uint8)
    if op_type == "MatMul":
        values = np.ascontiguousarray(values.T)
    inits = [
        numpy_helper.from_array(x_scale, "x_scale"),
        numpy_helper.from_array(zero8, "x_zp"),
        numpy_helper.from_array(values, "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq"),
        helper.make_node(
            "DequantizeLinear",
            ["w", "w_scale", "w_zp"],
            ["wd"],
            name="w_dq",
            axis=0 if op_type == "Gemm" else 1,
        ),
    ]
    inputs = ["xd", "wd"]
    if op_type == "Gemm" and bias == "int32":
        b_scale = (x_scale * np.broadcast_to(w_scale, (n,))).astype(np.float32)
        b_q = np.rint(rng.standard_normal(n) * 0.1 / b_scale).astype(np.int32)
        inits += [numpy_helper.from_array(b_q, "b"), numpy_helper.from_array(b_scale, "b_scale")]
        nodes.append(
            helper.make_node("DequantizeLinear", ["b", "b_scale"], ["bd"], name="b_dq", axis=0)
        )
        inputs.append("bd")
    elif op_type == "Gemm" and bias == "float":
        inits.append(
            numpy_helper.from_array((rng.standard_normal(n) * 0.1).astype(np.float32), "b")
        )
        inputs.append("b")
    dense = helper.make_node(op_type, inputs, ["h"], name="dense")
    if op_type == "Gemm":
        dense.attribute.append(helper.make_attribute("transB", 1))
    nodes.append(dense)
    gamma = rng.uniform(0.5, 2.0, n).astype(np.float32)
    if negative_gamma:
        gamma[::2] *= -1
    inits += [
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array((rng.standard_normal(n) * 0.5).astype(np.float32), "beta"),
        numpy_helper.from_array(np.asarray(0.04, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(zero_u8, "y_zp"),
    ]
    nodes += [
        helper.make_node("Mul", ["h", "gamma"], ["hm"], name="bn_mul"),
        helper.make_node("Add", ["hm", "beta"], ["ha"], name="bn_add"),
        helper.make_node("Relu", ["ha"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["yq"], name="y_q"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="y_dq"),
    ]
    return make_model(nodes, [tensor("x", [2, k])], [tensor("y", [2, n])], inits, opset=QDQ_OPSET)


def qdq_standalone_bn_model(channels: int = 8, size: int = 6, seed: int = 0) -> onnx.ModelProto:
    """``Q → DQ → BatchNormalization → Q → DQ``: a quantized BN no layer takes."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    gamma[::3] *= -1
    params = [
        gamma,
        (rng.standard_normal(channels) * 0.5).astype(np.float32),
        (rng.standard_normal(channels) * 0.2).astype(np.float32),
        rng.uniform(0.5, 2.0, channels).astype(np.float32),
    ]
    zero8 = np.asarray(0, dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.asarray(0.05, dtype=np.float32), "x_scale"),
        numpy_helper.from_array(zero8, "x_zp"),
        numpy_helper.from_array(np.asarray(0.08, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(zero8, "y_zp"),
        *(numpy_helper.from_array(v, n) for v, n in zip(params, ("g", "b", "m", "v"), strict=True)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq"),
        helper.make_node("BatchNormalization", ["xd", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("QuantizeLinear", ["bn", "y_scale", "y_zp"], ["yq"], name="y_q"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="y_dq"),
    ]
    shape = [1, channels, size, size]
    return make_model(nodes, [tensor("x", shape)], [tensor("y", shape)], inits, opset=QDQ_OPSET)


def count_fused(model: onnx.ModelProto, op_type: str = "QLinearConv", *, threads: int = 1) -> int:
    """How many ``op_type`` nodes onnxruntime's graph has at ``ORT_ENABLE_ALL``."""
    import tempfile
    from pathlib import Path

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "optimized.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(path)
    return sum(node.op_type == op_type for node in optimized.graph.node)


def qdq_conv_transpose_model(
    *,
    group: int = 1,
    per_channel: bool = True,
    bias: bool = True,
    shared_gamma: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """``Q → DQ → ConvTranspose(DQ int8 W [8, 6/group, 3, 3], DQ int32 b) → BN → Relu → Q → DQ``.

    W is quantized per output channel (``axis=1``: ``6/group`` scales, each shared by the
    groups) or per tensor. ``shared_gamma``: the BN's factors repeat across groups.
    """
    rng = np.random.default_rng(seed)
    c_in, c_out = 8, 6
    weight = rng.standard_normal((c_in, c_out // group, 3, 3)).astype(np.float32) * 0.2
    if per_channel:
        w_scale = (np.abs(weight).max(axis=(0, 2, 3)) / 127).astype(np.float32)
        shaped = w_scale.reshape(1, -1, 1, 1)
    else:
        w_scale = np.asarray(np.abs(weight).max() / 127, dtype=np.float32)
        shaped = w_scale
    values = np.clip(np.rint(weight / shaped), -127, 127).astype(np.int8)
    x_scale = np.asarray(0.05, dtype=np.float32)
    inits = [
        numpy_helper.from_array(x_scale, "x_scale"),
        numpy_helper.from_array(np.asarray(0, dtype=np.int8), "x_zp"),
        numpy_helper.from_array(values, "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "w_zp"),
        numpy_helper.from_array(np.asarray(0.04, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(np.asarray(0, dtype=np.uint8), "y_zp"),
    ]
    weight_dq = helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["wd"], name="w_dq")
    if per_channel:
        weight_dq.attribute.append(helper.make_attribute("axis", 1))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq"),
        weight_dq,
    ]
    inputs = ["xd", "wd"]
    if bias:
        per_out = np.tile(np.broadcast_to(w_scale, (c_out // group,)), group)
        b_scale = (x_scale * per_out).astype(np.float32)
        b_q = np.rint(rng.standard_normal(c_out) * 0.1 / b_scale).astype(np.int32)
        inits += [numpy_helper.from_array(b_q, "b"), numpy_helper.from_array(b_scale, "b_scale")]
        nodes.append(
            helper.make_node("DequantizeLinear", ["b", "b_scale"], ["bd"], name="b_dq", axis=0)
        )
        inputs.append("bd")
    gamma = rng.uniform(0.5, 2.0, c_out).astype(np.float32)
    if shared_gamma:
        gamma = np.tile(gamma[: c_out // group], group)
    params = [
        gamma,
        (rng.standard_normal(c_out) * 0.5).astype(np.float32),
        np.zeros(c_out, np.float32) if shared_gamma else rng.standard_normal(c_out) * 0.2,
        np.ones(c_out, np.float32) if shared_gamma else rng.uniform(0.5, 2.0, c_out),
    ]
    names = ["gamma", "beta", "mean", "var"]
    inits += [
        numpy_helper.from_array(np.asarray(v, np.float32), n)
        for v, n in zip(params, names, strict=True)
    ]
    nodes += [
        helper.make_node(
            "ConvTranspose", inputs, ["h"], name="deconv", group=group, pads=[1, 1, 1, 1]
        ),
        helper.make_node("BatchNormalization", ["h", *names], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["yq"], name="y_q"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="y_dq"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, c_in, 5, 5])],
        [tensor("y", [1, c_out, 5, 5])],
        inits,
        opset=QDQ_OPSET,
    )

"""Tiny models for the bench tests, built in code (IR 10, opset 17: onnxruntime 1.31 reads IR <= 13),
and the quick bench settings they run under."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 17
WIDTH = 16

# bench settings for the bench tests: enough pairs for an interval and rounds for a stable
# median, few enough to keep the whole directory fast.
QUICK = {"pairs": 3, "iters": 20, "warmup": 2, "threads": 1}
QUICK_SAMPLES = 60  # pairs x iters


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bench_test", inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    return model


def _io(
    batch: int | str = "N", width: int = WIDTH
) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    return (
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width]),
    )


def fast_model(batch: int | str = "N") -> onnx.ModelProto:
    """y = x + 1: one node, microseconds."""
    x, y = _io(batch)
    one = numpy_helper.from_array(np.ones(WIDTH, np.float32), "one")
    return _model([helper.make_node("Add", ["x", "one"], ["y"])], [x], [y], [one])


def slow_model(depth: int = 100, hidden: int = 256) -> onnx.ModelProto:
    """The same function shape as ``fast_model`` but ``depth`` hidden×hidden MatMuls deep:
    orders of magnitude slower, so a ``slower`` verdict cannot flake."""
    x, y = _io()
    rng = np.random.default_rng(0)
    scale = 1.0 / np.sqrt(hidden)
    weights = [
        numpy_helper.from_array(
            (rng.standard_normal((WIDTH, hidden)) * scale).astype(np.float32), "w_in"
        )
    ]
    nodes = [helper.make_node("MatMul", ["x", "w_in"], ["h0"])]
    for i in range(depth):
        name = f"w{i}"
        weights.append(
            numpy_helper.from_array(
                (rng.standard_normal((hidden, hidden)) * scale).astype(np.float32), name
            )
        )
        nodes.append(helper.make_node("MatMul", [f"h{i}", name], [f"h{i + 1}"]))
    weights.append(
        numpy_helper.from_array(
            (rng.standard_normal((hidden, WIDTH)) * scale).astype(np.float32), "w_out"
        )
    )
    nodes.append(helper.make_node("MatMul", [f"h{depth}", "w_out"], ["y"]))
    return _model(nodes, [x], [y], weights)


def batchnorm_model(channels: int = 4) -> onnx.ModelProto:
    """x[N, C, 3, 3] -> BatchNormalization -> y (one BN, one node)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 3, 3])
    params = [
        numpy_helper.from_array(np.full(channels, value, np.float32), name)
        for name, value in (("gamma", 2.0), ("beta", 0.5), ("mean", 0.1), ("var", 4.0))
    ]
    node = helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"])
    return _model([node], [x], [y], params)


def folded_batchnorm_model(channels: int = 4) -> onnx.ModelProto:
    """The same function as ``batchnorm_model`` as Mul + Add (s = γ/sqrt(σ²+ε), t = β - μ s)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 3, 3])
    s = 2.0 / np.sqrt(4.0 + 1e-5)
    t = 0.5 - 0.1 * s
    params = [
        numpy_helper.from_array(np.full((channels, 1, 1), s, np.float32), "s"),
        numpy_helper.from_array(np.full((channels, 1, 1), t, np.float32), "t"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "t"], ["y"]),
    ]
    return _model(nodes, [x], [y], params)


def two_input_model() -> onnx.ModelProto:
    """y = x + z: takes an input (``z``) that ``fast_model`` does not."""
    x, y = _io()
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", WIDTH])
    return _model([helper.make_node("Add", ["x", "z"], ["y"])], [x, z], [y], [])


def bfloat16_model() -> onnx.ModelProto:
    """y = Identity(x) in bfloat16 (onnxruntime's Python API cannot take numpy bfloat16)."""
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["N", WIDTH])
    return _model([helper.make_node("Identity", ["x"], ["y"])], [x], [y], [])

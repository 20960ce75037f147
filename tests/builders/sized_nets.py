"""Small networks whose layers were built for one input size, and ones that fix none.

The input size rule of ``bnfold.runtime.dims`` reads the size a network was built for off its
head; these graphs put each kind of head behind a stride path of known length, with symbolic
batch and spatial dims, plus models that are not images (an MLP, a sequence model) to keep
the old rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .verify_models import make_model, tensor

LIGHT_MODELS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

Dims = Sequence[int | str | None]


def _stride_path(
    rng: np.random.Generator, strided: int, channels: int, first: str
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], str]:
    """``strided`` Conv(3x3, stride 2, pad 1) + Relu layers: ceil(s / 2**strided) positions."""
    nodes: list[onnx.NodeProto] = []
    weights: dict[str, np.ndarray] = {}
    source, in_channels = first, 3
    for i in range(strided):
        weights[f"w{i}"] = rng.standard_normal((channels, in_channels, 3, 3)).astype(np.float32)
        nodes.append(
            helper.make_node(
                "Conv", [source, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        source, in_channels = f"r{i}", channels
    return nodes, weights, source


def classifier(
    head: str, *, strided: int = 5, side: int = 7, dims: Dims = ("N", 3, "H", "W")
) -> onnx.ModelProto:
    """An image classifier: a stride-``2**strided`` Conv path, then ``head``.

    - ``gemm`` (``matmul``): Flatten -> Gemm (MatMul) 'fc' whose weight takes ``8·side·side``
      features;
    - ``pool``: AveragePool 'pool' with a ``side``×``side`` kernel -> Flatten (no Gemm);
    - ``global``: GlobalAveragePool -> Flatten -> Gemm (any size fits).
    """
    rng = np.random.default_rng(0)
    nodes, weights, source = _stride_path(rng, strided, 8, "x")
    if head in ("gemm", "matmul"):
        weights["fc_w"] = rng.standard_normal((8 * side * side, 10)).astype(np.float32)
        nodes.append(helper.make_node("Flatten", [source], ["flat"]))
        layer = "Gemm" if head == "gemm" else "MatMul"
        nodes.append(helper.make_node(layer, ["flat", "fc_w"], ["y"], name="fc"))
    elif head == "pool":
        pooled = [side, side]
        nodes.append(
            helper.make_node("AveragePool", [source], ["p"], kernel_shape=pooled, name="pool")
        )
        nodes.append(helper.make_node("Flatten", ["p"], ["y"]))
    else:
        weights["fc_w"] = rng.standard_normal((8, 10)).astype(np.float32)
        nodes.append(helper.make_node("GlobalAveragePool", [source], ["g"]))
        nodes.append(helper.make_node("Flatten", ["g"], ["flat"]))
        nodes.append(helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc"))
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, list(dims))],
        [tensor("y", TensorProto.FLOAT, [None, None])],
        weights,
    )


def nhwc_classifier() -> onnx.ModelProto:
    """A channels-last image input ``[N, H, W, 3]`` transposed into a global-pool network."""
    model = classifier("global", dims=("N", 3, "H", "W"))
    graph = model.graph
    graph.node.insert(0, helper.make_node("Transpose", ["x_nhwc"], ["x"], perm=[0, 3, 1, 2]))
    del graph.input[:]
    graph.input.append(tensor("x_nhwc", TensorProto.FLOAT, ["N", "H", "W", 3]))
    onnx.checker.check_model(model, full_check=True)
    return model


def mlp() -> onnx.ModelProto:
    """``[N, 784]`` -> Gemm -> Relu -> Gemm: only the batch is free."""
    rng = np.random.default_rng(1)
    weights = {
        "w1": rng.standard_normal((784, 32)).astype(np.float32),
        "w2": rng.standard_normal((32, 10)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"]),
    ]
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, ["N", 784])],
        [tensor("y", TensorProto.FLOAT, [None, None])],
        weights,
    )


def sequence_model() -> onnx.ModelProto:
    """``[N, T, 16]`` -> MatMul(16x16) -> Relu: the weight fixes the features, not T."""
    weights = {"w": np.random.default_rng(2).standard_normal((16, 16)).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, ["N", "T", 16])],
        [tensor("y", TensorProto.FLOAT, ["N", "T", 16])],
        weights,
    )


def feature_map_model() -> onnx.ModelProto:
    """``[N, 16, H, W]``, 16 channels (not an image) -> Conv 3x3 -> GlobalAveragePool."""
    weights = {"w": np.random.default_rng(3).standard_normal((4, 16, 3, 3)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["y"]),
    ]
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, ["N", 16, "H", "W"])],
        [tensor("y", TensorProto.FLOAT, ["N", 4, 1, 1])],
        weights,
    )


def light_model_with_symbolic_size(name: str) -> onnx.ModelProto:
    """onnx's light backend model ``name`` with its input's N, H and W made symbolic."""
    model = onnx.load(str(LIGHT_MODELS / f"light_{name}.onnx"))
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            for axis, symbol in ((0, "N"), (2, "H"), (3, "W")):
                dims[axis].dim_param = symbol
    model.ir_version = 8  # the light models say 3; what onnxruntime reads either way
    return model


def attention_mask_model() -> onnx.ModelProto:
    """``mask [N, 1, 1, T]`` (rank 4, one channel, but T is a sequence) -> Neg."""
    nodes = [helper.make_node("Neg", ["mask"], ["y"])]
    return make_model(
        nodes,
        [tensor("mask", TensorProto.FLOAT, ["N", 1, 1, "T"])],
        [tensor("y", TensorProto.FLOAT, ["N", 1, 1, "T"])],
    )

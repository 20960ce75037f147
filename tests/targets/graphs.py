"""The graphs every target profile is tested on (issue 25): the shapes quantizers and NPU
compilers stumble over.

- ``conv_relu_bn_stack``: 4 × [Conv 3×3 → Relu → BN], onnxruntime issue #9938's shape;
- ``dense_relu_bn``: Dense (MatMul + bias Add) → Relu → BN, as a BatchNormalization or as
  Keras/tf2onnx's per-channel Mul + Add;
- ``dense_cast_relu_bn``: the same as Keras 3 on torch exports it, a no-op float→float ``Cast``
  between each MatMul and its bias Add (two before the head's);
- ``residual_block``: a stem Conv → Relu → BN, then Conv → BN → Relu → Conv → BN + skip → Relu;
- ``negative_scale_after_relu``: Conv → Relu → BN with some γ < 0 (the split cannot move a
  negative scale across Relu, so the BN stays);
- ``bn_on_input``: a BN straight on a graph input, then Relu (nothing to fold into).

Every BN scale is ``γ/√(σ²+ε)``; γ is positive unless a builder says otherwise, so the
non-negative scale can move across Relu.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.builders.graphs import make_model, tensor

CHANNELS = 8
SIZE = 10


def _bn(
    rng: np.random.Generator, prefix: str, channels: int, *, negative: bool = False
) -> dict[str, np.ndarray]:
    gamma = rng.uniform(0.3, 2.0, channels)
    if negative:
        gamma[::2] *= -1  # every other channel: the scale cannot pass Relu
    return {
        f"{prefix}_gamma": gamma.astype(np.float32),
        f"{prefix}_beta": rng.standard_normal(channels).astype(np.float32),
        f"{prefix}_mean": (0.5 * rng.standard_normal(channels)).astype(np.float32),
        f"{prefix}_var": rng.uniform(0.2, 3.0, channels).astype(np.float32),
    }


def _bn_node(prefix: str, inp: str, out: str) -> onnx.NodeProto:
    names = [f"{prefix}_{p}" for p in ("gamma", "beta", "mean", "var")]
    return helper.make_node("BatchNormalization", [inp, *names], [out], name=prefix)


def _conv(
    rng: np.random.Generator, name: str, inp: str, out: str, c_in: int, c_out: int
) -> tuple[onnx.NodeProto, dict[str, np.ndarray]]:
    node = helper.make_node(
        "Conv", [inp, f"{name}_W", f"{name}_B"], [out], name=name, kernel_shape=[3, 3], pads=[1] * 4
    )
    weight = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    return node, {f"{name}_W": weight, f"{name}_B": rng.standard_normal(c_out).astype(np.float32)}


def _image_model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], output: str, c_in: int
) -> onnx.ModelProto:
    return make_model(
        nodes,
        [tensor("x", ["N", c_in, SIZE, SIZE])],
        [tensor(output, None)],
        list(inits.values()),
        names=list(inits),
    )


def conv_relu_bn_stack(
    layers: int = 4, channels: int = CHANNELS, seed: int = 9938
) -> onnx.ModelProto:
    """``layers`` × [Conv 3×3 (pad 1) → Relu → BN]; input (N, 3, 10, 10)."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}
    current, c_in = "x", 3
    for index in range(layers):
        conv, weights = _conv(rng, f"conv{index}", current, f"c{index}", c_in, channels)
        nodes += [
            conv,
            helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"relu{index}"),
            _bn_node(f"bn{index}", f"r{index}", f"b{index}"),
        ]
        inits |= weights | _bn(rng, f"bn{index}", channels)
        current, c_in = f"b{index}", channels
    return _image_model(nodes, inits, current, 3)


def dense_relu_bn(
    form: str = "batchnorm", *, head: bool = True, seed: int = 146
) -> onnx.ModelProto:
    """Dense (MatMul + bias Add) → Relu → BN, then (``head``) Dense; the BN as ``batchnorm``
    or ``mul-add`` (Keras/tf2onnx: ``x·s + t``). Input (N, 6). Without the head only the split
    folds the BN (nothing after it)."""
    rng = np.random.default_rng(seed)
    hidden = 12
    inits: dict[str, np.ndarray] = {
        "W1": rng.standard_normal((6, hidden)).astype(np.float32),
        "B1": rng.standard_normal(hidden).astype(np.float32),
        "W2": rng.standard_normal((hidden, 4)).astype(np.float32),
        "B2": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["d1"], name="dense1"),
        helper.make_node("Add", ["d1", "B1"], ["d1b"], name="dense1_bias"),
        helper.make_node("Relu", ["d1b"], ["r"], name="relu"),
    ]
    if form == "batchnorm":
        nodes.append(_bn_node("bn", "r", "n"))
        inits |= _bn(rng, "bn", hidden)
    else:
        nodes += [
            helper.make_node("Mul", ["r", "bn_scale"], ["bn_mul"], name="bn_mul"),
            helper.make_node("Add", ["bn_mul", "bn_shift"], ["n"], name="bn_add"),
        ]
        inits["bn_scale"] = rng.uniform(0.3, 2.0, hidden).astype(np.float32)
        inits["bn_shift"] = rng.standard_normal(hidden).astype(np.float32)
    if head:
        nodes += [
            helper.make_node("MatMul", ["n", "W2"], ["d2"], name="dense2"),
            helper.make_node("Add", ["d2", "B2"], ["y"], name="dense2_bias"),
        ]
    else:
        del inits["W2"], inits["B2"]
    return make_model(
        nodes,
        [tensor("x", ["N", 6])],
        [tensor("y" if head else "n", ["N", 4 if head else hidden])],
        list(inits.values()),
        names=list(inits),
    )


def dense_cast_relu_bn(seed: int = 146, *, head_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """``dense_relu_bn`` with the no-op Casts Keras 3 (torch) writes: MatMul → Cast → Add(b)
    → Relu → BN → MatMul → Cast → Cast → Add(b). Input (N, 6). The head's Casts are to
    ``head_type``, its bias and output of that type (``DOUBLE``: the first is a real Cast)."""
    rng = np.random.default_rng(seed)
    hidden = 12
    head_dtype = helper.tensor_dtype_to_np_dtype(head_type)
    inits: dict[str, np.ndarray] = {
        "W1": rng.standard_normal((6, hidden)).astype(np.float32),
        "B1": rng.standard_normal(hidden).astype(np.float32),
        "W2": rng.standard_normal((hidden, 4)).astype(np.float32),
        "B2": rng.standard_normal(4).astype(head_dtype),
    } | _bn(rng, "bn", hidden)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["d1"], name="dense1"),
        helper.make_node("Cast", ["d1"], ["d1c"], name="dense1_cast", to=TensorProto.FLOAT),
        helper.make_node("Add", ["d1c", "B1"], ["d1b"], name="dense1_bias"),
        helper.make_node("Relu", ["d1b"], ["r"], name="relu"),
        _bn_node("bn", "r", "n"),
        helper.make_node("MatMul", ["n", "W2"], ["d2"], name="dense2"),
        helper.make_node("Cast", ["d2"], ["d2c"], name="dense2_cast", to=head_type),
        helper.make_node("Cast", ["d2c"], ["d2cc"], name="dense2_cast2", to=head_type),
        helper.make_node("Add", ["d2cc", "B2"], ["y"], name="dense2_bias"),
    ]
    return make_model(
        nodes,
        [tensor("x", ["N", 6])],
        [tensor("y", ["N", 4], head_type)],
        list(inits.values()),
        names=list(inits),
    )


def residual_block(seed: int = 50) -> onnx.ModelProto:
    """Stem Conv → Relu → BN, then Conv → BN → Relu → Conv → BN, + the stem, → Relu."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    stem, weights = _conv(rng, "stem", "x", "s", 3, CHANNELS)
    inits |= weights | _bn(rng, "stem_bn", CHANNELS)
    conv1, weights = _conv(rng, "conv1", "sb", "c1", CHANNELS, CHANNELS)
    inits |= weights | _bn(rng, "bn1", CHANNELS)
    conv2, weights = _conv(rng, "conv2", "r1", "c2", CHANNELS, CHANNELS)
    inits |= weights | _bn(rng, "bn2", CHANNELS)
    nodes = [
        stem,
        helper.make_node("Relu", ["s"], ["sr"], name="stem_relu"),
        _bn_node("stem_bn", "sr", "sb"),
        conv1,
        _bn_node("bn1", "c1", "b1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        conv2,
        _bn_node("bn2", "c2", "b2"),
        helper.make_node("Add", ["b2", "sb"], ["sum"], name="skip"),
        helper.make_node("Relu", ["sum"], ["y"], name="relu_out"),
    ]
    return _image_model(nodes, inits, "y", 3)


def negative_scale_after_relu(seed: int = 28689) -> onnx.ModelProto:
    """Conv → Relu → BN with γ < 0 on every other channel: no exact fold exists."""
    rng = np.random.default_rng(seed)
    conv, inits = _conv(rng, "conv", "x", "c", 3, CHANNELS)
    inits |= _bn(rng, "bn", CHANNELS, negative=True)
    nodes = [conv, helper.make_node("Relu", ["c"], ["r"], name="relu"), _bn_node("bn", "r", "y")]
    return _image_model(nodes, inits, "y", 3)


def bn_on_input(seed: int = 17241) -> onnx.ModelProto:
    """x → BN → Relu: a standalone BN on a graph input."""
    rng = np.random.default_rng(seed)
    inits = _bn(rng, "bn", 3)
    nodes = [_bn_node("bn", "x", "n"), helper.make_node("Relu", ["n"], ["y"], name="relu")]
    return _image_model(nodes, inits, "y", 3)


def bn_of_unknown_rank(seed: int = 17241) -> onnx.ModelProto:
    """Reshape(x, shape) → BN → Relu, ``shape`` a graph input of unknown length: the BN's
    input has no known rank, so neither lowered form can be written."""
    rng = np.random.default_rng(seed)
    inits = _bn(rng, "bn", 3)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["xr"], name="reshape"),
        _bn_node("bn", "xr", "n"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    inputs = [tensor("x", ["N", 3, SIZE, SIZE]), tensor("shape", ["k"], TensorProto.INT64)]
    return make_model(nodes, inputs, [tensor("y", None)], list(inits.values()), names=list(inits))


def conv_relu_mul_add(seed: int = 146) -> onnx.ModelProto:
    """Conv → Relu → Mul(s) → Add(t) on a 4-D map: a BN exported as per-channel Mul + Add."""
    rng = np.random.default_rng(seed)
    conv, inits = _conv(rng, "conv", "x", "c", 3, CHANNELS)
    inits["bn_scale"] = rng.uniform(0.3, 2.0, (CHANNELS, 1, 1)).astype(np.float32)
    inits["bn_shift"] = rng.standard_normal((CHANNELS, 1, 1)).astype(np.float32)
    nodes = [
        conv,
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "bn_scale"], ["m"], name="bn_mul"),
        helper.make_node("Add", ["m", "bn_shift"], ["y"], name="bn_add"),
    ]
    return _image_model(nodes, inits, "y", 3)


BUILT = {
    "conv_relu_bn_stack": conv_relu_bn_stack,
    "dense_relu_bn": dense_relu_bn,
    "dense_relu_mul_add": lambda: dense_relu_bn("mul-add"),
    "dense_relu_bn_tail": lambda: dense_relu_bn(head=False),
    "dense_relu_mul_add_tail": lambda: dense_relu_bn("mul-add", head=False),
    "dense_cast_relu_bn": dense_cast_relu_bn,
    "residual_block": residual_block,
    "negative_scale_after_relu": negative_scale_after_relu,
    "bn_on_input": bn_on_input,
    "bn_of_unknown_rank": bn_of_unknown_rank,
    "conv_relu_mul_add": conv_relu_mul_add,
}

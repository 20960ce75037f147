"""Tiny models built in code for the verify tests, folded by hand in numpy (no bnfold engine).

Nothing here uses bnfold's folding engine: the "correct fold" is the textbook formula
``s = gamma / sqrt(var + eps)``, ``W' = W * s[o]``, ``b' = s * (b - mean) + beta``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(REPO_ROOT / "cli.py")]
IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 would write 14
OPSET = 17


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    opset: int = OPSET,
    ir_version: int = IR_VERSION,
) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), tensors)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def tensor(
    name: str, elem_type: int, shape: Sequence[int | str | None] | None
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


class ConvBN:
    """Conv(3->4, 3x3, pad 1) -> BatchNormalization, its exact fold, and a corrupted fold."""

    def __init__(self, seed: int = 0, channels_in: int = 3, channels_out: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.cin, self.cout = channels_in, channels_out
        self.weight = rng.standard_normal((channels_out, channels_in, 3, 3)).astype(np.float32)
        self.bias = rng.standard_normal(channels_out).astype(np.float32)
        self.gamma = rng.uniform(0.5, 2.0, channels_out).astype(np.float32)
        self.beta = rng.standard_normal(channels_out).astype(np.float32)
        self.mean = rng.standard_normal(channels_out).astype(np.float32)
        self.var = rng.uniform(0.5, 2.0, channels_out).astype(np.float32)
        self.eps = 1e-5

    def _io(self) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
        x = tensor("x", TensorProto.FLOAT, ["N", self.cin, 8, 8])
        y = tensor("y", TensorProto.FLOAT, ["N", self.cout, 8, 8])
        return [x], [y]

    def original(self) -> onnx.ModelProto:
        inputs, outputs = self._io()
        nodes = [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node(
                "BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=self.eps
            ),
        ]
        inits = {
            "W": self.weight,
            "B": self.bias,
            "g": self.gamma,
            "b": self.beta,
            "m": self.mean,
            "v": self.var,
        }
        return make_model(nodes, inputs, outputs, inits)

    def folded_params(self) -> tuple[np.ndarray, np.ndarray]:
        scale = self.gamma.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + self.eps)
        weight = self.weight.astype(np.float64) * scale[:, None, None, None]
        bias = scale * (self.bias - self.mean.astype(np.float64)) + self.beta
        return weight.astype(np.float32), bias.astype(np.float32)

    def folded(
        self, weight: np.ndarray | None = None, bias: np.ndarray | None = None
    ) -> onnx.ModelProto:
        folded_weight, folded_bias = self.folded_params()
        inputs, outputs = self._io()
        node = helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1, 1, 1, 1])
        inits = {
            "W": folded_weight if weight is None else weight,
            "B": folded_bias if bias is None else bias,
        }
        return make_model([node], inputs, outputs, inits)

    def corrupted(self, relative: float = 1e-3) -> onnx.ModelProto:
        """The exact fold with its largest weight scaled by ``1 + relative``."""
        weight, _ = self.folded_params()
        weight = weight.copy()
        weight.flat[int(np.argmax(np.abs(weight)))] *= 1.0 + relative
        return self.folded(weight=weight)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def two_outputs(order: Sequence[str] = ("sum", "prod"), scale: float = 1.0) -> onnx.ModelProto:
    """Outputs ``sum = a + b`` (float32) and ``prod = a * b * scale`` (float32), in ``order``."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Mul", ["ab", "k"], ["prod"]),
    ]
    inputs = [tensor("a", TensorProto.FLOAT, [2, 3]), tensor("b", TensorProto.FLOAT, [2, 3])]
    by_name = {
        "sum": tensor("sum", TensorProto.FLOAT, [2, 3]),
        "prod": tensor("prod", TensorProto.FLOAT, [2, 3]),
    }
    return make_model(
        nodes, inputs, [by_name[n] for n in order], {"k": np.array(scale, np.float32)}
    )


def unary(
    op: str, *, pre_abs: bool = False, shape: Sequence[int | str] = (4, 64)
) -> onnx.ModelProto:
    """``y = op(x)`` or ``y = op(|x|)``: Log/Sqrt make NaN for negative inputs."""
    nodes = []
    source = "x"
    if pre_abs:
        nodes.append(helper.make_node("Abs", ["x"], ["ax"]))
        source = "ax"
    nodes.append(helper.make_node(op, [source], ["y"]))
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, list(shape))],
        [tensor("y", TensorProto.FLOAT, list(shape))],
    )


def matmul_transpose_bn(
    wrong_fold: bool = False, correct_fold: bool = False, n: int = 4
) -> onnx.ModelProto:
    """``y = BN(Transpose(x @ W))`` with both dims ``n``; BN's channels are *rows* of ``x @ W``.

    onnxruntime (at BASIC and above) fuses this into a Gemm that scales ``W``'s columns, which is
    wrong when the two dims are equal; ``wrong_fold=True`` builds exactly that wrong model.
    ``correct_fold=True`` builds the exact rewrite: Transpose, then Mul by s and Add t.
    """
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((n, n)).astype(np.float32)
    gamma, beta, mean = (rng.uniform(0.5, 2.0, n).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, n).astype(np.float32)
    eps = 1e-5
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = beta - mean * scale
    io = ([tensor("x", TensorProto.FLOAT, [n, n])], [tensor("y", TensorProto.FLOAT, [n, n])])
    if wrong_fold:
        nodes = [
            helper.make_node("Gemm", ["x", "Ws", "t"], ["g"]),
            helper.make_node("Transpose", ["g"], ["y"], perm=[1, 0]),
        ]
        inits = {"Ws": (weight * scale[None, :]).astype(np.float32), "t": shift.astype(np.float32)}
        return make_model(nodes, *io, inits)
    if correct_fold:
        nodes = [
            helper.make_node("MatMul", ["x", "W"], ["mm"]),
            helper.make_node("Transpose", ["mm"], ["t"], perm=[1, 0]),
            helper.make_node("Mul", ["t", "s"], ["ts"]),
            helper.make_node("Add", ["ts", "b"], ["y"]),
        ]
        inits = {
            "W": weight,
            "s": scale.astype(np.float32)[None, :],
            "b": shift.astype(np.float32)[None, :],
        }
        return make_model(nodes, *io, inits)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Transpose", ["mm"], ["t"], perm=[1, 0]),
        helper.make_node("BatchNormalization", ["t", "g", "b", "m", "v"], ["y"], epsilon=eps),
    ]
    return make_model(nodes, *io, {"W": weight, "g": gamma, "b": beta, "m": mean, "v": var})


def embedding(vocab: int = 7) -> onnx.ModelProto:
    """ids int64 [batch, 5] -> Gather(table[vocab, 4]) -> y [batch, 5, 4]."""
    table = np.random.default_rng(0).standard_normal((vocab, 4)).astype(np.float32)
    node = helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)
    return make_model(
        [node],
        [tensor("ids", TensorProto.INT64, ["batch", 5])],
        [tensor("y", TensorProto.FLOAT, ["batch", 5, 4])],
        {"table": table},
    )


def with_changes(
    model: onnx.ModelProto,
    *,
    rename_output: str | None = None,
    opset: int | None = None,
    ir_version: int | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` with one structural difference (not re-checked)."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    if rename_output is not None:
        old = changed.graph.output[0].name
        changed.graph.output[0].name = rename_output
        for node in changed.graph.node:
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = rename_output
    if opset is not None:
        changed.opset_import[0].version = opset
    if ir_version is not None:
        changed.ir_version = ir_version
    return changed


# -- issue 23: folds of BN-equivalent chains, consumer folds, If branches, weak outputs --------


def _bn_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "g": rng.uniform(0.5, 2.0, n).astype(np.float32),
        "b": rng.standard_normal(n).astype(np.float32),
        "m": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "v": rng.uniform(0.5, 2.0, n).astype(np.float32),
    }


def keras_dense_mul_add(head: str = "softmax") -> onnx.ModelProto:
    """Keras/tf2onnx: Dense (MatMul + bias Add) -> BN as Mul + Add -> Relu -> Dense -> head.

    ``head``: ``softmax`` (2 classes, x50 logits: saturates), ``argmax`` (int64 label) or
    ``greater`` (bool threshold).
    """
    rng = np.random.default_rng(23)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["d1"]),
        helper.make_node("Add", ["d1", "B1"], ["d1b"]),
        helper.make_node("Mul", ["d1b", "s"], ["bn_mul"]),
        helper.make_node("Add", ["bn_mul", "t"], ["bn_add"]),
        helper.make_node("Relu", ["bn_add"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["d2"]),
        helper.make_node("Add", ["d2", "B2"], ["logits"]),
    ]
    inits = {
        "W1": rng.standard_normal((6, 8)).astype(np.float32),
        "B1": rng.standard_normal(8).astype(np.float32),
        "s": rng.uniform(0.5, 2.0, 8).astype(np.float32),
        "t": rng.standard_normal(8).astype(np.float32),
        "W2": (50 * rng.standard_normal((8, 2))).astype(np.float32),
        "B2": np.zeros(2, np.float32),
    }
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=-1))
        out = tensor("y", TensorProto.FLOAT, ["N", 2])
    elif head == "argmax":
        nodes.append(helper.make_node("ArgMax", ["logits"], ["y"], axis=-1, keepdims=0))
        out = tensor("y", TensorProto.INT64, ["N"])
    else:
        nodes.append(helper.make_node("Greater", ["logits", "zero"], ["y"]))
        inits["zero"] = np.zeros((), np.float32)
        out = tensor("y", TensorProto.BOOL, ["N", 2])
    return make_model(nodes, [tensor("x", TensorProto.FLOAT, ["N", 6])], [out], inits)


def conv_sub_mul_add() -> onnx.ModelProto:
    """A torch re-export of BN: Conv -> Sub(mean) -> Mul(scale) -> Add(shift) -> Relu -> pool."""
    rng = np.random.default_rng(5)
    shape = (1, 4, 1, 1)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["c", "mu"], ["centred"]),
        helper.make_node("Mul", ["centred", "k"], ["scaled"]),
        helper.make_node("Add", ["scaled", "d"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["y"]),
    ]
    inits = {
        "W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "mu": rng.standard_normal(shape).astype(np.float32),
        "k": rng.uniform(0.5, 2.0, shape).astype(np.float32),
        "d": rng.standard_normal(shape).astype(np.float32),
    }
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [tensor("y", TensorProto.FLOAT, [1, 4, 1, 1])],
        inits,
    )


def bn_matmul_bias() -> onnx.ModelProto:
    """BN (on the last axis, as Mul + Add) -> MatMul -> bias Add -> Tanh: a consumer fold moves
    the shift into the bias Add, so the MatMul output changes and the Add output is the site."""
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "t"], ["xn"]),
        helper.make_node("MatMul", ["xn", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["lin"]),
        helper.make_node("Tanh", ["lin"], ["y"]),
    ]
    inits = {
        "s": rng.uniform(0.5, 2.0, 6).astype(np.float32),
        "t": rng.standard_normal(6).astype(np.float32),
        "W": (0.3 * rng.standard_normal((6, 5))).astype(np.float32),
        "B": rng.standard_normal(5).astype(np.float32),
    }
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [4, 6])],
        [tensor("y", TensorProto.FLOAT, [4, 5])],
        inits,
    )


def bn_maxpool_gemm() -> onnx.ModelProto:
    """BN (positive scale) -> MaxPool -> Transpose -> Reshape -> Gemm: folded into the Gemm, the
    MaxPool/Transpose/Reshape outputs now hold pre-BN values; the Gemm output (before a
    Softmax) is the site."""
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
        helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["pt"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["pt", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "G", "H"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    inits = {
        **_bn_params(rng, 3),
        "shape": np.array([2, 12], np.int64),
        "G": rng.standard_normal((5, 12)).astype(np.float32),
        "H": rng.standard_normal(5).astype(np.float32),
    }
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [2, 3, 4, 4])],
        [tensor("y", TensorProto.FLOAT, [2, 5])],
        inits,
    )


def if_scalar_bool(else_scale: float = 1.0) -> onnx.ModelProto:
    """``y = x * 2`` if ``flag`` else ``x * 3 * else_scale``: ``flag`` is a scalar bool input."""

    def branch(name: str, factor: float) -> onnx.GraphProto:
        const = helper.make_node(
            "Constant",
            [],
            [f"{name}_k"],
            value=numpy_helper.from_array(np.array(factor, np.float32), f"{name}_k"),
        )
        mul = helper.make_node("Mul", ["x", f"{name}_k"], [f"{name}_y"])
        return helper.make_graph(
            [const, mul], name, [], [tensor(f"{name}_y", TensorProto.FLOAT, [2, 3])]
        )

    node = helper.make_node(
        "If",
        ["flag"],
        ["y"],
        then_branch=branch("then", 2.0),
        else_branch=branch("else", 3.0 * else_scale),
    )
    return make_model(
        [node],
        [tensor("x", TensorProto.FLOAT, [2, 3]), tensor("flag", TensorProto.BOOL, [])],
        [tensor("y", TensorProto.FLOAT, [2, 3])],
    )


def all_nan(offset: float = 0.0) -> onnx.ModelProto:
    """``y = Sqrt(-(|x| + 1)) + offset``: NaN everywhere, whatever ``offset``."""
    nodes = [
        helper.make_node("Abs", ["x"], ["a"]),
        helper.make_node("Add", ["a", "one"], ["a1"]),
        helper.make_node("Neg", ["a1"], ["n"]),
        helper.make_node("Sqrt", ["n"], ["s"]),
        helper.make_node("Add", ["s", "off"], ["y"]),
    ]
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [2, 3])],
        [tensor("y", TensorProto.FLOAT, [2, 3])],
        {"one": np.array(1.0, np.float32), "off": np.array(offset, np.float32)},
    )


# -- issue 23: ill-conditioned folds (BN scales in the hundreds) -----------------------------


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 3x3, pad-1, stride-1 Conv in float64 (NCHW), to set BN statistics from data."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], height, width))
    for i in range(3):
        for j in range(3):
            patch = padded[:, :, i : i + height, j : j + width]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def conditioned_convnet(
    layers: int = 3, channels: int = 8, size: int = 10, seed: int = 7
) -> onnx.ModelProto:
    """Conv -> BN -> Relu, ``layers`` times, with BN scales ``gamma/sigma`` in the hundreds.

    Like a trained EfficientNet's depthwise BNs: each channel's conv output has a large mean
    and a small spread (a bias of ~100, weights of ~0.003), and the BN statistics are that
    channel's own (``mean`` ~ 100, ``var`` ~ 1e-5 .. 1e-4) over generated inputs, so the BN
    subtracts two close numbers and scales the difference by ~100-400. An exact fold rounds
    ``s * W`` and sums at another order: its float32 error at the BN output is a few ulp of
    ``s * 100``, ~1e-3, over the default allowance (1e-4 + 1e-4 * |y|) though the original
    is as far from a float64 evaluation.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 3, size, size))
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}
    previous, cin = "x", 3
    for layer in range(layers):
        w = (0.003 * rng.standard_normal((channels, cin, 3, 3)) / np.sqrt(cin)).astype(np.float32)
        b = rng.uniform(80.0, 120.0, channels).astype(np.float32)
        c = _conv3x3(x, w.astype(np.float64), b.astype(np.float64))
        mean, var = c.mean(axis=(0, 2, 3)), c.var(axis=(0, 2, 3))
        gamma = rng.uniform(0.5, 1.5, channels)
        beta = 0.2 * rng.standard_normal(channels)
        names = [f"{k}{layer}" for k in ("W", "B", "g", "b", "m", "v")]
        for name, value in zip(names, (w, b, gamma, beta, mean, var), strict=True):
            inits[name] = np.asarray(value, np.float32)
        conv, bn, relu = f"conv{layer}", f"bn{layer}", f"relu{layer}" if layer < layers - 1 else "y"
        nodes += [
            helper.make_node("Conv", [previous, names[0], names[1]], [conv], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [conv, *names[2:]], [bn], epsilon=1e-9),
            helper.make_node("Relu", [bn], [relu]),
        ]
        y = (
            gamma.reshape(1, -1, 1, 1)
            * (c - mean.reshape(1, -1, 1, 1))
            / np.sqrt(var.reshape(1, -1, 1, 1))
        )
        x = np.maximum(y + beta.reshape(1, -1, 1, 1), 0.0)
        previous, cin = relu, channels
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [tensor("y", TensorProto.FLOAT, ["N", channels, size, size])],
        inits,
    )

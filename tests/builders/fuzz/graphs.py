"""Hypothesis strategy for random valid ONNX graphs with BatchNormalization in them.

``random_models()`` draws a small network step by step: each step takes an existing tensor
(the latest one more often, any earlier one otherwise, which creates fan-out) and applies one
of Conv, ConvTranspose, Gemm, MatMul, BatchNormalization, Relu, Add, Mul, Reshape, Flatten,
MaxPool, AveragePool, GlobalAveragePool, Concat, a no-op Cast/Identity or a Slice with random
attributes (group, strides,
pads, dilations, auto_pad, output_padding, transA/transB, alpha/beta, bias or not...). A
BatchNormalization often follows a linear layer directly, so folds are common; the random
sharing and graph outputs make refusals common too.

Structure is drawn from hypothesis (so failures shrink to small graphs); array values come
from a numpy generator seeded by a drawn integer. Weights are scaled by 1/sqrt(fan-in) so
activations stay O(1); BN parameters include negative and zero gammas and tiny variances.
Models are float32 or float16, IR version 10, opset 17, 15 or 13.

One example in ``EDGE_ONE_IN`` is instead a graph of the issue-10 edge classes
(``fuzz.edge_graphs``: tensors read in two slots, If/Loop/Scan name reuse and shadowing,
broadcast-up chains, rank-changing paths, typed value fields, opsets 6/7/9/11 (opset 6 runs
under ``legacy_runtime``), unnamed nodes, float16 extremes), drawn with the same hypothesis
data so it shrinks too. They are small: the fixed 500-example CI run stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from tests.builders.fuzz.edge_graphs import DrawChoices, edge_graph
from tests.builders.graphs import IR_VERSION

MAX_STEPS = 8
EDGE_ONE_IN = 5  # share of examples drawn from the edge classes (fuzz.edge_graphs)
MAX_SPATIAL = 12  # ops that grow spatial size are not drawn past this


@dataclass
class Value:
    name: str
    shape: tuple[int, ...]


@dataclass
class FuzzModel:
    """A drawn model, its input feeds, and what was built (for failure messages)."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]]  # a list: one run per feeds
    dtype: np.dtype
    steps: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"FuzzModel({self.dtype.name}, opset {self.model.opset_import[0].version}: {' | '.join(self.steps)})"


class _Builder:
    def __init__(self, draw: st.DrawFn, rng: np.random.Generator, dtype: np.dtype, opset: int):
        self.draw, self.rng, self.dtype, self.opset = draw, rng, dtype, opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: list[Value] = []
        self.consumed: set[str] = set()
        self.extra_outputs: list[str] = []
        self.steps: list[str] = []
        self.name_nodes = draw(st.booleans())
        self.symbolic_batch = False  # the graph input declares its batch dimension as "N"
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weights(self, shape: list[int], fan_in: int) -> np.ndarray:
        scale = 1.0 / math.sqrt(max(fan_in, 1))
        return (self.rng.standard_normal(shape) * scale).astype(self.dtype)

    def add_node(
        self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: object
    ) -> Value:
        output = self.name(op.lower()[:4] + "_out")
        node_name = self.name(op.lower()) if self.name_nodes else ""
        self.nodes.append(helper.make_node(op, inputs, [output], name=node_name, **attrs))
        self.consumed.update(inputs)
        value = Value(output, shape)
        self.values.append(value)
        shown = {k: v for k, v in attrs.items() if k != "value"}
        self.steps.append(f"{op}{list(shape)}{shown if shown else ''}")
        return value

    def maybe_graph_output(self, value: Value, one_in: int = 7) -> None:
        """Make ``value`` a graph output too (then it cannot be folded away) now and then."""
        if self.draw(st.integers(1, one_in)) == 1:
            self.extra_outputs.append(value.name)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---- one function per op: return the new value, or None when it does not apply ---------------


def _conv(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) not in (3, 4):
        return None
    draw, channels, spatial = b.draw, v.shape[1], v.shape[2:]
    group = draw(st.sampled_from(_divisors(channels)))
    out_channels = group * draw(st.integers(1, max(1, 6 // group)))
    kernel = [draw(st.integers(1, 3)) for _ in spatial]
    strides = [draw(st.integers(1, 2)) for _ in spatial]
    dilations = [draw(st.integers(1, 2)) for _ in spatial]
    attrs: dict[str, object] = {"group": group, "kernel_shape": kernel}
    if any(s > 1 for s in strides):
        attrs["strides"] = strides
    if any(d > 1 for d in dilations):
        attrs["dilations"] = dilations
    if draw(st.integers(0, 4)) == 0:
        # onnxruntime has no kernel for dilations with SAME_* padding: VALID only then.
        modes = ["VALID"] if "dilations" in attrs else ["SAME_UPPER", "SAME_LOWER", "VALID"]
        attrs["auto_pad"] = draw(st.sampled_from(modes))
    else:
        pads = [draw(st.integers(0, k - 1)) for k in kernel for _ in range(2)]
        attrs["pads"] = pads[0::2] + pads[1::2]
    out_spatial = []
    for i, size in enumerate(spatial):
        reach = dilations[i] * (kernel[i] - 1) + 1
        mode = attrs.get("auto_pad")
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size // strides[i])
        else:
            pads = attrs.get("pads", [0] * (2 * len(spatial)))
            assert isinstance(pads, list)
            padded = size + pads[i] + pads[i + len(spatial)]
            if padded < reach:
                return None
            out = (padded - reach) // strides[i] + 1
        out_spatial.append(out)
    fan_in = channels // group * math.prod(kernel)
    inputs = [v.name, b.const("W", b.weights([out_channels, channels // group, *kernel], fan_in))]
    if draw(st.booleans()):
        inputs.append(b.const("B", b.weights([out_channels], 1)))
    return b.add_node("Conv", inputs, (v.shape[0], out_channels, *out_spatial), **attrs)


def _conv_transpose(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) not in (3, 4) or max(v.shape[2:]) > MAX_SPATIAL // 2:
        return None
    draw, channels, spatial = b.draw, v.shape[1], v.shape[2:]
    group = draw(st.sampled_from(_divisors(channels)))
    per_group = draw(st.integers(1, max(1, 6 // group)))
    kernel = [draw(st.integers(1, 3)) for _ in spatial]
    strides = [draw(st.integers(1, 2)) for _ in spatial]
    pads = [draw(st.integers(0, k - 1)) for k in kernel for _ in range(2)]
    pads = pads[0::2] + pads[1::2]
    output_padding = [draw(st.integers(0, s - 1)) for s in strides]
    out_spatial = []
    for i, size in enumerate(spatial):
        out = (
            strides[i] * (size - 1)
            + output_padding[i]
            + kernel[i]
            - pads[i]
            - pads[i + len(spatial)]
        )
        if out < 1:
            return None
        out_spatial.append(out)
    attrs: dict[str, object] = {"group": group, "kernel_shape": kernel, "pads": pads}
    if any(s > 1 for s in strides):
        attrs["strides"] = strides
    if any(p > 0 for p in output_padding):
        attrs["output_padding"] = output_padding
    fan_in = channels // group * math.prod(kernel)
    weight = b.weights([channels, per_group, *kernel], fan_in)
    inputs = [v.name, b.const("W", weight)]
    if draw(st.booleans()):
        inputs.append(b.const("B", b.weights([per_group * group], 1)))
    return b.add_node(
        "ConvTranspose", inputs, (v.shape[0], per_group * group, *out_spatial), **attrs
    )


def _gemm(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) != 2:
        return None
    draw = b.draw
    trans_a = draw(st.integers(0, 5)) == 0 and not b.symbolic_batch
    rows, inner = (v.shape[1], v.shape[0]) if trans_a else v.shape
    out = draw(st.integers(1, 8))
    trans_b = draw(st.booleans())
    weight = b.weights([out, inner] if trans_b else [inner, out], inner)
    attrs: dict[str, object] = {}
    if trans_a:
        attrs["transA"] = 1
    if trans_b:
        attrs["transB"] = 1
    alpha = draw(st.sampled_from([1.0, 1.0, 0.5, -2.0]))
    if alpha != 1.0:
        attrs["alpha"] = alpha
    inputs = [v.name, b.const("W", weight)]
    bias_shape = draw(st.sampled_from([None, (out,), (1, out), (rows, out), (rows, 1), (1,), ()]))
    # A bias with a row dimension is concrete: not with a symbolic batch.
    per_row = bias_shape is not None and len(bias_shape) == 2 and bias_shape[0] == rows != 1
    if bias_shape is not None and not (b.symbolic_batch and per_row):
        beta = draw(st.sampled_from([1.0, 1.0, 0.5, -1.0]))
        if beta != 1.0:
            attrs["beta"] = beta
        inputs.append(b.const("C", b.weights(list(bias_shape), 1)))
    return b.add_node("Gemm", inputs, (rows, out), **attrs)


def _matmul(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) < 2 or (len(v.shape) > 2 and b.draw(st.integers(0, 3)) != 0):
        return None  # batched MatMul (BN then normalises a non-output axis) only sometimes
    inner, out = v.shape[-1], b.draw(st.integers(1, 8))
    weight = b.const("W", b.weights([inner, out], inner))
    return b.add_node("MatMul", [v.name, weight], (*v.shape[:-1], out))


def _batchnorm(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) < 2:
        return None
    draw, rng, channels = b.draw, b.rng, v.shape[1]
    gamma = rng.uniform(0.2, 2.0, channels)
    sign = draw(st.sampled_from(["positive", "mixed", "negative", "with-zero"]))
    if sign == "mixed":
        gamma *= rng.choice([-1.0, 1.0], channels)
    elif sign == "negative":
        gamma = -gamma
    elif sign == "with-zero":
        gamma[rng.integers(channels)] = 0.0
    smallest = 1e-3 if b.dtype == np.float16 else 1e-6
    variance = draw(st.sampled_from(["normal", "tiny", "mixed"]))
    var = rng.uniform(0.1, 3.0, channels)
    if variance == "tiny":
        var = rng.uniform(smallest, 10 * smallest, channels)
    elif variance == "mixed":
        var[rng.integers(channels)] = smallest
    epsilon = draw(st.sampled_from([1e-5, 1e-3, 1e-6]))
    params = [gamma, rng.standard_normal(channels), rng.standard_normal(channels), var]
    names = [b.const(role, p.astype(b.dtype)) for role, p in zip("gbmv", params, strict=True)]
    attrs: dict[str, object] = {"epsilon": epsilon}
    if b.opset >= 14 and draw(st.booleans()):
        attrs["training_mode"] = 0
    if draw(st.booleans()):
        attrs["momentum"] = 0.9
    out = b.add_node("BatchNormalization", [v.name, *names], v.shape, **attrs)
    b.maybe_graph_output(out)
    return out


def _relu(b: _Builder, v: Value) -> Value | None:
    return b.add_node("Relu", [v.name], v.shape)


def _pool(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) not in (3, 4):
        return None
    draw, spatial = b.draw, v.shape[2:]
    op = draw(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool"]))
    if op == "GlobalAveragePool":
        return b.add_node(op, [v.name], (*v.shape[:2], *[1] * len(spatial)))
    kernel = [draw(st.integers(1, min(3, size))) for size in spatial]
    strides = [draw(st.integers(1, 2)) for _ in spatial]
    pads = [draw(st.integers(0, k - 1)) for k in kernel for _ in range(2)]
    pads = pads[0::2] + pads[1::2]
    out_spatial = [
        (size + pads[i] + pads[i + len(spatial)] - kernel[i]) // strides[i] + 1
        for i, size in enumerate(spatial)
    ]
    attrs: dict[str, object] = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if op == "AveragePool" and draw(st.booleans()):
        attrs["count_include_pad"] = 1
    return b.add_node(op, [v.name], (*v.shape[:2], *out_spatial), **attrs)


def _elementwise(b: _Builder, v: Value) -> Value | None:
    draw, rank, channels = b.draw, len(v.shape), v.shape[1]
    op = draw(st.sampled_from(["Add", "Mul"]))
    kind = draw(st.sampled_from(["per-channel", "per-channel", "scalar", "full", "tensor"]))
    if kind == "tensor":  # two tensors of one shape: fan-in (and fan-out of the other)
        same = [w for w in b.values if w.shape == v.shape and w.name != v.name]
        other = draw(st.sampled_from(same)) if same else v
        return b.add_node(op, [v.name, other.name], v.shape)
    if kind == "per-channel":
        shape = [channels] if rank == 2 else [channels, *[1] * (rank - 2)]
    elif kind == "scalar":
        shape = draw(st.sampled_from([[], [1]]))
    else:
        shape = [1, *v.shape[1:]]
    values = b.rng.standard_normal(shape)
    if op == "Mul":  # keep the scale away from 0 so outputs stay informative
        values = np.sign(values + 1e-9) * (0.5 + np.abs(values))
    return b.add_node(op, [v.name, b.const("k", values.astype(b.dtype))], v.shape)


def _reshape(b: _Builder, v: Value) -> Value | None:
    if len(v.shape) == 2:
        target, shape = [0, v.shape[1], 1, 1], (v.shape[0], v.shape[1], 1, 1)
    elif len(v.shape) >= 3:
        target, shape = [0, -1], (v.shape[0], math.prod(v.shape[1:]))
    else:
        return None
    if b.draw(st.booleans()) and len(v.shape) >= 3:
        return b.add_node("Flatten", [v.name], shape, axis=1)
    if b.draw(st.integers(1, 3)) == 1 and len(v.shape) >= 3:  # tf2onnx: target built at run time
        return _runtime_flatten(b, v, shape)
    return b.add_node("Reshape", [v.name, b.const("shape", np.array(target, np.int64))], shape)


def _runtime_flatten(b: _Builder, v: Value, shape: tuple[int, ...]) -> Value:
    """``Shape → Gather → Unsqueeze → Concat([n, -1]) → Reshape``, as tf2onnx writes a Keras
    Flatten (issue 22: onnx's inference loses the rank there at opset 13)."""
    dims = b.name("dims")
    b.nodes.append(helper.make_node("Shape", [v.name], [dims]))
    batch = b.name("batch")
    index = b.const("zero", np.array(0, np.int64))
    b.nodes.append(helper.make_node("Gather", [dims, index], [batch], axis=0))
    batch1 = b.name("batch_row")
    b.nodes.append(
        helper.make_node("Unsqueeze", [batch, b.const("axes", np.array([0], np.int64))], [batch1])
    )
    target = b.name("target")
    rest = b.const("minus_one", np.array([-1], np.int64))
    b.nodes.append(helper.make_node("Concat", [batch1, rest], [target], axis=0))
    b.steps.append("Shape→Gather→Unsqueeze→Concat")
    return b.add_node("Reshape", [v.name, target], shape)


def _concat(b: _Builder, v: Value) -> Value | None:
    fits = [w for w in b.values if len(w.shape) == len(v.shape)]
    fits = [w for w in fits if w.shape[:1] + w.shape[2:] == v.shape[:1] + v.shape[2:]]
    other = b.draw(st.sampled_from(fits)) if fits else v
    shape = (v.shape[0], v.shape[1] + other.shape[1], *v.shape[2:])
    return b.add_node("Concat", [v.name, other.name], shape, axis=1)


def _noop(b: _Builder, v: Value) -> Value | None:
    """A no-op a fold walks through: torch's float→float Cast, or Identity."""
    if b.draw(st.booleans()):
        elem = onnx.helper.np_dtype_to_tensor_dtype(b.dtype)
        return b.add_node("Cast", [v.name], v.shape, to=elem)
    return b.add_node("Identity", [v.name], v.shape)


def _slice(b: _Builder, v: Value) -> Value | None:
    """A causal trim: drop the first element of the last axis (or of axis 1, the channels)."""
    axis = b.draw(st.sampled_from([len(v.shape) - 1, 1]))
    if v.shape[axis] < 2:
        return None
    shape = tuple(size - 1 if i == axis else size for i, size in enumerate(v.shape))
    starts = b.const("starts", np.array([1], np.int64))
    ends = b.const("ends", np.array([v.shape[axis]], np.int64))
    axes = b.const("axes", np.array([axis], np.int64))
    return b.add_node("Slice", [v.name, starts, ends, axes], shape)


LINEAR: list[Callable[[_Builder, Value], Value | None]] = [_conv, _conv_transpose, _gemm, _matmul]
OTHERS: list[Callable[[_Builder, Value], Value | None]] = [
    _batchnorm,
    _relu,
    _pool,
    _elementwise,
    _reshape,
    _concat,
    _noop,
    _slice,
]


@st.composite
def random_models(draw: st.DrawFn) -> FuzzModel:
    """A random valid model (see the module docstring), with feeds for its one input."""
    if draw(st.integers(1, EDGE_ONE_IN)) == 1:
        return draw(edge_models())
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float32, np.float32, np.float16])))
    opset = draw(st.sampled_from([17, 17, 15, 13]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    builder = _Builder(draw, rng, dtype, opset)
    builder.symbolic_batch = draw(st.booleans())
    batch = draw(st.integers(1, 2))
    rank = draw(st.sampled_from([4, 4, 3, 2]))
    channels = draw(st.integers(1, 6))
    spatial = [draw(st.integers(3, 8)) for _ in range(rank - 2)]
    source = Value("x", (batch, channels, *spatial))
    builder.values.append(source)

    for _ in range(draw(st.integers(2, MAX_STEPS))):
        recent = draw(st.integers(0, 3)) > 0 or len(builder.values) == 1
        base = builder.values[-1] if recent else draw(st.sampled_from(builder.values))
        use_linear = draw(st.booleans())
        op = draw(st.sampled_from(LINEAR if use_linear else OTHERS))
        made = op(builder, base)
        if made is None:  # the op does not fit this tensor: normalise it instead
            _batchnorm(builder, base)
        elif op in LINEAR:
            builder.maybe_graph_output(made, 10)
            if draw(st.integers(0, 4)) > 0:  # usually a BN right after the layer
                _batchnorm(builder, made)
    return _finish(builder, source, dtype, opset, rng)


def _finish(
    builder: _Builder, source: Value, dtype: np.dtype, opset: int, rng: np.random.Generator
) -> FuzzModel:
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    outputs = [v.name for v in builder.values[1:] if v.name not in builder.consumed]
    outputs += [name for name in builder.extra_outputs if name not in outputs]
    if not outputs:  # only the input: give the graph one op
        outputs = [_relu(builder, source).name]  # type: ignore[union-attr]
    input_shape: list[int | str] = list(source.shape)
    if builder.symbolic_batch:
        input_shape[0] = "N"
    graph = helper.make_graph(
        builder.nodes,
        "fuzz",
        [helper.make_tensor_value_info("x", elem, input_shape)],
        [helper.make_tensor_value_info(name, elem, None) for name in outputs],
        builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    declared = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    known = {v.name: v.shape for v in builder.values}
    for output in model.graph.output:
        found = declared[output.name].type
        if found.tensor_type.HasField("shape"):
            output.type.CopyFrom(found)
        else:  # after a run-time Reshape inference may know no shape: the builder does
            dims: list[int | str] = list(known[output.name])
            dims[0] = "N" if builder.symbolic_batch else dims[0]
            output.type.CopyFrom(helper.make_tensor_type_proto(elem, dims))
    onnx.checker.check_model(model, full_check=True)
    feeds = {"x": rng.standard_normal(source.shape).astype(dtype)}
    return FuzzModel(model, feeds, dtype, builder.steps)


@st.composite
def edge_models(draw: st.DrawFn, kind: str | None = None) -> FuzzModel:
    """A random graph of the issue-10 edge classes (``fuzz.edge_graphs``), or of ``kind``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    graph = edge_graph(DrawChoices(draw), rng, kind)
    return FuzzModel(graph.model, graph.feeds, graph.dtype, [graph.kind, *graph.steps])

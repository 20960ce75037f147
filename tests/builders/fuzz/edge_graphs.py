"""Random graphs of the edge classes of issue 10, for the fuzzer and for ``run_edge_corpus.py``.

``edge_graph(choices, rng)`` draws one graph of a random class (or of ``kind``):

- ``two-slot``: ``Gemm(x, B, B)`` with BN after, before or both; a Conv weight also read by
  another Conv, the same Conv, or a graph output; BN parameters shared by two BNs and a Mul;
- ``scopes``: If branches that reuse each other's names with other values, bodies (If, Loop,
  Scan) whose initializers shadow the main graph's (a negative variance outside), BNs in a
  branch that read an outer graph input or an outer Conv's output;
- ``broadcast-up``: ``x[N, 1, ...]·c[1, C, ...] (+ d)``, then maybe BN, then a C-channel layer;
  or a 1-channel layer, the broadcast, then BN;
- ``rank-path``: Squeeze, Unsqueeze, Reshape, Flatten and rank-raising bias Adds between BN
  and a MatMul/Gemm, on either side;
- ``typed-fields``: every tensor in ``raw_data`` or its typed field (``float_data``,
  ``double_data``, float16 as ``int32_data``), weights sometimes in Constant nodes; float32,
  float64 or float16;
- ``legacy-opset``: opsets 6, 7, 9, 11 (IR 3-6): Conv/MatMul/Gemm, constant Mul/Add with the
  legacy ``broadcast=1, axis=k`` at opset 6 (square shapes, so numpy's reading is plausible),
  BN (``is_test=1``), a consumer;
- ``report``: unnamed nodes whose outputs become graph outputs; ``MatMul(W, x)`` then BN;
- ``float16``: tiny BN scales (subnormal folded weights), large cancelling shifts, BN →
  Flatten → Gemm/MatMul on offset activations (also after a Cast to float16), a fold
  followed by kept tiny-variance BNs that amplify its rounding.
- ``round3``: issue 22's classes (``edges.refusals``): lone BNs of each float dtype with a
  fixed or symbolic channel dim, BN → channel Split → MatMuls, BN → MatMul → Add of a scalar,
  tf2onnx's run-time Flatten → Dense → BN or Mul/Add, and the same with an unprovable rank.

Every generator names nodes only sometimes (reports then use ``<OpType:output>`` labels).
Structure comes from ``choices`` (hypothesis draws, so failures shrink; or a numpy generator,
for a seeded corpus); array values from ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.builders.edges import refusals
from tests.builders.edges.build import array, branch, build_model, value
from tests.builders.graphs import random_feeds

T = TypeVar("T")
F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
BOOL, INT64 = TensorProto.BOOL, TensorProto.INT64


class Choices(Protocol):
    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def boolean(self) -> bool: ...


class DrawChoices:
    """Structure from hypothesis (failures shrink)."""

    def __init__(self, draw: Callable) -> None:  # type: ignore[type-arg]
        from hypothesis import strategies as st

        self._draw, self._st = draw, st

    def integer(self, low: int, high: int) -> int:
        return self._draw(self._st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self._draw(self._st.sampled_from(list(options)))

    def boolean(self) -> bool:
        return self._draw(self._st.booleans())


class RandomChoices:
    """Structure from a seeded numpy generator (``run_edge_corpus.py``)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def integer(self, low: int, high: int) -> int:
        return int(self._rng.integers(low, high + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self._rng.integers(len(options)))]

    def boolean(self) -> bool:
        return bool(self._rng.integers(2))


@dataclass
class EdgeGraph:
    kind: str
    model: onnx.ModelProto
    feeds: list[dict[str, np.ndarray]]
    dtype: np.dtype
    steps: list[str] = field(default_factory=list)


class _Net:
    """Nodes and initializers of one graph. Constant names are ``{prefix}{n}`` and value
    names ``{values}{op}{n}``, numbered by one counter from 0, so two nets built the same way
    reuse each other's names (sibling branches), and bodies shadow the main graph's
    initializers while keeping their own value names (``values`` differs per scope: onnx's
    inference rejects a body value that redefines an outer one)."""

    def __init__(
        self,
        ch: Choices,
        rng: np.random.Generator,
        dtype: np.dtype,
        *,
        opset: int = 17,
        values: str = "",
        named: bool | None = None,
        typed: bool = False,
    ) -> None:
        self.ch, self.rng, self.dtype, self.opset = ch, rng, dtype, opset
        self.values, self.typed = values, typed
        self.named = ch.integer(0, 2) > 0 if named is None else named
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.steps: list[str] = []
        self.count = 0

    def const(self, prefix: str, values: np.ndarray, dtype: np.dtype | None = None) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        kind = self.ch.choice(["raw", "typed"]) if self.typed else "raw"
        self.inits.append(array(np.asarray(values).astype(dtype or self.dtype), name, kind))
        return name

    def weights(self, shape: Sequence[int]) -> np.ndarray:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        return self.rng.standard_normal(list(shape)) / np.sqrt(max(fan_in, 1))

    def node(self, op: str, inputs: Sequence[str], **attrs: object) -> str:
        self.count += 1
        output = f"{self.values}{op.lower()[:4]}{self.count}"
        name = f"{self.values}{op.lower()}{self.count}" if self.named else ""
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=name, **attrs))
        self.steps.append(op + (str({k: v for k, v in attrs.items() if k != "value"}) or ""))
        return output

    def bn(
        self,
        x: str,
        channels: int,
        *,
        params: Sequence[str] | None = None,
        gamma: np.ndarray | None = None,
        mean: np.ndarray | None = None,
        var: np.ndarray | None = None,
    ) -> str:
        """BN with random γ (mixed signs), β, μ, σ² > 0 unless given."""
        rng = self.rng
        if params is None:
            values = [
                gamma
                if gamma is not None
                else rng.uniform(0.5, 2, channels) * rng.choice([-1, 1], channels),
                rng.standard_normal(channels),
                mean if mean is not None else rng.standard_normal(channels),
                var if var is not None else rng.uniform(0.2, 3.0, channels),
            ]
            params = [self.const(role, v) for role, v in zip("gbmv", values, strict=True)]
        legacy = {"is_test": 1} if self.opset <= 6 else {}
        return self.node("BatchNormalization", [x, *params], **legacy)

    def layer(self, x: str, shape: tuple[int, ...], out: int, kind: str = "") -> tuple[str, tuple]:
        """A Conv (rank >= 3), or MatMul/Gemm (rank 2) from ``shape`` to ``out`` channels."""
        if len(shape) >= 3:
            k = self.ch.choice([1, 3]) if min(shape[2:]) >= 3 else 1
            pad = self.ch.choice([0, k // 2]) if k > 1 else 0
            attrs: dict[str, object] = {"kernel_shape": [k] * (len(shape) - 2)}
            if pad:
                attrs["pads"] = [pad] * 2 * (len(shape) - 2)
            inputs = [x, self.const("W", self.weights([out, shape[1], *[k] * (len(shape) - 2)]))]
            if self.ch.boolean():
                inputs.append(self.const("B", self.rng.standard_normal(out)))
            spatial = tuple(s + 2 * pad - k + 1 for s in shape[2:])
            return self.node("Conv", inputs, **attrs), (shape[0], out, *spatial)
        kind = kind or self.ch.choice(["MatMul", "Gemm"])
        if kind == "MatMul":
            return self.node("MatMul", [x, self.const("W", self.weights([shape[1], out]))]), (
                shape[0],
                out,
            )
        attrs = {"transB": 1} if self.ch.boolean() else {}
        weight = self.weights([out, shape[1]] if attrs else [shape[1], out])
        inputs = [x, self.const("W", weight)]
        if self.ch.boolean() or self.opset < 11:  # C is optional from Gemm-11 on
            inputs.append(self.const("C", self.rng.standard_normal(out)))
            if self.opset <= 6:
                attrs["broadcast"] = 1
        return self.node("Gemm", inputs, **attrs), (shape[0], out)

    def finish(
        self,
        kind: str,
        inputs: dict[str, tuple[int, ...]],
        outputs: Sequence[str | tuple[str, Sequence[int]]],
        *,
        feeds: list[dict[str, np.ndarray]] | None = None,
        extra_inputs: Sequence[onnx.ValueInfoProto] = (),
        input_dtype: np.dtype | None = None,
    ) -> EdgeGraph:
        """The checked model; standard-normal feeds unless ``feeds`` (``[]``: the caller
        fills them in)."""
        dtype = input_dtype or self.dtype
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        model = build_model(
            self.nodes,
            [*(value(n, list(s), elem) for n, s in inputs.items()), *extra_inputs],
            outputs,
            self.inits,
            opset=self.opset,
            elem=helper.np_dtype_to_tensor_dtype(self.dtype),
        )
        if feeds is None:
            feeds = [
                {n: self.rng.standard_normal(list(s)).astype(dtype) for n, s in inputs.items()}
            ]
        return EdgeGraph(kind, model, feeds, self.dtype, self.steps)


def _dtype(ch: Choices) -> np.dtype:
    return ch.choice([F32, F32, F16])


# ---- class 1 -----------------------------------------------------------------------------------


def two_slot(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    kind = ch.choice(["gemm-after", "gemm-before", "gemm-both", "conv-shared", "params-shared"])
    net = _Net(ch, rng, _dtype(ch))
    if kind.startswith("gemm"):
        n = ch.integer(2, 5)
        shared = net.const("B", net.weights([n, n]))
        attrs: dict[str, object] = {}
        if ch.boolean():
            attrs["transB"] = 1
        if (alpha := ch.choice([1.0, 1.0, 0.5, -2.0])) != 1.0:
            attrs["alpha"] = alpha
        if (beta := ch.choice([1.0, 1.0, 0.5])) != 1.0:
            attrs["beta"] = beta
        x = net.bn("x", n) if kind != "gemm-after" else "x"
        y = net.node("Gemm", [x, shared, shared], **attrs)
        if kind != "gemm-before":
            y = net.bn(y, n)
        outputs = [y]
        if ch.boolean():  # B read once more, by another node
            outputs.append(net.node("MatMul", [y, shared]))
        return net.finish(f"two-slot/{kind}", {"x": (n, n)}, outputs)
    channels, size = ch.integer(1, 4), ch.integer(3, 5)
    shape = (1, channels, size, size)
    if kind == "conv-shared":
        conv, out_shape = net.layer("x", shape, channels)
        weight = net.nodes[-1].input[1]
        y = net.bn(conv, channels)
        reader = ch.choice(["conv", "same-conv", "output"])
        kernel = _attrs_of(net.nodes[0])["kernel_shape"][0]  # type: ignore[index]
        if reader == "same-conv" and min(out_shape[2:]) < kernel:
            reader = "conv"  # the output is too small to convolve again
        if reader == "conv":
            other = net.node("Conv", ["x", weight], **_attrs_of(net.nodes[0]))
        elif reader == "same-conv":
            other = net.node("Conv", [y, weight], **_attrs_of(net.nodes[0]))
        else:
            other = net.node("Identity", [weight])
        return net.finish(f"two-slot/{kind}-{reader}", {"x": shape}, [y, other])
    first, _ = net.layer("x", shape, channels)
    y1 = net.bn(first, channels)
    params = list(net.nodes[-1].input[1:])
    second, _ = net.layer("x", shape, channels)
    y2 = net.bn(second, channels, params=params)
    outputs = [y1, y2]
    extra = []
    if ch.boolean():
        outputs.append(net.node("Mul", ["u", params[0]]))
        extra.append(value("u", [channels], helper.np_dtype_to_tensor_dtype(net.dtype)))
    graph = net.finish(f"two-slot/{kind}", {"x": shape}, outputs, extra_inputs=extra, feeds=[])
    graph.feeds = [random_feeds(graph.model, seed=int(rng.integers(2**31)))]
    return graph


def _attrs_of(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


# ---- class 2 -----------------------------------------------------------------------------------


def _shape_keeping_body(
    net: _Net, x: str, shape: tuple[int, ...], k: int, *, var: np.ndarray | None = None
) -> str:
    """``layer(x) → BN`` keeping ``shape`` (C → C; a ``k×k`` Conv pads to keep its size).
    Every scope uses one ``k``: onnx's shape inference types a shadowing initializer with the
    outer one's shape, so shadowing with another shape fails the checker."""
    channels = shape[1]
    if len(shape) >= 3:
        attrs: dict[str, object] = {"kernel_shape": [k, k]}
        if k == 3:
            attrs["pads"] = [1, 1, 1, 1]
        weight = net.const("W", net.weights([channels, channels, k, k]))
        y = net.node("Conv", [x, weight], **attrs)
    else:
        y = net.node("MatMul", [x, net.const("W", net.weights([channels, channels]))])
    return net.bn(y, channels, var=var)


def scopes(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    kind = ch.choice(
        [
            "if-siblings",
            "if-shadow",
            "loop-shadow",
            "loop-folded-away",
            "loop-if-nested",
            "scan-shadow",
            "if-outer-input",
            "if-outer-conv",
        ]
    )
    dtype = _dtype(ch)
    channels = ch.integer(1, 4)
    shape: tuple[int, ...] = ch.choice([(1, channels, 3, 3), (2, channels)])
    if kind == "loop-folded-away":
        shape = (2, channels)  # the Mul constant must shadow a [C] variance with a [C] shape
    named = ch.boolean()
    k = ch.choice([1, 3])
    outer = _Net(ch, rng, dtype, values="o_", named=named)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    cond = [value("cond", [], BOOL)]
    outputs: list[str | tuple[str, Sequence[int]]] = []

    def body_net(values: str) -> _Net:
        return _Net(ch, rng, dtype, values=values, named=named)  # counter from 0: same names

    body = body_net("bd_")
    body_out = _shape_keeping_body(body, "s" if kind == "scan-shadow" else "h", shape, k)
    if kind == "loop-folded-away":
        # Outside: layer → Mul by a negative per-channel constant that has the name of the
        # body BN's variance. The Mul folds into the layer in the first run, so a name-keyed
        # lookup refuses the body BN (nonpositive-variance) in the first run and folds it in
        # the second: not idempotent.
        _shape_keeping_body(outer, "x", shape, k)
        bn = outer.nodes.pop()
        outer.steps.pop()
        outer.inits = [t for t in outer.inits if t.name not in bn.input[1:]]
        variance = body.nodes[-1].input[4]
        negative = -rng.uniform(0.5, 2.0, [channels, *[1] * (len(shape) - 2)])
        outer.inits.append(array(negative.astype(dtype), variance))
        outputs.append(outer.node("Mul", [bn.input[0], variance]))
    if kind in ("if-shadow", "loop-shadow", "scan-shadow"):
        variance = None
        if kind == "loop-shadow":
            variance = rng.uniform(0.2, 3.0, channels)
            variance[int(rng.integers(channels))] = -1.0  # refused outside; fine inside
        outputs.append(_shape_keeping_body(outer, "x", shape, k, var=variance))
    if kind.startswith("if"):
        source = "x"
        if kind == "if-outer-conv":
            source = _shape_keeping_body(outer, "x", shape, k)
            outer.nodes.pop()  # keep the layer, not its BN: the branch normalises its output
            outer.steps.pop()
            source = outer.nodes[-1].output[0]
        then_net = body_net("br_")
        if kind in ("if-outer-input", "if-outer-conv"):
            then_out = then_net.bn(source, channels)
        else:
            then_out = _shape_keeping_body(then_net, "x", shape, k)
        else_net = body_net("br_")
        if kind == "if-siblings":
            else_out = _shape_keeping_body(else_net, "x", shape, k)
        else:
            else_out = else_net.node("Relu", [source])
        branches = {
            "then_branch": _as_branch(then_net, then_out, "out", shape, elem, "then"),
            "else_branch": _as_branch(else_net, else_out, "out", shape, elem, "else"),
        }
        outputs.append(outer.node("If", ["cond"], **branches))
        graph = outer.finish(f"scopes/{kind}", {"x": shape}, outputs, extra_inputs=cond, feeds=[])
        x = rng.standard_normal(list(shape)).astype(dtype)
        graph.feeds = [{"x": x, "cond": np.array(flag)} for flag in (True, False)]
        return graph
    if kind == "loop-if-nested":  # a third scope: an If in the body, same names again
        then_net, else_net = body_net("in_"), body_net("in_")
        then_out = _shape_keeping_body(then_net, body_out, shape, k)
        else_out = else_net.node("Relu", [body_out])
        branches = {
            "then_branch": _as_branch(then_net, then_out, "inner", shape, elem, "then"),
            "else_branch": _as_branch(else_net, else_out, "inner", shape, elem, "else"),
        }
        body_out = body.node("If", ["cond_in"], **branches)
        outputs.append(_shape_keeping_body(outer, "x", shape, k))
    if kind.startswith("loop"):
        out = body_out
        body.nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
        inputs = [value("i", [], INT64), value("cond_in", [], BOOL), value("h", list(shape), elem)]
        graph_body = branch(
            body.nodes, [("cond_out", []), (out, list(shape))], body.inits, inputs, elem=elem
        )
        graph_body.output[0].type.tensor_type.elem_type = BOOL
        trips = outer.const("trips", np.array(ch.integer(1, 3)), np.dtype(np.int64))
        looped = outer.node("Loop", [trips, "", "x"], body=graph_body)
        outputs.append((looped, shape))
    else:
        steps = ch.integer(1, 3)
        out = body_out
        graph_body = branch(
            body.nodes, [(out, list(shape))], body.inits, [value("s", list(shape), elem)], elem=elem
        )
        outputs.append(outer.node("Scan", ["xs"], body=graph_body, num_scan_inputs=1))
        return outer.finish(f"scopes/{kind}", {"x": shape, "xs": (steps, *shape)}, outputs)
    return outer.finish(f"scopes/{kind}", {"x": shape}, outputs)


def _as_branch(
    net: _Net, out: str, name: str, shape: tuple[int, ...], elem: int, graph_name: str
) -> onnx.GraphProto:
    """The net as an If branch whose one output is ``name`` (renamed from ``out``)."""
    for node in net.nodes:
        for index, output in enumerate(node.output):
            if output == out:
                node.output[index] = name
    return branch(net.nodes, [(name, list(shape))], net.inits, name=graph_name, elem=elem)


# ---- classes 3 and 4 ---------------------------------------------------------------------------


def broadcast_up(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    net = _Net(ch, rng, _dtype(ch))
    rank, channels, batch = ch.choice([2, 4]), ch.integer(2, 5), ch.integer(1, 2)
    spatial = (3, 3) if rank == 4 else ()
    const_shape = [1, channels, *[1] * len(spatial)]
    ops = ch.choice([["Mul"], ["Add"], ["Mul", "Add"]])
    producer = ch.integer(0, 3) == 0
    x, shape = "x", (batch, 1, *spatial)
    inputs = {"x": shape}
    if producer:  # a one-channel layer before the broadcast
        inputs = {"x": (batch, 3, *spatial)}
        x, shape = net.layer("x", (batch, 3, *spatial), 1)
    for op in ops:
        values = (
            net.rng.uniform(0.5, 2.0, const_shape)
            if op == "Mul"
            else net.rng.standard_normal(const_shape)
        )
        x = net.node(op, [x, net.const("k", values)])
    wide = (batch, channels, *shape[2:])
    if producer or ch.boolean():
        x = net.bn(x, channels)
    if not producer and ch.integer(0, 3) > 0:
        x, _ = net.layer(x, wide, ch.integer(1, 4))
    return net.finish(f"broadcast-up/{'+'.join(ops)}{'-producer' if producer else ''}", inputs, [x])


def rank_path(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    net = _Net(ch, rng, _dtype(ch))
    channels, out = ch.integer(1, 5), ch.integer(1, 4)
    if ch.boolean():  # consumer side: BN, a rank change, MatMul/Gemm, maybe a bias
        path = ch.choice(["Squeeze", "Unsqueeze", "Reshape-1d", "Reshape-2d", "Flatten"])
        shape = (
            (1, channels) if path in ("Squeeze", "Unsqueeze", "Reshape-1d") else (1, channels, 1, 1)
        )
        x = net.bn("x", channels)
        axes = net.const("axes", np.array([0]), np.dtype(np.int64))
        if path in ("Squeeze", "Unsqueeze"):
            x = net.node(path, [x, axes])
        elif path.startswith("Reshape"):
            target = [channels] if path == "Reshape-1d" else [1, channels]
            x = net.node("Reshape", [x, net.const("shape", np.array(target), np.dtype(np.int64))])
        else:
            x = net.node("Flatten", [x])
        rank = {"Squeeze": 1, "Unsqueeze": 3, "Reshape-1d": 1}.get(path, 2)
        if rank == 2 and ch.boolean():
            x, _ = net.layer(x, (1, channels), out, "Gemm")
        else:
            x = net.node("MatMul", [x, net.const("W", net.weights([channels, out]))])
        bias = ch.choice([None, [out], [1, out], [1, 1, out]])
        if bias is not None:
            x = net.node("Add", [x, net.const("b", rng.standard_normal(bias))])
        return net.finish(f"rank-path/consumer-{path}-bias{bias}", {"x": shape}, [x])
    path = ch.choice(["Unsqueeze0", "Unsqueeze2", "Add-rank3-Reshape"])
    shape = (channels,) if path == "Unsqueeze0" else (2, channels)
    x = net.node("MatMul", ["x", net.const("W", net.weights([channels, out]))])
    if path.startswith("Unsqueeze"):
        axes = net.const("axes", np.array([0 if path == "Unsqueeze0" else 2]), np.dtype(np.int64))
        x = net.node("Unsqueeze", [x, axes])
    else:
        x = net.node("Add", [x, net.const("b", rng.standard_normal([1, 1, out]))])
        x = net.node("Reshape", [x, net.const("shape", np.array([2, out]), np.dtype(np.int64))])
    x = net.bn(x, out)
    return net.finish(f"rank-path/producer-{path}", {"x": shape}, [x])


# ---- classes 5 and 6 ---------------------------------------------------------------------------


def typed_fields(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    dtype = ch.choice([F32, F64, F16])
    net = _Net(ch, rng, dtype, typed=True)
    channels, out = ch.integer(1, 4), ch.integer(1, 4)
    shape: tuple[int, ...] = (
        (2, channels) if dtype == F64 else ch.choice([(2, channels), (1, channels, 3, 3)])
    )
    producer = ch.boolean()
    x = "x" if producer else net.bn("x", channels)
    x, _ = net.layer(x, shape, out)
    if ch.boolean():  # the weight as a Constant node holding the (typed) tensor
        layer = net.nodes[-1]
        tensor = next(t for t in net.inits if t.name == layer.input[1])
        net.inits.remove(tensor)
        net.nodes.insert(0, helper.make_node("Constant", [], [tensor.name], value=tensor))
    if producer:
        x = net.bn(x, out)
    return net.finish(
        f"typed-fields/{dtype.name}-{'producer' if producer else 'consumer'}", {"x": shape}, [x]
    )


def legacy_opset(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    opset = ch.choice([6, 7, 9, 11])
    net = _Net(ch, rng, F32, opset=opset)
    channels = ch.integer(2, 4)
    # Square shapes, so a constant along one axis could be read along another.
    in_shape: tuple[int, ...] = ch.choice(
        [(channels, channels), (2, channels), (1, channels, 4, 4)]
    )
    x, shape = net.layer("x", in_shape, channels)
    for op in ch.choice([[], ["Mul"], ["Add"], ["Mul", "Add"]]):
        if opset <= 6:  # legacy broadcasting: B aligned with A's dims from ``axis``
            axis = ch.integer(0, len(shape) - 1)
            values = rng.uniform(0.5, 2.0, shape[axis])
            x = net.node(op, [x, net.const("k", values)], broadcast=1, axis=axis)
        else:
            values = rng.uniform(0.5, 2.0, [channels, *[1] * (len(shape) - 2)])
            x = net.node(op, [x, net.const("k", values)])
    x = net.bn(x, channels)
    if ch.boolean():
        x, _ = net.layer(x, shape, ch.integer(1, 3))
    return net.finish(f"legacy-opset/{opset}-rank{len(in_shape)}", {"x": in_shape}, [x])


# ---- classes 7 and 8 ---------------------------------------------------------------------------


def report(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    if ch.boolean():  # unnamed layers whose BN outputs are graph outputs (renames)
        net = _Net(ch, rng, _dtype(ch), named=False)
        in_shape: tuple[int, ...] = ch.choice([(1, 3, 7, 7), (2, 3)])  # 3 unpadded 3x3 fit
        x, shape, outputs = "x", in_shape, []
        for _ in range(ch.integer(1, 3)):
            x, shape = net.layer(x, shape, ch.integer(1, 4))
            x = net.bn(x, shape[1])
            if ch.boolean():
                outputs.append(x)
        if x not in outputs:
            outputs.append(x)
        return net.finish("report/unnamed-renames", {"x": in_shape}, outputs)
    net = _Net(ch, rng, _dtype(ch))
    rows, inner, cols = ch.integer(1, 4), ch.integer(1, 4), ch.integer(1, 4)
    shape = ch.choice([(inner, cols), (2, inner, cols)])
    before = ch.boolean()
    x = net.bn("x", shape[1]) if before else "x"
    x = net.node("MatMul", [net.const("W", net.weights([rows, inner])), x])
    if not before:
        x = net.bn(x, rows if len(shape) == 3 else cols)
    return net.finish(f"report/W@x-{'bn-first' if before else 'bn-after'}", {"x": shape}, [x])


def float16_extremes(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    kind = ch.choice(
        [
            "tiny-scale",
            "tiny-scale-consumer",
            "cancelling-bias",
            "consumer-range",
            "cast-consumer-range",
            "amplified-chain",
        ]
    )
    net = _Net(ch, rng, F16)
    channels = ch.integer(1, 4)
    if kind == "amplified-chain":
        # layer → BN (folds) → BNs with σ² ~ 1e-3 (scales ~30) whose outputs are graph
        # outputs: they stay and amplify the fold's one float16 rounding.
        shape = ch.choice([(1, channels, 4, 4), (2, channels)])
        x, _ = net.layer("x", shape, channels)
        outputs = []
        for _ in range(ch.integer(2, 5)):
            x = net.bn(x, channels, var=10.0 ** rng.uniform(-3, -2, channels))
            outputs.append(x)
        return net.finish(f"float16/{kind}", {"x": shape}, outputs)
    if kind.startswith("tiny-scale"):
        shape = ch.choice([(1, channels, 3, 3), (2, channels)])
        scale = 10.0 ** rng.uniform(-7.5, -5.0, channels)  # s = γ/√σ²: subnormal weights
        var = np.full(channels, 1e4)
        gamma = scale * 100.0 * rng.choice([-1.0, 1.0], channels)
        if kind == "tiny-scale":
            x, out_shape = net.layer("x", shape, channels)
            x = net.bn(x, channels, gamma=gamma, var=var, mean=np.zeros(channels))
        else:
            x = net.bn("x", channels, gamma=gamma, var=var)
            x, _ = net.layer(x, shape, ch.integer(1, 3))
        return net.finish(f"float16/{kind}", {"x": shape}, [x])
    if kind == "cancelling-bias":
        inner = ch.integer(2, 6)
        offset = float(rng.uniform(50, 200))
        weight = net.weights([inner, channels])
        x = net.node("MatMul", ["x", net.const("W", weight)])
        mean = offset * weight.astype(np.float16).astype(np.float64).sum(axis=0)
        x = net.bn(
            x,
            channels,
            gamma=np.ones(channels),
            mean=mean,
            var=10.0 ** rng.uniform(-4, -2, channels),
        )
        graph = net.finish(f"float16/{kind}", {"x": (3, inner)}, [x], feeds=[])
        noise = 0.05 * rng.standard_normal([3, inner])
        graph.feeds = [{"x": (offset + noise).astype(np.float16)}]
        return graph
    offset = float(rng.integers(300, 3000))
    source, input_dtype = "x", F16
    if kind.startswith("cast"):
        source, input_dtype = net.node("Cast", ["x"], to=TensorProto.FLOAT16), F32
    x = net.bn(
        source,
        channels,
        gamma=np.ones(channels),
        mean=np.full(channels, offset),
        var=10.0 ** rng.uniform(-4, -2, channels),
    )
    x = net.node("Flatten", [x])
    features, outputs = channels * 4, ch.integer(1, 3)
    signs = np.where(np.arange(features) % 2 == 0, 1.0, -1.0)[:, None]
    weight = signs * rng.uniform(0.3, 0.4, [features, outputs])
    if ch.boolean():
        x = net.node("Gemm", [x, net.const("W", weight), net.const("C", np.zeros(outputs))])
    else:
        x = net.node("MatMul", [x, net.const("W", weight)])
    graph = net.finish(
        f"float16/{kind}", {"x": (1, channels, 2, 2)}, [x], feeds=[], input_dtype=input_dtype
    )
    values = offset + rng.integers(-3, 4, [1, channels, 2, 2])
    graph.feeds = [{"x": values.astype(input_dtype)}]
    return graph


def _round3(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    case = refusals.round3(ch, rng)
    return EdgeGraph(f"round3/{case.name}", case.model, case.feeds, case.dtype)


def functions(ch: Choices, rng: np.random.Generator) -> EdgeGraph:
    """Issue 22: local functions (``tests.builders.edges.functions``)."""
    from tests.builders.edges.functions import random_function_model

    kind, model, feeds = random_function_model(ch.integer, rng)
    return EdgeGraph(kind, model, feeds, np.dtype(np.float32))


GENERATORS: dict[str, Callable[[Choices, np.random.Generator], EdgeGraph]] = {
    "two-slot": two_slot,
    "scopes": scopes,
    "broadcast-up": broadcast_up,
    "rank-path": rank_path,
    "typed-fields": typed_fields,
    "legacy-opset": legacy_opset,
    "report": report,
    "float16": float16_extremes,
    "functions": functions,
    "round3": _round3,
}


def edge_graph(ch: Choices, rng: np.random.Generator, kind: str | None = None) -> EdgeGraph:
    """One random graph of class ``kind`` (any class when None)."""
    return GENERATORS[kind or ch.choice(list(GENERATORS))](ch, rng)

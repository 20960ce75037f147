"""Issue 22's classes (round 3: lowering, refusals by mistake, run-time shapes) as edge cases.

Each class is a generator ``(choices, rng) → EdgeCase`` (structure from ``choices``, so the
fuzzer's hypothesis draws shrink it; ``fuzz.edge_graphs`` draws them as class ``round3``),
and ``CASES`` holds seeded instances of each for the edge battery:

- ``lowering``: a BN nothing folds into (after a Sigmoid), float32/float16/float64, rank 3-5,
  its channel dim fixed or symbolic (``C``): kept, or lowered by ``--lower-standalone`` to a
  form onnxruntime's CPU provider has kernels for in that dtype (no double Conv);
- ``split-matmul``: BN → a Split of its channels → one MatMul per part (``x @ W``, or
  ``W @ x`` with the channels on axis −2), maybe with a bias Add: folded into every MatMul;
- ``matmul-scalar-add``: BN → MatMul → Add of a scalar, ``[1]``, ``[1, 1]`` or per-feature
  bias: folded (the folded bias is one value per feature, which the Add's output has);
- ``runtime-flatten``: tf2onnx's Keras Flatten (``Shape → Gather → Unsqueeze → Concat →
  Reshape``, or ``Shape → Slice``, or ``Shape(start, end)``) → Dense (MatMul → Add) → BN or
  tf2onnx's ``Mul``/``Add``: folded once the run-time shape is evaluated;
- ``unknown-rank``: the same with a target whose length is only known at run time: the BN
  and the BN-like chain are kept and reported (``axis-not-proven``), never silently left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.builders.edges.build import (
    FOLDED,
    EdgeCase,
    array,
    bn_node,
    bn_params,
    build_model,
    outcome,
    value,
    weights,
)

T = TypeVar("T")
INT64 = np.dtype(np.int64)
DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))


class Choices(Protocol):
    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def boolean(self) -> bool: ...


class SeededChoices:
    """Structure from a seeded numpy generator (the fixed ``CASES``)."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def integer(self, low: int, high: int) -> int:
        return int(self._rng.integers(low, high + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self._rng.integers(len(options)))]

    def boolean(self) -> bool:
        return bool(self._rng.integers(2))


def _name(ch: Choices, name: str) -> str:
    return name if ch.boolean() else ""  # unnamed nodes: reports use <Op:output> labels


def _label(node: onnx.NodeProto) -> str:
    return node.name or f"<{node.op_type}:{node.output[0]}>"


def lowering(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    dtype = ch.choice(DTYPES)
    rank, channels = ch.integer(3, 5), ch.integer(2, 5)
    batch, spatial = ch.integer(1, 2), [ch.integer(1, 3) for _ in range(rank - 2)]
    declared: list[int | str] = [
        "N" if ch.boolean() else batch,
        "C" if ch.boolean() else channels,
        *spatial,
    ]
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    bn = bn_node("s", "y", name=_name(ch, "bn"))
    model = build_model(
        [helper.make_node("Sigmoid", ["x"], ["s"]), bn],
        [value("x", declared, elem)],
        ["y"],
        bn_params(rng, channels, dtype.type),
        elem=elem,
    )
    feeds = [{"x": rng.standard_normal([batch, channels, *spatial]).astype(dtype)}]
    name = f"lowering-{dtype.name}-rank{rank}-{declared[1]}"
    return EdgeCase(name, model, feeds, {_label(bn): outcome(FOLDED, "no-linear-producer")}, dtype)


def split_matmul(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    sizes = [ch.integer(1, 3) for _ in range(ch.integer(1, 3))]
    channels, left, out = sum(sizes), ch.boolean(), ch.integer(1, 4)
    columns = ch.integer(1, 3)
    parts = [f"part{i}" for i in range(len(sizes))]
    nodes = [
        bn_node("x", "y", name=_name(ch, "bn")),
        helper.make_node("Split", ["y", "sizes"], parts, axis=1),
    ]
    inits = [*bn_params(rng, channels), array(np.array(sizes, INT64), "sizes")]
    outputs = []
    for i, (part, size) in enumerate(zip(parts, sizes, strict=True)):
        if left:  # y [1, C, T] → part [1, c, T] → W [out, c] @ part = [1, out, T]
            inits.append(array(weights(rng, [out, size]), f"W{i}"))
            operands = [f"W{i}", part]
        else:  # y [N, C] → part [N, c] → part @ W [c, out]
            inits.append(array(weights(rng, [size, out]), f"W{i}"))
            operands = [part, f"W{i}"]
        nodes.append(helper.make_node("MatMul", operands, [f"mm{i}"], name=_name(ch, f"mm{i}")))
        bias = ch.choice([None, (), (out,) if not left else (out, 1)])
        if bias is None:
            outputs.append(f"mm{i}")
            continue
        inits.append(array(rng.standard_normal(bias).astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"]))
        outputs.append(f"z{i}")
    shape: list[int | str] = (
        [1, channels, columns] if left else ["N" if ch.boolean() else 2, channels]
    )
    model = build_model(nodes, [value("x", shape)], outputs, inits)
    sizes_fed = [1, channels, columns] if left else [2, channels]
    feeds = [{"x": rng.standard_normal(sizes_fed).astype(np.float32)}]
    name = f"split-matmul-{'left' if left else 'right'}-{sizes}"
    return EdgeCase(name, model, feeds, {_label(nodes[0]): outcome(FOLDED)})


def matmul_scalar_add(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    channels, out = ch.integer(2, 5), ch.integer(1, 4)
    bias = ch.choice([(), (1,), (1, 1), (out,), (1, out)])
    add = ["mm", "c"] if ch.boolean() else ["c", "mm"]
    bn = bn_node("x", "y", name=_name(ch, "bn"))
    nodes = [
        bn,
        helper.make_node("MatMul", ["y", "W"], ["mm"], name=_name(ch, "mm")),
        helper.make_node("Add", add, ["z"], name=_name(ch, "add")),
    ]
    inits = [
        *bn_params(rng, channels),
        array(weights(rng, [channels, out]), "W"),
        array(rng.standard_normal(bias).astype(np.float32), "c"),
    ]
    batch = ch.integer(1, 3)
    model = build_model(
        nodes, [value("x", ["N" if ch.boolean() else batch, channels])], ["z"], inits
    )
    feeds = [{"x": rng.standard_normal([batch, channels]).astype(np.float32)}]
    return EdgeCase(f"matmul-add-bias{list(bias)}", model, feeds, {_label(bn): outcome(FOLDED)})


def _runtime_flatten(
    ch: Choices,
    rng: np.random.Generator,
    target: str,
    expect: frozenset[str],
    opset: int | None = None,
) -> EdgeCase:
    """``x [batch, *spatial, C]`` → a Flatten whose target is built at run time (``target``:
    ``gather``, ``slice``, ``shape-range`` or ``input``) → MatMul → Add → BN or Mul/Add.
    onnx's own data propagation finds the shape at opset 15 and 17, not at 13 (``Shape-13``
    propagates nothing), tf2onnx's default for years."""
    if opset is None:
        opset = 15 if target == "shape-range" else ch.choice([13, 13, 15, 17])
    spatial = [ch.integer(1, 3) for _ in range(ch.integer(1, 3))]
    features, out, batch = int(np.prod(spatial)), ch.integer(2, 5), ch.integer(1, 3)
    declared: int | str = batch if ch.boolean() else "unk__0"
    nodes = [helper.make_node("Shape", ["x"], ["shape"])]
    inits = [array(np.array([-1], INT64), "minus_one")]
    inputs = [value("x", [declared, *spatial])]
    feeds: dict[str, np.ndarray] = {"x": rng.standard_normal([batch, *spatial])}
    if target == "gather":
        nodes += [
            helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        ]
        inits += [array(np.array(0, INT64), "zero"), array(np.array([0], INT64), "axes")]
    elif target == "slice":
        nodes.append(helper.make_node("Slice", ["shape", "begin", "end"], ["n1"]))
        inits += [array(np.array([0], INT64), "begin"), array(np.array([1], INT64), "end")]
    elif target == "shape-range":
        nodes[0] = helper.make_node("Shape", ["x"], ["n1"], start=0, end=1)
    else:  # a target of run-time length: nothing can prove the rank
        nodes = []
        inputs.append(value("n1", ["k"], TensorProto.INT64))
        feeds["n1"] = np.array([batch], np.int64)
    nodes += [
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name=_name(ch, "flatten")),
        helper.make_node("MatMul", ["flat", "kernel"], ["mm"], name=_name(ch, "dense/MatMul")),
        helper.make_node("Add", ["mm", "bias"], ["dense"], name=_name(ch, "dense/BiasAdd")),
    ]
    inits += [
        array(weights(rng, [features, out]), "kernel"),
        array(rng.standard_normal(out).astype(np.float32), "bias"),
    ]
    if ch.boolean():
        last = bn_node("dense", "y", name=_name(ch, "bn"))
        nodes.append(last)
        inits += bn_params(rng, out)
        kind = "bn"
    else:
        scale = rng.uniform(0.5, 2.0, out) * rng.choice([-1.0, 1.0], out)
        inits += [
            array(scale.astype(np.float32), "scale"),
            array(rng.standard_normal(out).astype(np.float32), "shift"),
        ]
        nodes.append(helper.make_node("Mul", ["dense", "scale"], ["scaled"], name="bn/mul"))
        last = helper.make_node("Add", ["scaled", "shift"], ["y"], name=_name(ch, "bn/add"))
        nodes.append(last)
        kind = "mul-add"
    result = "y"
    if ch.boolean():
        nodes.append(helper.make_node("Relu", ["y"], ["out"]))
        result = "out"
    model = build_model(nodes, inputs, [(result, [declared, out])], inits, opset=opset)
    model.producer_name = "tf2onnx"
    feeds["x"] = feeds["x"].astype(np.float32)
    name = f"{target}-flatten-opset{opset}-{kind}-batch{declared}"
    return EdgeCase(name, model, [feeds], {_label(last): expect})


def runtime_flatten(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    target = ch.choice(["gather", "slice", "shape-range"])
    return _runtime_flatten(ch, rng, target, outcome(FOLDED))


def unknown_rank(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    return _runtime_flatten(ch, rng, "input", outcome("axis-not-proven"))


GENERATORS: dict[str, Callable[[Choices, np.random.Generator], EdgeCase]] = {
    "lowering": lowering,
    "split-matmul": split_matmul,
    "matmul-scalar-add": matmul_scalar_add,
    "runtime-flatten": runtime_flatten,
    "unknown-rank": unknown_rank,
}


def round3(ch: Choices, rng: np.random.Generator) -> EdgeCase:
    """One graph of a random class of this module."""
    return GENERATORS[ch.choice(list(GENERATORS))](ch, rng)


def _seeded(kind: str, seed: int) -> Callable[[], EdgeCase]:
    def build() -> EdgeCase:
        return GENERATORS[kind](SeededChoices(seed), np.random.default_rng(seed))

    build.__name__ = f"{kind.replace('-', '_')}_{seed}"
    return build


def _flatten_case(target: str, opset: int, seed: int) -> Callable[[], EdgeCase]:
    def build() -> EdgeCase:
        expect = outcome("axis-not-proven") if target == "input" else outcome(FOLDED)
        choices, rng = SeededChoices(seed), np.random.default_rng(seed)
        return _runtime_flatten(choices, rng, target, expect, opset)

    build.__name__ = f"{target.replace('-', '_')}_flatten_opset{opset}_{seed}"
    return build


SEEDS_PER_CLASS = 8
CASES = [
    _seeded(kind, seed)
    for kind in ("lowering", "split-matmul", "matmul-scalar-add")
    for seed in range(SEEDS_PER_CLASS)
] + [
    _flatten_case(target, opset, seed)
    for target, opsets in [
        ("gather", (13, 15, 17)),
        ("slice", (13, 17)),
        ("shape-range", (15,)),
        ("input", (13, 17)),
    ]
    for opset in opsets
    for seed in range(3)
]

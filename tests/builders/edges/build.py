"""Building blocks of the adversarial edge graphs (issue 10): a case, its model, its feeds.

An ``EdgeCase`` is a small valid model built in code, the feeds to run it with (several when
an ``If`` takes both branches), its dtype, and what must happen to each BatchNormalization,
by report label: ``FOLDED`` (the fold is exact and must be done), a set of reason codes (it
must be refused with one of them), or both (exact fold or one of these refusals). The
property every case must satisfy is ``tests.builders.fuzz.checks.check_optimize_is_safe``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

FOLDED = "folded"
ANY_REASON = "*"  # refused, for whatever reason (the case checks the detail instead)

# Reason codes this battery expects for refusals that do not exist yet (issue 10). The engine
# decides the names; if it picks others, change them here, in one place.
FLOAT16_ROUNDING = "precision-loss"  # a float16 fold whose rounding exceeds the bound
FLOAT16_CONSUMER = "low-precision-consumer"  # a consumer fold on a float16 path, range unproven
LEGACY_OPSET = "unsupported-opset"  # opset <= 6 broadcast rules not implemented

# onnx's IR version for each opset this battery uses (onnx.helper.VERSION_TABLE).
IR_FOR_OPSET = {6: 3, 7: 3, 9: 4, 11: 6, 13: 7, 15: 8, 17: 8}


@dataclass
class EdgeCase:
    """One adversarial graph and what must happen to each BN (see the module docstring).

    ``extra`` runs further case-specific checks on ``(original, result)``.
    """

    name: str
    model: onnx.ModelProto
    feeds: list[dict[str, np.ndarray]]
    expect: dict[str, frozenset[str]]
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    extra: Callable[[onnx.ModelProto, object], None] | None = None

    def __repr__(self) -> str:
        return f"EdgeCase({self.name})"


def outcome(*allowed: str) -> frozenset[str]:
    """``outcome(FOLDED)``, ``outcome("channel-mismatch")``, ``outcome(FOLDED, "x")``."""
    return frozenset(allowed)


def array(values: np.ndarray, name: str, field_kind: str = "raw") -> onnx.TensorProto:
    """A tensor stored the way an exporter may store it: ``raw`` (raw_data), ``typed``
    (float_data / double_data / int32_data bit patterns for float16, as the proto allows)."""
    values = np.asarray(values)
    if field_kind == "raw":
        return numpy_helper.from_array(values, name)
    elem = helper.np_dtype_to_tensor_dtype(values.dtype)
    if values.dtype == np.float16:  # float16 in int32_data: one uint16 bit pattern per int32
        bits = values.reshape(-1).view(np.uint16).astype(np.int32)
        tensor = onnx.TensorProto(name=name, data_type=elem, dims=values.shape)
        tensor.int32_data.extend(bits.tolist())
        return tensor
    return helper.make_tensor(name, elem, values.shape, values.reshape(-1).tolist())


def build_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[str | tuple[str, Sequence[int]]],
    initializers: Sequence[onnx.TensorProto] = (),
    *,
    opset: int = 17,
    elem: int = onnx.TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A model that passes the full checker and strict shape inference, with its graph
    outputs typed as inference finds them (or as given: ``(name, shape)``, for outputs
    inference leaves unknown, such as a Loop's). IR 3 lists initializers as inputs too."""
    ir_version = IR_FOR_OPSET[opset]
    graph_inputs = list(inputs)
    if ir_version < 4:
        graph_inputs += [
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers
        ]
    graph = helper.make_graph(
        list(nodes),
        "edge",
        graph_inputs,
        [
            helper.make_tensor_value_info(o, elem, None)
            if isinstance(o, str)
            else helper.make_tensor_value_info(o[0], elem, list(o[1]))
            for o in outputs
        ],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    declared = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for output in model.graph.output:
        found = declared.get(output.name)
        if found is not None and found.type.tensor_type.HasField("shape"):
            output.type.CopyFrom(found.type)
    onnx.checker.check_model(model, full_check=True)
    return model


def branch(
    nodes: Sequence[onnx.NodeProto],
    outputs: Sequence[tuple[str, Sequence[int | str | None] | None]],
    initializers: Sequence[onnx.TensorProto] = (),
    inputs: Sequence[onnx.ValueInfoProto] = (),
    *,
    name: str = "body",
    elem: int = onnx.TensorProto.FLOAT,
) -> onnx.GraphProto:
    """A subgraph (If branch, Loop or Scan body); its outputs typed as given."""
    return helper.make_graph(
        list(nodes),
        name,
        list(inputs),
        [
            helper.make_tensor_value_info(n, elem, None if s is None else list(s))
            for n, s in outputs
        ],
        list(initializers),
    )


def bn_params(
    rng: np.random.Generator,
    channels: int,
    dtype: type = np.float32,
    *,
    prefix: str = "",
    field_kind: str = "raw",
    variance: np.ndarray | None = None,
) -> list[onnx.TensorProto]:
    """γ (mixed signs), β, μ, σ² > 0 named ``{prefix}g/b/m/v``, spread so a wrong fold shows."""
    gamma = rng.uniform(0.5, 2.0, channels) * rng.choice([-1.0, 1.0], channels)
    values = [
        gamma,
        rng.standard_normal(channels),
        rng.standard_normal(channels),
        rng.uniform(0.2, 3.0, channels) if variance is None else variance,
    ]
    return [
        array(np.asarray(v).astype(dtype), prefix + role, field_kind)
        for role, v in zip("gbmv", values, strict=True)
    ]


def bn_node(x: str, y: str, prefix: str = "", name: str = "", **attrs: object) -> onnx.NodeProto:
    return helper.make_node(
        "BatchNormalization", [x, *(prefix + r for r in "gbmv")], [y], name=name, **attrs
    )


def weights(rng: np.random.Generator, shape: Sequence[int], dtype: type = np.float32) -> np.ndarray:
    """Random weights scaled by 1/sqrt(fan-in), so activations stay O(1)."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(list(shape)) / np.sqrt(max(fan_in, 1))).astype(dtype)


def normal_feeds(
    rng: np.random.Generator, shapes: dict[str, Sequence[int]], dtype: type = np.float32
) -> dict[str, np.ndarray]:
    return {name: rng.standard_normal(list(shape)).astype(dtype) for name, shape in shapes.items()}


def value(name: str, shape: Sequence[int | str] | None, elem: int = 1) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))

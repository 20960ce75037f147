"""Shared test helpers: build tiny models, run them unoptimized, compare with the original.

Every numerical check runs the *unfolded* model under onnxruntime with all graph
optimizations disabled: at BASIC, onnxruntime folds Conv+BN itself, and an optimized
reference would prove nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import bnfold

IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 would write 14
OPSET = 17


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[np.ndarray | onnx.TensorProto] = (),
    *,
    names: Sequence[str] = (),
    opset: int = OPSET,
    ir_version: int = IR_VERSION,
    value_info: Sequence[onnx.ValueInfoProto] = (),
) -> onnx.ModelProto:
    """A checked model; ``initializers`` are arrays named by ``names`` (or TensorProtos)."""
    tensors = []
    for index, value in enumerate(initializers):
        tensors.append(
            value
            if isinstance(value, onnx.TensorProto)
            else numpy_helper.from_array(value, names[index])
        )
    graph = helper.make_graph(
        list(nodes), "test", list(inputs), list(outputs), tensors, value_info=list(value_info)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    _fill_output_shapes(model)
    onnx.checker.check_model(model)
    return model


def _fill_output_shapes(model: onnx.ModelProto) -> None:
    """Give graph outputs declared with ``shape=None`` the type shape inference finds."""
    missing = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if not missing:
        return
    inferred = onnx.shape_inference.infer_shapes(model)
    by_name = {value.name: value for value in [*inferred.graph.value_info, *inferred.graph.output]}
    for output in missing:
        found = by_name.get(output.name)
        if found is not None and found.type.tensor_type.HasField("shape"):
            output.type.CopyFrom(found.type)
        else:
            output.type.tensor_type.shape.dim.add()  # rank unknown to inference: say rank >= 1


def tensor(
    name: str, shape: Sequence[int | str | None] | None, dtype: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    """A tensor value info; ``shape=None`` leaves the shape unknown."""
    return helper.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


def random_bn_params(
    rng: np.random.Generator, channels: int, dtype: type = np.float32
) -> list[np.ndarray]:
    """γ, β, μ, σ² with σ² > 0 and a spread that makes a wrong fold visible."""
    return [
        rng.uniform(0.5, 2.0, channels).astype(dtype) * rng.choice([-1, 1], channels).astype(dtype),
        rng.standard_normal(channels).astype(dtype),
        rng.standard_normal(channels).astype(dtype),
        rng.uniform(0.2, 3.0, channels).astype(dtype),
    ]


def run_unoptimized(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name, from onnxruntime's CPU provider with every graph optimization off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def random_feeds(model: onnx.ModelProto, seed: int = 0, dim: int = 2) -> dict[str, np.ndarray]:
    """Standard-normal inputs for every graph input that is not an initializer."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else dim for d in tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def assert_equivalent(
    original: onnx.ModelProto,
    folded: onnx.ModelProto,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seeds: Sequence[int] = (0, 1),
) -> None:
    """Outputs of ``folded`` equal those of the unoptimized ``original``, matched by name.

    The bound is relative to each output's largest magnitude (``atol`` guards outputs near 0).
    """
    onnx.checker.check_model(folded, full_check=True)
    for seed in seeds:
        feeds = random_feeds(original, seed)
        expected = run_unoptimized(original, feeds)
        actual = run_unoptimized(folded, feeds)
        assert expected.keys() == actual.keys()
        for name, reference in expected.items():
            got = actual[name]
            assert got.shape == reference.shape and got.dtype == reference.dtype, name
            scale = float(np.max(np.abs(reference.astype(np.float64)))) if reference.size else 0.0
            error = (
                float(np.max(np.abs(got.astype(np.float64) - reference))) if reference.size else 0.0
            )
            assert error <= atol + rtol * scale, (
                f"{name}: max abs error {error:.3e} (scale {scale:.3e})"
            )


def fold(model: onnx.ModelProto, **options: object) -> bnfold.OptimizeResult:
    return bnfold.optimize(model, **options)  # type: ignore[arg-type]


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def batchnorm_count(model: onnx.ModelProto) -> int:
    return op_types(model).count("BatchNormalization")

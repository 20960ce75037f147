"""``--lower-standalone`` writes only ops onnxruntime's CPU provider has kernels for (issue 22).

``CPU_KERNELS`` in ``bnfold.engine.lowering`` is a measured table: these tests measure it again
(a session per op and dtype) so a runtime that gains or loses a kernel fails here, and check
that each form falls back to the other where its kernel is missing, that what is written runs
and equals the unfolded model, and that a symbolic channel dim no longer fails the self-check.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bnfold.engine.lowering import CPU_KERNELS, DWCONV, LOWERING_FORMS, MUL_ADD, runnable_form
from bnfold.engine.selfcheck import refines
from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    op_types,
    random_bn_params,
    run_unoptimized,
    tensor,
)

BN = ["gamma", "beta", "mean", "var"]
DTYPES = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "float64": TensorProto.DOUBLE,
    "bfloat16": TensorProto.BFLOAT16,
}


def _loads(nodes: list[onnx.NodeProto], elem: int, rank: int, inits: list) -> bool:
    """Whether onnxruntime's CPU provider creates a session for the one-op model."""
    import onnxruntime as ort

    graph = helper.make_graph(
        nodes,
        "kernel",
        [helper.make_tensor_value_info("x", elem, [1, 3] + [2] * (rank - 2))],
        [helper.make_tensor_value_info("y", elem, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - NOT_IMPLEMENTED / INVALID_GRAPH: no kernel
        return False
    return True


def _measured_forms(elem: int) -> tuple[str, ...]:
    forms = []
    per_channel = [helper.make_tensor("c", elem, [3, 1, 1], [0] * 3)]
    mul_add = all(
        _loads([helper.make_node(op, ["x", "c"], ["y"])], elem, 4, per_channel)
        for op in ("Mul", "Add")
    )
    if mul_add:
        forms.append(MUL_ADD)
    dwconv = all(
        _loads(
            [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=3, kernel_shape=[1] * (r - 2))],
            elem,
            r,
            [
                helper.make_tensor("w", elem, [3, 1] + [1] * (r - 2), [0] * 3),
                helper.make_tensor("b", elem, [3], [0] * 3),
            ],
        )
        for r in (3, 4, 5)
    )
    if dwconv:
        forms.append(DWCONV)
    return tuple(forms)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_the_kernel_table_is_what_onnxruntime_loads(dtype: str) -> None:
    assert _measured_forms(DTYPES[dtype]) == CPU_KERNELS[dtype]


@pytest.mark.parametrize(
    ("dtype", "form", "chosen"),
    [
        ("float32", DWCONV, DWCONV),
        ("float16", DWCONV, DWCONV),
        ("float64", DWCONV, MUL_ADD),
        ("float64", MUL_ADD, MUL_ADD),
        ("bfloat16", MUL_ADD, None),
        ("bfloat16", DWCONV, None),
    ],
)
def test_a_form_without_a_kernel_becomes_the_other_or_nothing(
    dtype: str, form: str, chosen: str | None
) -> None:
    assert runnable_form(dtype, form) == chosen


def _lone_bn(shape: list[int | str], elem: int, channels: int = 4) -> onnx.ModelProto:
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    params = random_bn_params(np.random.default_rng(3), channels, np.float64)
    return make_model(
        [
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("BatchNormalization", ["s", *BN], ["z"], name="bn"),
        ],
        [tensor("x", shape, elem)],
        [tensor("z", None, elem)],
        [p.astype(dtype) for p in params],
        names=BN,
    )


@pytest.mark.parametrize("form", LOWERING_FORMS)
def test_float64_lowers_to_mul_add_whatever_the_form_asked(form: str) -> None:
    """No double Conv kernel: dwconv would write a model onnxruntime cannot load."""
    model = _lone_bn([2, 4, 3, 3], TensorProto.DOUBLE)
    result = fold(model, lower_standalone=form)
    assert op_types(result.model) == ["Sigmoid", "Mul", "Add"]
    assert [(f.pattern, f.into) for f in result.report.folds] == [("lower-standalone", "Mul+Add")]
    assert_equivalent(model, result.model, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", LOWERING_FORMS)
def test_float16_lowered_forms_run(form: str) -> None:
    model = _lone_bn([2, 4, 3, 3], TensorProto.FLOAT16)
    result = fold(model, lower_standalone=form)
    assert "BatchNormalization" not in op_types(result.model)
    assert ("Conv" in op_types(result.model)) == (form == DWCONV)
    assert_equivalent(model, result.model, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("form", LOWERING_FORMS)
def test_bfloat16_is_not_lowered_and_keeps_its_reason(form: str) -> None:
    model = _lone_bn([2, 4, 3, 3], TensorProto.BFLOAT16)
    result = fold(model, lower_standalone=form)
    assert op_types(result.model) == ["Sigmoid", "BatchNormalization"]
    assert [s.reason for s in result.report.skipped] == ["no-linear-producer"]


@pytest.mark.parametrize("form", LOWERING_FORMS)
@pytest.mark.parametrize("shape", [["N", "C", 3, 3], ["N", "C", "L"], [2, "C", 3, 3]])
def test_symbolic_channel_dim_is_lowered(form: str, shape: list[int | str]) -> None:
    """The lowered form tells inference the channel count the BN's parameters fix: a more
    specific output shape is no change to the model's outputs."""
    model = _lone_bn(shape, TensorProto.FLOAT)
    result = fold(model, lower_standalone=form)
    assert "BatchNormalization" not in op_types(result.model)
    assert not result.report.skipped
    assert list(result.model.graph.output) == list(model.graph.output)
    onnx.checker.check_model(result.model, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal([2, 4] + [3] * (len(shape) - 2)).astype(np.float32)}
    expected, got = run_unoptimized(model, feeds)["z"], run_unoptimized(result.model, feeds)["z"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("now", "before", "ok"),
    [
        (("N", 4, 3), ("N", "C", 3), True),
        (("N", 4, 3), ("N", None, 3), True),
        (("N", "C", 3), ("N", "C", 3), True),
        (("N", "D", 3), ("N", "C", 3), False),  # another symbol says something else
        (("N", None, 3), ("N", "C", 3), False),  # a dim lost
        (("N", 5, 3), ("N", 4, 3), False),
        (("N", 4), ("N", 4, 1), False),
        (None, ("N",), False),
    ],
)
def test_refines(now: tuple | None, before: tuple, ok: bool) -> None:
    assert refines(now, before) is ok

"""Every producer-fold variant as a tiny graph, checked against the unoptimized original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.builders.conv_bn import BN_NAMES, bn, conv_bn_model
from tests.builders.graphs import (
    assert_equivalent,
    batchnorm_count,
    fold,
    make_model,
    op_types,
    random_bn_params,
    tensor,
)


@pytest.mark.parametrize("spatial", [1, 2, 3])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_folds_for_any_rank_group_and_bias(spatial: int, group: int, bias: bool) -> None:
    model = conv_bn_model(spatial=spatial, group=group, bias=bias)
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert [f.pattern for f in result.report.folds] == ["conv-bn"]
    assert result.report.folds[0].into == "conv"
    assert_equivalent(model, result.model)


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [2, 2]},
        {"dilations": [2, 2]},
        {"pads": [1, 0, 2, 1]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "VALID"},
    ],
)
def test_conv_bn_folds_for_strides_dilations_pads(attrs: dict[str, object]) -> None:
    model = conv_bn_model(**attrs)
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def test_depthwise_conv_bn_folds() -> None:
    model = conv_bn_model(c_in=6, c_out=6, group=6)
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


@pytest.mark.parametrize("group", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("output_padding", [None, [1, 1]])
def test_conv_transpose_bn_folds(group: int, bias: bool, output_padding: list[int] | None) -> None:
    rng = np.random.default_rng(group)
    c_in, c_out = 8, 12
    inits = [rng.standard_normal([c_in, c_out // group, 3, 3]).astype(np.float32)]
    names = ["W"]
    inputs = ["x", "W"]
    if bias:
        inits.append(rng.standard_normal(c_out).astype(np.float32))
        names.append("b")
        inputs.append("b")
    inits += random_bn_params(rng, c_out)
    names += BN_NAMES
    attrs: dict[str, object] = {"group": group, "strides": [2, 2]}
    if output_padding:
        attrs["output_padding"] = output_padding
    nodes = [helper.make_node("ConvTranspose", inputs, ["y"], name="deconv", **attrs), bn()]
    model = make_model(
        nodes, [tensor("x", [1, c_in, 5, 5])], [tensor("z", None)], inits, names=names
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert result.report.folds[0].pattern == "convtranspose-bn"
    assert_equivalent(model, result.model)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, [], [5], [1, 5], [3, 5], [3, 1]])
def test_gemm_bn_folds_for_every_transpose_and_bias_shape(
    trans_a: int, trans_b: int, c_shape: list[int] | None
) -> None:
    rng = np.random.default_rng(7)
    m, k, n = 3, 4, 5
    a_shape = [k, m] if trans_a else [m, k]
    b = rng.standard_normal([n, k] if trans_b else [k, n]).astype(np.float32)
    inits = [b]
    names = ["B"]
    inputs = ["a", "B"]
    if c_shape is not None:
        inits.append(np.asarray(rng.standard_normal(c_shape), dtype=np.float32))
        names.append("C")
        inputs.append("C")
    inits += random_bn_params(rng, n)
    names += BN_NAMES
    gemm = helper.make_node(
        "Gemm", inputs, ["y"], name="gemm", transA=trans_a, transB=trans_b, alpha=0.7, beta=1.3
    )
    model = make_model(
        [gemm, bn()], [tensor("a", a_shape)], [tensor("z", None)], inits, names=names
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def _matmul_model(
    x_shape: list[int | str],
    between: list[onnx.NodeProto],
    inits_extra: dict[str, np.ndarray],
    n: int = 6,
) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    k = x_shape[-1]
    assert isinstance(k, int)
    inits = [
        rng.standard_normal([k, n]).astype(np.float32),
        *random_bn_params(rng, n),
        *inits_extra.values(),
    ]
    names = ["W", *BN_NAMES, *inits_extra]
    last = between[-1].output[0] if between else "y"
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul"), *between, bn(last)]
    return make_model(nodes, [tensor("x", x_shape)], [tensor("z", None)], inits, names=names)


def test_matmul_bn_folds_for_2d_input() -> None:
    model = _matmul_model(["batch", 4], [], {})
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert op_types(result.model) == ["MatMul", "Add"]
    assert_equivalent(model, result.model)


def test_matmul_bias_add_bn_folds_into_one_add() -> None:
    between = [helper.make_node("Add", ["y", "bias"], ["y2"], name="add")]
    model = _matmul_model([3, 4], between, {"bias": np.linspace(-1, 1, 6).astype(np.float32)})
    result = fold(model)
    assert op_types(result.model) == ["MatMul", "Add"]
    assert result.report.folds[0].through == ["Add"]
    assert_equivalent(model, result.model)


def test_matmul_transpose_bn_folds_when_axis_is_proven() -> None:
    # [B, T, N] -> Transpose(0, 2, 1) -> [B, N, T]: BN's axis 1 is the weight's output axis.
    between = [helper.make_node("Transpose", ["y"], ["t"], perm=[0, 2, 1])]
    model = _matmul_model([2, 7, 4], between, {})
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def test_matmul_reshape_bn2d_folds_when_axis_is_proven() -> None:
    between = [helper.make_node("Reshape", ["y", "shape"], ["r"])]
    model = _matmul_model([3, 4], between, {"shape": np.array([0, 6, 1, 1], dtype=np.int64)})
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def test_bias_add_and_sub_between_conv_and_bn_fold() -> None:
    rng = np.random.default_rng(11)
    c = 4
    inits = [
        rng.standard_normal([c, 3, 3, 3]).astype(np.float32),
        rng.standard_normal([c, 1, 1]).astype(np.float32),
        rng.standard_normal([1, c, 1, 1]).astype(np.float32),
        *random_bn_params(rng, c),
    ]
    names = ["W", "b1", "b2", *BN_NAMES]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y0"], name="conv"),
        helper.make_node("Add", ["b1", "y0"], ["y1"], name="add"),
        helper.make_node("Sub", ["y1", "b2"], ["y"], name="sub"),
        bn(),
    ]
    model = make_model(nodes, [tensor("x", [1, 3, 6, 6])], [tensor("z", None)], inits, names=names)
    result = fold(model)
    assert op_types(result.model) == ["Conv"]
    assert result.report.folds[0].through == ["Add", "Sub"]
    assert_equivalent(model, result.model)


def test_conv_transpose_add_bn_folds() -> None:
    rng = np.random.default_rng(12)
    inits = [
        rng.standard_normal([3, 4, 2, 2]).astype(np.float32),
        rng.standard_normal([4, 1, 1]).astype(np.float32),
    ]
    inits += random_bn_params(rng, 4)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "W"], ["y0"], strides=[2, 2]),
        helper.make_node("Add", ["y0", "b"], ["y"]),
        bn(),
    ]
    model = make_model(
        nodes, [tensor("x", [1, 3, 4, 4])], [tensor("z", None)], inits, names=["W", "b", *BN_NAMES]
    )
    result = fold(model)
    assert op_types(result.model) == ["ConvTranspose"]
    assert_equivalent(model, result.model)


def test_parameters_from_constant_nodes_and_constant_subgraphs() -> None:
    """Weights from Constant, BN params from ConstantOfShape/Cast/Identity, bias from Expand."""
    rng = np.random.default_rng(5)
    c = 4
    weight = rng.standard_normal([c, 2, 3, 3]).astype(np.float32)
    gamma, beta, mean, var = random_bn_params(rng, c)
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(weight)),
        # torch's dynamo exporter writes a bias-free Conv's zero bias as Expand(Constant, Constant)
        helper.make_node(
            "Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros(1, np.float32))
        ),
        helper.make_node(
            "Constant", [], ["bshape"], value=numpy_helper.from_array(np.array([c], np.int64))
        ),
        helper.make_node("Expand", ["zero", "bshape"], ["b"]),
        helper.make_node(
            "Constant", [], ["gamma64"], value=numpy_helper.from_array(gamma.astype(np.float64))
        ),
        helper.make_node("Cast", ["gamma64"], ["gamma"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["beta0"], value=numpy_helper.from_array(beta)),
        helper.make_node("Identity", ["beta0"], ["beta"]),
        helper.make_node("Constant", [], ["mean"], value=numpy_helper.from_array(mean)),
        helper.make_node(
            "ConstantOfShape",
            ["bshape"],
            ["var"],
            value=numpy_helper.from_array(np.array([1.7], np.float32)),
        ),
        helper.make_node("Conv", ["x", "W", "b"], ["y"], name="conv"),
        bn(),
    ]
    model = make_model(nodes, [tensor("x", [1, 2, 5, 5])], [tensor("z", None)])
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    # The recipes that built the folded parameters are gone; nothing else was added.
    assert op_types(result.model) == ["Conv"]
    assert_equivalent(model, result.model)


def test_fp16_conv_with_fp32_statistics_bn15_folds_and_reports_rounding() -> None:
    rng = np.random.default_rng(9)
    c = 8
    inits = [
        rng.standard_normal([c, 4, 3, 3]).astype(np.float16),
        *random_bn_params(rng, c, np.float32),
    ]
    inits[1] = inits[1].astype(np.float16)  # scale and B share T1; mean and var are T2
    inits[2] = inits[2].astype(np.float16)
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="conv"), bn()]
    model = make_model(
        nodes,
        [tensor("x", [1, 4, 6, 6], TensorProto.FLOAT16)],
        [tensor("z", None, TensorProto.FLOAT16)],
        inits,
        names=["W", *BN_NAMES],
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    folded = result.report.folds[0]
    assert folded.dtype == "float16"
    assert 0 < folded.rounding_error < 1e-3
    assert_equivalent(model, result.model, rtol=5e-3, atol=5e-3)


def test_float64_model_folds_exactly() -> None:
    # onnxruntime has no float64 Conv kernel; MatMul runs in float64.
    rng = np.random.default_rng(8)
    inits = [rng.standard_normal([4, 5]), *random_bn_params(rng, 5, np.float64)]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), bn()]
    model = make_model(
        nodes,
        [tensor("x", [3, 4], TensorProto.DOUBLE)],
        [tensor("z", None, TensorProto.DOUBLE)],
        inits,
        names=["W", *BN_NAMES],
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert result.report.folds[0].dtype == "float64"
    assert_equivalent(model, result.model, rtol=1e-12, atol=1e-12)


def test_batchnorm6_with_is_test_folds_like_batchnorm7() -> None:
    # onnxruntime has no BatchNormalization-6 kernel: compare with the same model at opset 7.
    def folded_weights(opset: int, attrs: dict[str, object]) -> list[np.ndarray]:
        rng = np.random.default_rng(0)
        inits = [rng.standard_normal([4, 3, 1, 1]).astype(np.float32), *random_bn_params(rng, 4)]
        nodes = [helper.make_node("Conv", ["x", "W"], ["y"]), bn(**attrs)]
        model = make_model(
            nodes,
            [tensor("x", [1, 3, 4, 4])],
            [tensor("z", None)],
            inits,
            names=["W", *BN_NAMES],
            opset=opset,
        )
        result = fold(model)
        assert batchnorm_count(result.model) == 0
        return [numpy_helper.to_array(t) for t in result.model.graph.initializer]

    for six, seven in zip(folded_weights(6, {"is_test": 1}), folded_weights(7, {}), strict=True):
        np.testing.assert_array_equal(six, seven)


@pytest.mark.parametrize(("opset", "attrs"), [(7, {}), (9, {}), (14, {}), (15, {})])
def test_every_inference_batchnorm_version_folds(opset: int, attrs: dict[str, object]) -> None:
    rng = np.random.default_rng(opset)
    inits = [rng.standard_normal([4, 3, 1, 1]).astype(np.float32), *random_bn_params(rng, 4)]
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"]), bn(**attrs)]
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 4, 4])],
        [tensor("z", None)],
        inits,
        names=["W", *BN_NAMES],
        opset=opset,
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def test_missing_epsilon_uses_the_spec_default() -> None:
    rng = np.random.default_rng(1)
    inits = [rng.standard_normal([2, 2, 1, 1]).astype(np.float32)]
    gamma, beta, mean, _ = random_bn_params(rng, 2)
    var = np.array([1e-6, 2e-6], np.float32)  # epsilon dominates: a wrong default shows
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"]), bn()]
    model = make_model(
        nodes,
        [tensor("x", [1, 2, 3, 3])],
        [tensor("z", None)],
        [*inits, gamma, beta, mean, var],
        names=["W", *BN_NAMES],
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert_equivalent(model, result.model)


def test_weight_shared_with_another_node_is_copied_not_corrupted() -> None:
    rng = np.random.default_rng(2)
    inits = [rng.standard_normal([4, 4, 1, 1]).astype(np.float32), *random_bn_params(rng, 4)]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv_a"),
        bn("y", "z"),
        helper.make_node("Conv", ["x", "W"], ["other"], name="conv_b"),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 4, 3, 3])],
        [tensor("z", None), tensor("other", None)],
        inits,
        names=["W", *BN_NAMES],
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    conv_a, conv_b = result.model.graph.node
    assert conv_b.input[1] == "W" and conv_a.input[1] != "W"
    assert_equivalent(model, result.model)


def test_two_convs_sharing_a_weight_each_with_a_bn_both_fold() -> None:
    rng = np.random.default_rng(4)
    inits = [
        rng.standard_normal([4, 4, 1, 1]).astype(np.float32),
        *random_bn_params(rng, 4),
        *random_bn_params(rng, 4),
    ]
    second = ["g2", "b2", "m2", "v2"]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"]),
        bn("y", "z"),
        helper.make_node("Conv", ["x", "W"], ["y2"]),
        helper.make_node("BatchNormalization", ["y2", *second], ["z2"]),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 4, 3, 3])],
        [tensor("z", None), tensor("z2", None)],
        inits,
        names=["W", *BN_NAMES, *second],
    )
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    # The first fold copies W (two readers); the second is then its only reader and may
    # rewrite it in place: either way no reader of the old W is left with folded values.
    assert_equivalent(model, result.model)


def test_bn_output_that_is_a_graph_output_keeps_its_name() -> None:
    model = conv_bn_model()
    result = fold(model)
    assert [o.name for o in result.model.graph.output] == ["z"]
    assert result.model.graph.node[0].output[0] == "z"


def test_ir3_initializers_listed_as_inputs_are_constants_and_inputs_stay() -> None:
    model = conv_bn_model()
    model.ir_version = 3
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 9))
    for init in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
        )
    input_names = [i.name for i in model.graph.input]
    result = fold(model)
    assert batchnorm_count(result.model) == 0
    assert [i.name for i in result.model.graph.input] == input_names
    assert result.model.ir_version == 3
    assert_equivalent(model, result.model)


def test_if_branch_bodies_are_folded_with_outer_scope_weights() -> None:
    rng = np.random.default_rng(6)
    then_nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="inner_conv"), bn("y", "z_then")]
    then_graph = helper.make_graph(then_nodes, "then", [], [tensor("z_then", None)])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z_else"])], "else", [], [tensor("z_else", None)]
    )
    nodes = [
        helper.make_node("If", ["cond"], ["z"], then_branch=then_graph, else_branch=else_graph)
    ]
    inits = [rng.standard_normal([3, 3, 1, 1]).astype(np.float32), *random_bn_params(rng, 3)]
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 4, 4]), tensor("cond", [], TensorProto.BOOL)],
        [tensor("z", None)],
        inits,
        names=["W", *BN_NAMES],
    )
    result = fold(model)
    assert result.report.counts["batchnorm_after"] == 0
    assert_if_equivalent(model, result.model)


def assert_if_equivalent(original: onnx.ModelProto, folded: onnx.ModelProto) -> None:
    from tests.builders.graphs import run_unoptimized

    x = np.random.default_rng(0).standard_normal([1, 3, 4, 4]).astype(np.float32)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        expected, actual = run_unoptimized(original, feeds), run_unoptimized(folded, feeds)
        np.testing.assert_allclose(actual["z"], expected["z"], rtol=1e-5, atol=1e-5)

"""Folds no other tool does: BN before a layer, BN behind an activation, BN written as Mul+Add."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    op_types,
    random_bn_params,
    tensor,
)

BN = ["gamma", "beta", "mean", "var"]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _affine_vectors(
    rng: np.random.Generator, channels: int, positive: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    scale = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    if not positive:
        scale *= rng.choice([-1, 1], channels).astype(np.float32)
    return scale, rng.standard_normal(channels).astype(np.float32)


def keras_mlp(layers: tuple[int, ...] = (8, 16, 16, 4)) -> onnx.ModelProto:
    """tf2onnx's export of Dense(relu) → BatchNormalization → … → Dense(softmax)."""
    rng = _rng(1)
    nodes, inits = [], {}
    current = "input"
    for index, (k, n) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        inits[f"W{index}"] = rng.standard_normal([k, n]).astype(np.float32) * 0.5
        inits[f"b{index}"] = rng.standard_normal(n).astype(np.float32)
        nodes += [
            helper.make_node(
                "MatMul", [current, f"W{index}"], [f"mm{index}"], name=f"dense{index}/MatMul"
            ),
            helper.make_node(
                "Add", [f"mm{index}", f"b{index}"], [f"dense{index}"], name=f"dense{index}/BiasAdd"
            ),
        ]
        current = f"dense{index}"
        if index < len(layers) - 2:
            scale, shift = _affine_vectors(rng, n)
            inits[f"bn{index}_mul"], inits[f"bn{index}_add"] = scale, shift
            nodes += [
                helper.make_node("Relu", [current], [f"relu{index}"], name=f"dense{index}/Relu"),
                helper.make_node(
                    "Mul",
                    [f"relu{index}", f"bn{index}_mul"],
                    [f"bnm{index}"],
                    name=f"bn{index}/mul",
                ),
                helper.make_node(
                    "Add", [f"bnm{index}", f"bn{index}_add"], [f"bn{index}"], name=f"bn{index}/add"
                ),
            ]
            current = f"bn{index}"
    nodes.append(helper.make_node("Softmax", [current], ["probs"], axis=-1))
    return make_model(
        nodes,
        [tensor("input", ["unk__0", layers[0]])],
        [tensor("probs", ["unk__0", layers[-1]])],
        list(inits.values()),
        names=list(inits),
    )


def keras_cnn(channels: int = 6, classes: int = 5) -> onnx.ModelProto:
    """tf2onnx's export of Conv2D(relu) → BatchNormalization → GlobalAveragePooling2D → Dense."""
    rng = _rng(2)
    scale, shift = _affine_vectors(rng, channels)
    inits = {
        "conv_W": rng.standard_normal([channels, 3, 3, 3]).astype(np.float32),
        "conv_b": rng.standard_normal(channels).astype(np.float32),
        "bn_mul": scale.reshape(1, channels, 1, 1),
        "bn_add": shift.reshape(1, channels, 1, 1),
        "dense_W": rng.standard_normal([channels, classes]).astype(np.float32),
        "dense_b": rng.standard_normal(classes).astype(np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2], name="transpose"),
        helper.make_node(
            "Conv", ["nchw", "conv_W", "conv_b"], ["conv"], pads=[1, 1, 1, 1], name="conv2d"
        ),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Mul", ["relu", "bn_mul"], ["bn_m"], name="bn/mul"),
        helper.make_node("Add", ["bn_m", "bn_add"], ["bn"], name="bn/add"),
        helper.make_node("GlobalAveragePool", ["bn"], ["gap"], name="gap"),
        helper.make_node("Squeeze", ["gap", "axes"], ["squeezed"], name="squeeze"),
        helper.make_node("MatMul", ["squeezed", "dense_W"], ["dense_mm"], name="dense/MatMul"),
        helper.make_node("Add", ["dense_mm", "dense_b"], ["dense"], name="dense/BiasAdd"),
        helper.make_node("Softmax", ["dense"], ["probs"], axis=-1, name="softmax"),
    ]
    inits["axes"] = np.array([2, 3], np.int64)
    return make_model(
        nodes,
        [tensor("input", ["unk__0", 8, 8, 3])],
        [tensor("probs", ["unk__0", classes])],
        list(inits.values()),
        names=list(inits),
    )


def test_keras_mlp_ends_with_no_affine_left() -> None:
    model = keras_mlp()
    result = fold(model)
    assert op_types(result.model) == [
        "MatMul",
        "Add",
        "Relu",
        "MatMul",
        "Add",
        "Relu",
        "MatMul",
        "Add",
        "Softmax",
    ]
    assert {f.direction for f in result.report.folds} == {"consumer"}
    assert [f.kind for f in result.report.folds] == ["Mul+Add", "Mul+Add"]
    assert_equivalent(model, result.model, rtol=1e-5)


def test_keras_cnn_ends_with_no_affine_left() -> None:
    model = keras_cnn()
    result = fold(model)
    assert "Mul" not in op_types(result.model)
    assert op_types(result.model).count("Add") == 1
    assert result.report.folds[0].through == ["GlobalAveragePool", "Squeeze"]
    assert_equivalent(model, result.model)


def _bn_first(
    after: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    out: str,
    extra: dict[str, np.ndarray],
    *,
    positive: bool = False,
    bn_input: str = "x",
    channels: int = 4,
    seed: int = 3,
) -> onnx.ModelProto:
    params = random_bn_params(_rng(seed), channels)
    if positive:
        params[0] = np.abs(params[0])
    nodes = [helper.make_node("BatchNormalization", [bn_input, *BN], ["z"], name="bn"), *after]
    inits = dict(zip(BN, params, strict=True)) | extra
    return make_model(nodes, inputs, [tensor(out, None)], list(inits.values()), names=list(inits))


def test_batchnorm1d_before_gemm_folds_into_the_gemm() -> None:
    rng = _rng(4)
    model = _bn_first(
        [helper.make_node("Gemm", ["z", "W", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        [tensor("x", ["batch", 4])],
        "y",
        {
            "W": rng.standard_normal([3, 4]).astype(np.float32),
            "b": rng.standard_normal(3).astype(np.float32),
        },
    )
    result = fold(model)
    assert op_types(result.model) == ["Gemm"]
    assert result.report.folds[0].pattern == "bn-gemm"
    assert_equivalent(model, result.model)


@pytest.mark.parametrize("with_bias_add", [True, False])
def test_bn_before_matmul_folds_into_it(with_bias_add: bool) -> None:
    rng = _rng(5)
    after = [helper.make_node("MatMul", ["z", "W"], ["m"])]
    extra = {"W": rng.standard_normal([4, 3]).astype(np.float32)}
    out = "m"
    if with_bias_add:
        after.append(helper.make_node("Add", ["m", "b"], ["y"]))
        extra["b"] = rng.standard_normal(3).astype(np.float32)
        out = "y"
    model = _bn_first(after, [tensor("x", [2, 4])], out, extra)
    result = fold(model)
    assert op_types(result.model) == ["MatMul", "Add"]
    assert [o.name for o in result.model.graph.output] == [out]
    assert_equivalent(model, result.model)


@pytest.mark.parametrize("group", [1, 2])
def test_bn_before_unpadded_conv_folds_into_it(group: int) -> None:
    rng = _rng(6)
    model = _bn_first(
        [helper.make_node("Conv", ["z", "W"], ["y"], group=group, strides=[2, 2])],
        [tensor("x", [1, 4, 7, 7])],
        "y",
        {"W": rng.standard_normal([6, 4 // group, 3, 3]).astype(np.float32)},
    )
    result = fold(model)
    assert op_types(result.model) == ["Conv"]
    assert_equivalent(model, result.model)


def test_bn_without_shift_before_padded_conv_folds() -> None:
    rng = _rng(7)
    params = random_bn_params(rng, 4)
    gamma, _, mean, var = params
    beta = (mean * gamma / np.sqrt(var.astype(np.float64) + np.float32(1e-5))).astype(
        np.float32
    )  # t = 0
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["z"], name="bn"),
        helper.make_node("Conv", ["z", "W"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [gamma, beta, mean, var, rng.standard_normal([2, 4, 3, 3]).astype(np.float32)]
    model = make_model(
        nodes, [tensor("x", [1, 4, 5, 5])], [tensor("y", None)], inits, names=[*BN, "W"]
    )
    # β was rounded to float32, so t is ~1e-8 rather than 0: only an exactly zero shift may fold.
    result = fold(model)
    if result.report.folds:
        assert_equivalent(model, result.model)
    else:
        assert result.report.skipped[0].reason == "padded-consumer"


def test_bn_through_flatten_into_gemm_repeats_per_feature() -> None:
    rng = _rng(8)
    model = _bn_first(
        [
            helper.make_node("Flatten", ["z"], ["f"]),
            helper.make_node("Gemm", ["f", "W"], ["y"], transB=1),
        ],
        [tensor("x", [2, 4, 3, 3])],
        "y",
        {"W": rng.standard_normal([5, 36]).astype(np.float32)},
    )
    result = fold(model)
    assert op_types(result.model) == ["Flatten", "Gemm"]
    assert_equivalent(model, result.model)


@pytest.mark.parametrize(
    "carrier",
    [
        helper.make_node("MaxPool", ["z"], ["p"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalMaxPool", ["z"], ["p"]),
        helper.make_node(
            "AveragePool", ["z"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0
        ),
        helper.make_node("Identity", ["z"], ["p"]),
        helper.make_node("Dropout", ["z"], ["p"]),
    ],
    ids=lambda node: node.op_type,
)
def test_bn_passes_commuting_ops_into_the_next_conv(carrier: onnx.NodeProto) -> None:
    rng = _rng(9)
    model = _bn_first(
        [carrier, helper.make_node("Conv", ["p", "W"], ["y"])],
        [tensor("x", [1, 4, 6, 6])],
        "y",
        {"W": rng.standard_normal([3, 4, 1, 1]).astype(np.float32)},
        positive=True,
    )
    result = fold(model)
    assert op_types(result.model) == [carrier.op_type, "Conv"]
    assert result.report.folds[0].through == [carrier.op_type]
    assert_equivalent(model, result.model)


def _conv_act_bn(
    act: str,
    after: list[onnx.NodeProto],
    out: str,
    *,
    gamma_sign: float = 1.0,
    spatial: tuple[int, ...] = (6, 6),
) -> onnx.ModelProto:
    rng = _rng(10)
    params = random_bn_params(rng, 4)
    params[0] = np.abs(params[0]) * gamma_sign
    attrs = {"alpha": 0.1} if act == "LeakyRelu" else {}
    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["c"], pads=[1] * 2 * len(spatial), name="conv"),
        helper.make_node(act, ["c"], ["a"], **attrs),
        helper.make_node("BatchNormalization", ["a", *BN], ["z"], name="bn"),
        *after,
    ]
    inits = {
        "W": rng.standard_normal([4, 3, *[3] * len(spatial)]).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        **dict(zip(BN, params, strict=True)),
        "W2": rng.standard_normal([2, 4, *[3] * len(spatial)]).astype(np.float32),
    }
    return make_model(
        nodes,
        [tensor("x", [1, 3, *spatial])],
        [tensor(out, None)],
        list(inits.values()),
        names=list(inits),
    )


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu"])
@pytest.mark.parametrize("spatial", [(6,), (3, 4, 4)])
def test_scale_moves_through_activation_and_shift_stays_as_one_add(
    act: str, spatial: tuple[int, ...]
) -> None:
    # The next Conv pads its input, so the shift has nowhere to go.
    pads = [1] * 2 * len(spatial)
    model = _conv_act_bn(
        act,
        [helper.make_node("Conv", ["z", "W2"], ["y"], pads=pads)],
        "y",
        spatial=spatial,
    )
    result = fold(model)
    assert op_types(result.model) == ["Conv", act, "Add", "Conv"]
    fold_record = result.report.folds[0]
    assert fold_record.into == "conv" and fold_record.through == [act]
    assert "shift kept" in fold_record.direction
    assert_equivalent(model, result.model)


def test_the_split_is_not_applied_on_a_2d_conv_feature_map() -> None:
    """An Add on [N, C, H, W] breaks onnxruntime's NCHWc chain at level all, where the BN
    does not (benchmarks/fold_shapes.md): the BN stays, with the reason."""
    model = _conv_act_bn(
        "Relu", [helper.make_node("Conv", ["z", "W2"], ["y"], pads=[1, 1, 1, 1])], "y"
    )
    result = fold(model)
    assert [s.reason for s in result.report.skipped] == ["slower-at-level-all"]
    assert result.model.SerializeToString() == model.SerializeToString()


def test_conv_relu_bn_before_unpadded_conv_folds_away_entirely() -> None:
    model = _conv_act_bn("Relu", [helper.make_node("Conv", ["z", "W2"], ["y"])], "y")
    result = fold(model)
    assert op_types(result.model) == ["Conv", "Relu", "Conv"]
    assert_equivalent(model, result.model)


def test_negative_scale_through_relu_is_refused() -> None:
    model = _conv_act_bn("Relu", [], "z", gamma_sign=-1.0)
    result = fold(model)
    assert [s.reason for s in result.report.skipped] == ["negative-scale"]
    assert result.model.SerializeToString() == model.SerializeToString()


def test_tf2onnx_mul_add_bn_after_conv_folds_into_the_conv() -> None:
    rng = _rng(11)
    scale, shift = _affine_vectors(rng, 4)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Mul", ["c", "s"], ["m"]),
        helper.make_node("Add", ["m", "t"], ["y"]),
    ]
    inits = [
        rng.standard_normal([4, 2, 3, 3]).astype(np.float32),
        scale.reshape(4, 1, 1),
        shift.reshape(4, 1, 1),
    ]
    model = make_model(
        nodes, [tensor("x", [1, 2, 5, 5])], [tensor("y", None)], inits, names=["W", "s", "t"]
    )
    result = fold(model)
    assert op_types(result.model) == ["Conv"]
    assert result.report.folds[0].kind == "Mul+Add"
    assert_equivalent(model, result.model)


def test_scalar_and_layernorm_like_chains_are_left_alone() -> None:
    """GELU's ·0.5 and a decomposed LayerNorm's γ/β are not BN: onnxruntime fuses them."""
    rng = _rng(12)
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node("MatMul", ["h", "W"], ["m"]),
        helper.make_node("Div", ["m", "d"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["g"]),
        helper.make_node("Add", ["g", "beta"], ["lb"]),
        helper.make_node("MatMul", ["lb", "W2"], ["y"]),
    ]
    inits = {
        "half": np.array(0.5, np.float32),
        "W": rng.standard_normal([4, 4]).astype(np.float32),
        "gamma": rng.standard_normal(4).astype(np.float32),
        "beta": rng.standard_normal(4).astype(np.float32),
        "W2": rng.standard_normal([4, 3]).astype(np.float32),
    }
    model = make_model(
        nodes,
        [tensor("x", [2, 4]), tensor("d", [2, 1])],
        [tensor("y", None)],
        list(inits.values()),
        names=list(inits),
    )
    result = fold(model)
    assert not result.report.folds
    assert result.model.SerializeToString() == model.SerializeToString()


def test_lower_standalone_rewrites_a_bn_that_stays_as_mul_add() -> None:
    model = _bn_first(
        [helper.make_node("Sigmoid", ["z"], ["y"])], [tensor("x", [2, 4, 3, 3])], "y", {}
    )
    assert fold(model).report.skipped
    result = fold(model, lower_standalone=True)
    assert op_types(result.model) == ["Mul", "Add", "Sigmoid"]
    assert result.report.folds[0].pattern == "lower-standalone" and not result.report.skipped
    assert_equivalent(model, result.model)


def test_loop_body_is_folded_with_outer_scope_weights() -> None:
    rng = _rng(13)
    body_nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Conv", ["state_in", "W"], ["c"], pads=[1, 1, 1, 1], name="body_conv"),
        helper.make_node("BatchNormalization", ["c", *BN], ["state_out"], name="body_bn"),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("iter", onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
            tensor("state_in", [1, 3, 5, 5]),
        ],
        [
            helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            tensor("state_out", [1, 3, 5, 5]),
        ],
    )
    nodes = [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)]
    inits = {
        "trips": np.array(3, np.int64),
        "W": rng.standard_normal([3, 3, 3, 3]).astype(np.float32) * 0.3,
        **dict(zip(BN, random_bn_params(rng, 3), strict=True)),
    }
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 5, 5])],
        [tensor("y", [1, 3, 5, 5])],
        list(inits.values()),
        names=list(inits),
    )
    result = fold(model)
    assert result.report.counts["batchnorm_after"] == 0
    assert [n.op_type for n in result.model.graph.node[0].attribute[0].g.node] == [
        "Identity",
        "Conv",
    ]
    assert_equivalent(model, result.model)

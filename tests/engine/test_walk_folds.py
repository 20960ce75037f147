"""Folds that walk through no-op Casts, Slices and Splits, into several consumers, or into a
``W @ x`` MatMul: each exact against the unfolded model run with ORT_DISABLE_ALL."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    op_types,
    random_bn_params,
    tensor,
)

BN = ["gamma", "beta", "mean", "var"]
FLOAT = TensorProto.FLOAT


def _bn(channels: int, seed: int = 0) -> list[np.ndarray]:
    return random_bn_params(np.random.default_rng(seed), channels)


def _bn_inits(channels: int) -> dict[str, np.ndarray]:
    return dict(zip(BN, _bn(channels), strict=True))


def _weights(shape: list[int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    x_shape: list[int],
    outputs: tuple[str, ...] = ("z",),
) -> onnx.ModelProto:
    return make_model(
        nodes,
        [tensor("x", x_shape)],
        [tensor(name, None) for name in outputs],
        list(inits.values()),
        names=list(inits),
    )


def _folded(model: onnx.ModelProto, **options: object) -> onnx.ModelProto:
    result = fold(model, **options)
    assert not result.report.skipped, result.report.skipped
    assert "BatchNormalization" not in op_types(result.model)
    assert_equivalent(model, result.model)
    return result.model


# ---- no-op Casts and Identity on both sides ---------------------------------------------


def test_conv_cast_mul_add_chain_folds_into_the_conv() -> None:
    """torch's export: Conv → Cast(float→float) → Mul → Add (a BN as a chain)."""
    scale = np.random.default_rng(3).uniform(0.5, 2, [1, 4, 1, 1]).astype(np.float32)
    shift = np.random.default_rng(4).standard_normal([1, 4, 1, 1]).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Cast", ["y"], ["c"], to=FLOAT),
        helper.make_node("Mul", ["c", "s"], ["m"]),
        helper.make_node("Add", ["m", "t"], ["z"]),
    ]
    model = _model(nodes, {"W": _weights([4, 3, 3, 3]), "s": scale, "t": shift}, [1, 3, 6, 6])
    result = fold(model)
    assert [(f.kind, f.into) for f in result.report.folds] == [("Mul+Add", "conv")]
    assert op_types(result.model) == ["Conv"]  # the no-op Cast removed too (issue 28)
    assert result.report.counts["noop_casts_removed"] == 1
    assert_equivalent(model, result.model)


def test_bias_add_after_a_noop_cast_folds() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Cast", ["y"], ["c"], to=FLOAT),
        helper.make_node("Identity", ["c"], ["i"]),
        helper.make_node("Add", ["i", "b"], ["a"]),
        helper.make_node("BatchNormalization", ["a", *BN], ["z"], name="bn"),
    ]
    inits = {"W": _weights([4, 3, 1, 1]), "b": _weights([4, 1, 1], 5), **_bn_inits(4)}
    folded = _folded(_model(nodes, inits, [1, 3, 5, 5]))
    assert op_types(folded) == ["Conv", "Identity"]  # the no-op Cast removed too


def test_bn_then_noop_cast_folds_into_the_next_conv() -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Cast", ["n"], ["c"], to=FLOAT),
        helper.make_node("Conv", ["c", "W"], ["z"], name="conv"),
    ]
    inits = {**_bn_inits(3), "W": _weights([2, 3, 3, 3])}
    folded = _folded(_model(nodes, inits, [1, 3, 6, 6]))
    assert op_types(folded) == ["Conv"]  # the no-op Cast removed too


def test_a_cast_that_changes_the_type_is_no_noop() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Cast", ["y"], ["c"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["c"], ["d"], to=FLOAT),
        helper.make_node("BatchNormalization", ["d", *BN], ["z"], name="bn"),
    ]
    model = _model(nodes, {"W": _weights([4, 3, 1, 1]), **_bn_inits(4)}, [1, 3, 4, 4])
    skipped = fold(model).report.skipped
    assert [s.reason for s in skipped] == ["no-linear-producer"]
    assert "Cast" in skipped[0].detail


# ---- several consumers ----------------------------------------------------------------


def test_bn_feeding_five_heads_folds_into_all_of_them() -> None:
    """Dense → Relu → BN → 5 Gemm heads (two share one weight): no split, every head folded."""
    shared = _weights([6, 3], 7)
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="dense"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("BatchNormalization", ["r", *BN], ["n"], name="bn"),
    ]
    inits: dict[str, np.ndarray] = {"W": _weights([5, 6]), **_bn_inits(6)}
    for head in range(5):
        weight = "shared" if head < 2 else f"W{head}"
        nodes.append(helper.make_node("Gemm", ["n", weight, f"b{head}"], [f"o{head}"]))
        inits[f"b{head}"] = _weights([3], 10 + head)
        if head >= 2:
            inits[weight] = _weights([6, 3], 20 + head)
    inits["shared"] = shared
    model = _model(nodes, inits, [2, 5], outputs=tuple(f"o{h}" for h in range(5)))
    result = fold(model)
    assert [(f.pattern, f.into.count(",")) for f in result.report.folds] == [("bn-consumers", 4)]
    assert op_types(result.model) == ["Gemm", "Relu", *["Gemm"] * 5]
    assert_equivalent(model, result.model)


def test_consumers_behind_a_shared_flatten() -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Flatten", ["n"], ["f"]),
        helper.make_node("Gemm", ["f", "A"], ["a"]),
        helper.make_node("MatMul", ["f", "B"], ["b"]),
        helper.make_node("Conv", ["n", "C"], ["c"]),
    ]
    inits = {
        **_bn_inits(3),
        "A": _weights([12, 2], 2),
        "B": _weights([12, 4], 3),
        "C": _weights([5, 3, 1, 1], 4),
    }
    _folded(_model(nodes, inits, [1, 3, 2, 2], outputs=("a", "b", "c")))


def test_split_on_the_channel_axis_gives_each_layer_its_slice() -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Split", ["n", "sizes"], ["p", "q"], axis=1),
        helper.make_node("Conv", ["p", "P"], ["a"]),
        helper.make_node("Conv", ["q", "Q"], ["b"], group=3),
    ]
    inits = {
        **_bn_inits(5),
        "sizes": np.array([2, 3], np.int64),
        "P": _weights([4, 2, 1, 1], 2),
        "Q": _weights([3, 1, 3, 3], 3),
    }
    _folded(_model(nodes, inits, [1, 5, 4, 4], outputs=("a", "b")))


def test_split_on_another_axis_gives_each_layer_the_whole_affine() -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Split", ["n"], ["p", "q"], axis=2, num_outputs=2),
        helper.make_node("Conv", ["p", "P"], ["a"]),
        helper.make_node("Conv", ["q", "Q"], ["b"]),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 4, 4])],
        [tensor("a", None), tensor("b", None)],
        [*_bn(3), _weights([2, 3, 1, 1], 2), _weights([2, 3, 1, 1], 3)],
        names=[*BN, "P", "Q"],
        opset=18,
    )
    _folded(model)


# ---- Slice, padding, W @ x ------------------------------------------------------------


def _slice(name: str, out: str, axis: int) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Constant", [], [f"{out}_s"], value_ints=[0]),
        helper.make_node("Constant", [], [f"{out}_e"], value_ints=[-1]),
        helper.make_node("Constant", [], [f"{out}_a"], value_ints=[axis]),
        helper.make_node("Slice", [name, f"{out}_s", f"{out}_e", f"{out}_a"], [out]),
    ]


def test_causal_trim_slice_between_conv_and_bn() -> None:
    """Conv1d → Slice(time) → BN (torch's temporal conv nets)."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[2, 2]),
        *_slice("y", "t", 2),
        helper.make_node("BatchNormalization", ["t", *BN], ["z"], name="bn"),
    ]
    inits = {"W": _weights([4, 3, 3]), **_bn_inits(4)}
    folded = _folded(_model(nodes, inits, [1, 3, 9]))
    assert "Slice" in op_types(folded)


def test_bn_then_slice_then_conv() -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        *_slice("n", "t", -1),
        helper.make_node("Conv", ["t", "W"], ["z"], name="conv"),
    ]
    inits = {**_bn_inits(3), "W": _weights([2, 3, 3, 3])}
    _folded(_model(nodes, inits, [1, 3, 6, 6]))


@pytest.mark.parametrize(
    ("attrs", "kernel", "size"),
    [
        ({"auto_pad": "SAME_UPPER"}, 1, 6),
        ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 1, 7),
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 2, 6),  # ⌈6/2⌉·2 − 6 + 1 … = 0
        ({"auto_pad": "VALID"}, 3, 6),
        ({"pads": [0, 0, 0, 0]}, 3, 6),
    ],
)
def test_auto_pad_that_pads_nothing_takes_the_shift(
    attrs: dict[str, object], kernel: int, size: int
) -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Conv", ["n", "W"], ["z"], name="conv", **attrs),  # type: ignore[arg-type]
    ]
    inits = {**_bn_inits(3), "W": _weights([2, 3, kernel, kernel])}
    _folded(_model(nodes, inits, [1, 3, size, size]))


@pytest.mark.parametrize("size", [6, 7])
def test_same_padding_that_pads_is_still_refused(size: int) -> None:
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Conv", ["n", "W"], ["z"], name="conv", auto_pad="SAME_UPPER"),
    ]
    inits = {**_bn_inits(3), "W": _weights([2, 3, 3, 3])}
    skipped = fold(_model(nodes, inits, [1, 3, size, size])).report.skipped
    assert [s.reason for s in skipped] == ["padded-consumer"]


def test_bn_into_a_constant_left_matmul() -> None:
    """BN(x[B, K, N]) over K, then W[M, K] @ ·: W's columns are scaled, W·t added per row."""
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("MatMul", ["W", "n"], ["z"], name="matmul"),
    ]
    inits = {**_bn_inits(4), "W": _weights([3, 4])}
    folded = _folded(_model(nodes, inits, [2, 4, 5]))
    assert op_types(folded) == ["MatMul", "Add"]


# ---- an affine after a BN merges into the BN ------------------------------------------


@pytest.mark.parametrize("second", ["chain", "bn"])
def test_an_affine_after_a_bn_merges_into_it(second: str) -> None:
    """Caffe's BN → Scale (Mul, Add) and BN → BN: γ' = s·γ, β' = s·β + t (s < 0 too)."""
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["g"]),
        helper.make_node("BatchNormalization", ["g", *BN], ["n"], name="bn"),
    ]
    inits = _bn_inits(4)
    if second == "chain":
        scale = rng.uniform(0.5, 2, [4, 1, 1]) * np.array([1, -1, 1, -1]).reshape(4, 1, 1)
        nodes += [
            helper.make_node("Mul", ["n", "s"], ["m"], name="scale_mul"),
            helper.make_node("Add", ["m", "t"], ["z"], name="scale_add"),
        ]
        inits |= {"s": scale.astype(np.float32), "t": _weights([4, 1, 1], 8)}
    else:
        names = [f"{p}2" for p in BN]
        nodes.append(helper.make_node("BatchNormalization", ["n", *names], ["z"], name="bn2"))
        inits |= dict(zip(names, _bn(4, seed=3), strict=True))
    model = _model(nodes, inits, [1, 4, 3, 3])
    result = fold(model)
    assert [(f.pattern, f.into) for f in result.report.folds] == [("bn-affine", "bn")]
    assert op_types(result.model) == ["Sigmoid", "BatchNormalization"]
    assert [s.bn for s in result.report.skipped] == ["bn"]
    assert_equivalent(model, result.model)


# ---- Concat → BN: each producer takes its slice ---------------------------------------


def test_concat_of_two_convs_then_bn_folds_each_slice() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "A"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "B", "bb"], ["b"], name="conv_b"),
        helper.make_node("ConvTranspose", ["x", "T"], ["t"], name="deconv", group=3),
        helper.make_node("Cast", ["t"], ["tc"], to=FLOAT),
        helper.make_node("Add", ["tc", "tb"], ["ta"]),
        helper.make_node("Concat", ["a", "b", "ta"], ["c"], axis=1),
        helper.make_node("BatchNormalization", ["c", *BN], ["z"], name="bn"),
    ]
    inits = {
        "A": _weights([2, 3, 3, 3], 2),
        "B": _weights([3, 3, 1, 1], 3),
        "bb": _weights([3], 4),
        "T": _weights([3, 2, 1, 1], 5),
        "tb": _weights([6, 1, 1], 6),
        **_bn_inits(11),
    }
    model = _model(nodes, inits, [1, 3, 5, 5])
    result = fold(model)
    assert [(f.pattern, f.into) for f in result.report.folds][-1:] == [
        ("concat-bn", "conv_a, conv_b, deconv")
    ], (result.report.folds, result.report.skipped)
    assert "BatchNormalization" not in op_types(result.model)
    assert_equivalent(model, result.model)


def test_concat_with_a_part_nothing_folds_into_keeps_the_bn() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "A"], ["a"], name="conv_a"),
        helper.make_node("Concat", ["a", "x"], ["c"], axis=1),
        helper.make_node("BatchNormalization", ["c", *BN], ["z"], name="bn"),
    ]
    model = _model(nodes, {"A": _weights([2, 3, 1, 1]), **_bn_inits(5)}, [1, 3, 4, 4])
    result = fold(model)
    assert [s.reason for s in result.report.skipped] == ["no-linear-producer"]
    assert result.model.SerializeToString() == model.SerializeToString()


# ---- tiled channel mappings (NHWC, then Flatten/Reshape) ------------------------------


@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_bn_then_nhwc_transpose_then_flatten_into_matmul(flatten: str) -> None:
    """Feature f of the flattened NHWC tensor is channel f mod C: (s, t) tile, not repeat."""
    shape_const = helper.make_node("Constant", [], ["target"], value_ints=[1, -1])
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("Transpose", ["n"], ["t"], perm=[0, 2, 3, 1]),
        *(
            [helper.make_node("Flatten", ["t"], ["f"], axis=1)]
            if flatten == "Flatten"
            else [shape_const, helper.make_node("Reshape", ["t", "target"], ["f"])]
        ),
        helper.make_node("MatMul", ["f", "W"], ["z"], name="matmul"),
    ]
    inits = {**_bn_inits(3), "W": _weights([2 * 4 * 3, 5])}
    _folded(_model(nodes, inits, [1, 3, 2, 4]))


def test_constant_left_matmul_then_bn_on_its_rows() -> None:
    """W[M, K] @ x[B, K, N] → BN over M: W's rows scaled, s·0 + t added per row."""
    nodes = [
        helper.make_node("MatMul", ["W", "x"], ["y"], name="matmul"),
        helper.make_node("BatchNormalization", ["y", *BN], ["z"], name="bn"),
    ]
    folded = _folded(_model(nodes, {"W": _weights([5, 4]), **_bn_inits(5)}, [2, 4, 3]))
    assert op_types(folded) == ["MatMul", "Add"]


def test_float16_bns_do_not_merge() -> None:
    """Each merge rounds γ', β' to float16 again: not done (the BNs fold, or stay, alone)."""
    params = [p.astype(np.float16) for p in _bn(4)] + [p.astype(np.float16) for p in _bn(4, 3)]
    names = [*BN, *(f"{p}2" for p in BN)]
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["g"]),
        helper.make_node("BatchNormalization", ["g", *BN], ["n"], name="bn"),
        helper.make_node("BatchNormalization", ["n", *names[4:]], ["z"], name="bn2"),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 4, 3, 3], TensorProto.FLOAT16)],
        [tensor("z", None, TensorProto.FLOAT16)],
        params,
        names=names,
    )
    result = fold(model)
    assert not result.report.folds
    assert sorted(s.bn for s in result.report.skipped) == ["bn", "bn2"]


def test_into_names_every_consumer_as_it_is_after_the_fold() -> None:
    """Unnamed MatMuls are labelled by their output, which the new bias Add takes over."""
    nodes = [
        helper.make_node("BatchNormalization", ["x", *BN], ["n"], name="bn"),
        helper.make_node("MatMul", ["n", "A"], ["a"]),
        helper.make_node("MatMul", ["n", "B"], ["b"]),
    ]
    inits = {**_bn_inits(4), "A": _weights([4, 3], 2), "B": _weights([4, 2], 3)}
    model = _model(nodes, inits, [2, 4], outputs=("a", "b"))
    result = fold(model)
    labels = {f"<{n.op_type}:{n.output[0]}>" for n in result.model.graph.node if not n.name}
    into = result.report.folds[0].into.split(", ")
    assert len(into) == 2 and set(into) <= labels, (into, labels)
    assert_equivalent(model, result.model)

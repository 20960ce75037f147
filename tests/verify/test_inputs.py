"""Input specs, generation, gather-index ranges, option parsing and .npz loading."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from bnfold.commands.parsing import parse_dim_options, parse_range_options, parse_shape_options
from bnfold.errors import UsageError
from bnfold.runtime.inputs import generate_inputs, input_specs, load_inputs, save_inputs
from tests.builders.verify_models import make_model, tensor

ALL_TYPES = {
    "f16": (TensorProto.FLOAT16, np.float16),
    "f32": (TensorProto.FLOAT, np.float32),
    "f64": (TensorProto.DOUBLE, np.float64),
    "bf16": (TensorProto.BFLOAT16, ml_dtypes.bfloat16),
    "i8": (TensorProto.INT8, np.int8),
    "i16": (TensorProto.INT16, np.int16),
    "i32": (TensorProto.INT32, np.int32),
    "i64": (TensorProto.INT64, np.int64),
    "u8": (TensorProto.UINT8, np.uint8),
    "u16": (TensorProto.UINT16, np.uint16),
    "u32": (TensorProto.UINT32, np.uint32),
    "u64": (TensorProto.UINT64, np.uint64),
    "b": (TensorProto.BOOL, np.bool_),
}


def identity_model(inputs: list, initializers: dict | None = None):
    """One Identity per input, so every input is a used graph input."""
    outputs = [tensor(f"out_{vi.name}", vi.type.tensor_type.elem_type, None) for vi in inputs]
    nodes = [helper.make_node("Identity", [vi.name], [f"out_{vi.name}"]) for vi in inputs]
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    for name, value in (initializers or {}).items():
        from onnx import numpy_helper

        model.graph.initializer.append(numpy_helper.from_array(value, name))
    return model


def test_every_dtype_gets_data_of_its_type_and_never_all_zero() -> None:
    inputs = [tensor(name, elem, [1]) for name, (elem, _) in ALL_TYPES.items()]
    specs, _ = input_specs(identity_model(inputs))
    for seed in range(20):  # size-1 tensors: the most likely to come out all zero
        data = generate_inputs(specs, seed)
        for name, (_, np_type) in ALL_TYPES.items():
            assert data[name].dtype == np.dtype(np_type), name
            assert data[name].shape == (1,)
            assert np.any(data[name].astype(np.float64) != 0), (name, seed)


def test_floats_are_standard_normal_and_integers_small() -> None:
    inputs = [tensor("f", TensorProto.FLOAT, [10000]), tensor("i", TensorProto.INT64, [10000])]
    specs, notes = input_specs(identity_model(inputs))
    data = generate_inputs(specs, 0)
    assert abs(float(data["f"].mean())) < 0.05 and abs(float(data["f"].std()) - 1) < 0.05
    assert data["i"].min() == 0 and data["i"].max() == 9 and len(np.unique(data["i"])) == 10
    assert any("[0, 10)" in note for note in notes)


def test_initializers_with_defaults_are_not_fed() -> None:
    inputs = [tensor("x", TensorProto.FLOAT, [2]), tensor("w", TensorProto.FLOAT, [2])]
    model = identity_model(inputs, {"w": np.ones(2, np.float32)})
    specs, _ = input_specs(model)
    assert [s.name for s in specs] == ["x"]


def test_symbolic_and_unknown_dims() -> None:
    """16 channels is not an image: with no spatial op, the free dims keep size 1."""
    inputs = [
        tensor("x", TensorProto.FLOAT, ["batch", 16, "H", None]),
        tensor("m", TensorProto.FLOAT, ["batch", 7]),
    ]
    model = identity_model(inputs)
    specs, notes = input_specs(model)
    assert [s.shape for s in specs] == [(1, 16, 1, 1), (1, 7)]
    assert "input 'm' 1x7: batch set to 1 (the batch)" in " ".join(notes)
    assert "batch set to 1 (the batch); H, x[3] set to 1 (no spatial op" in " ".join(notes)

    specs, notes = input_specs(
        model, dims={"batch": 4, "H": 5}, shapes={"x": (4, 16, 5, 6)}, default_dim=2
    )
    assert [s.shape for s in specs] == [(4, 16, 5, 6), (4, 7)]
    assert not any("set to" in n for n in notes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shapes": {"nope": (1,)}}, "names no graph input"),
        ({"dims": {"nope": 1}}, "no symbolic dimension"),
        ({"shapes": {"x": (1, 4, 1, 1)}}, "model fixes it at 3"),
        ({"shapes": {"x": (1, 3)}}, "rank 2"),
        ({"ranges": {"x": (1.0, 0.0)}}, "empty value range"),
    ],
)
def test_option_errors_name_the_problem(kwargs: dict, message: str) -> None:
    model = identity_model([tensor("x", TensorProto.FLOAT, ["batch", 3, "H", None])])
    with pytest.raises(UsageError, match=message):
        input_specs(model, **kwargs)


def test_integer_range_must_fit_the_dtype() -> None:
    model = identity_model([tensor("u", TensorProto.UINT8, [4])])
    with pytest.raises(UsageError, match="does not fit"):
        input_specs(model, ranges={"u": (-5.0, 5.0)})


def embedding_model(vocab: int, through_cast: bool = False):
    """ids (int64, [batch, 5]) -> [Cast to int32] -> Gather(table[vocab, 8]) -> ReduceSum."""
    table = np.random.default_rng(0).standard_normal((vocab, 8)).astype(np.float32)
    nodes = []
    ids = "ids"
    if through_cast:
        nodes.append(helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32))
        ids = "ids32"
    nodes += [
        helper.make_node("Gather", ["table", ids], ["emb"], axis=0, name="embedding"),
        helper.make_node("ReduceSum", ["emb"], ["y"], keepdims=0),
    ]
    return make_model(
        nodes,
        [tensor("ids", TensorProto.INT64, ["batch", 5])],
        [tensor("y", TensorProto.FLOAT, [])],
        {"table": table},
    )


@pytest.mark.parametrize("through_cast", [False, True])
def test_gather_indices_are_valid_and_non_trivial(through_cast: bool) -> None:
    vocab = 7  # below the default integer range [0, 10): defaults alone would index out of bounds
    specs, notes = input_specs(embedding_model(vocab, through_cast), dims={"batch": 40})
    (spec,) = specs
    assert (spec.low, spec.high) == (0, vocab)
    data = generate_inputs(specs, 0)["ids"]
    assert data.min() >= 0 and data.max() < vocab
    assert len(np.unique(data)) == vocab  # 200 draws cover every row: not trivial
    assert any("embedding" in n and "[0, 7)" in n for n in notes)


def test_gather_axis_size_from_constant_node_and_other_axis() -> None:
    table = np.zeros((3, 6), np.float32)
    constant = helper.make_node(
        "Constant",
        [],
        ["table"],
        value=helper.make_tensor("t", TensorProto.FLOAT, table.shape, table.ravel()),
    )
    gather = helper.make_node("Gather", ["table", "idx"], ["y"], axis=1)
    model = make_model(
        [constant, gather],
        [tensor("idx", TensorProto.INT32, [4])],
        [tensor("y", TensorProto.FLOAT, [3, 4])],
    )
    (spec,), _ = input_specs(model)
    assert (spec.low, spec.high) == (0, 6)


def test_user_range_beats_inferred_gather_range() -> None:
    (spec,), _ = input_specs(embedding_model(50), ranges={"ids": (10, 20)})
    assert (spec.low, spec.high) == (10, 20)
    data = generate_inputs([spec], 3)["ids"]
    assert data.min() >= 10 and data.max() < 20


def test_generation_is_deterministic_and_per_input() -> None:
    a = tensor("a", TensorProto.FLOAT, [5])
    b = tensor("b", TensorProto.FLOAT, [5])
    specs_ab, _ = input_specs(identity_model([a, b]))
    specs_b, _ = input_specs(identity_model([b]))
    first, again, other_seed = (
        generate_inputs(specs_ab, 7),
        generate_inputs(specs_ab, 7),
        generate_inputs(specs_ab, 8),
    )
    np.testing.assert_array_equal(first["a"], again["a"])
    assert not np.array_equal(first["a"], other_seed["a"])
    assert not np.array_equal(first["a"], first["b"])
    np.testing.assert_array_equal(
        first["b"], generate_inputs(specs_b, 7)["b"]
    )  # adding 'a' changed nothing


def test_option_parsers() -> None:
    assert parse_shape_options(["x=1x3x224x224", "y:0=2,3", "s=scalar"]) == {
        "x": (1, 3, 224, 224),
        "y:0": (2, 3),
        "s": (),
    }
    assert parse_dim_options(["batch=8", "seq=0"]) == {"batch": 8, "seq": 0}
    assert parse_range_options(["ids=0:30522", "x=-1.5:2"]) == {
        "ids": (0.0, 30522.0),
        "x": (-1.5, 2.0),
    }
    assert (
        parse_shape_options(None) == {}
        and parse_dim_options(()) == {}
        and parse_range_options([]) == {}
    )


@pytest.mark.parametrize(
    ("parser", "value"),
    [
        (parse_shape_options, "x"),
        (parse_shape_options, "x=1xax3"),
        (parse_shape_options, "=1x2"),
        (parse_dim_options, "batch=-1"),
        (parse_dim_options, "batch"),
        (parse_range_options, "ids=5"),
        (parse_range_options, "ids=5:1"),
        (parse_range_options, "ids=a:b"),
        (parse_range_options, "ids=0:inf"),
    ],
)
def test_option_parsers_reject_bad_syntax(parser, value: str) -> None:
    with pytest.raises(UsageError):
        parser([value])


def test_duplicate_option_is_an_error() -> None:
    with pytest.raises(UsageError, match="twice"):
        parse_dim_options(["batch=1", "batch=2"])


def test_npz_round_trip_including_bfloat16(tmp_path: Path) -> None:
    inputs = [
        tensor("x", TensorProto.FLOAT, ["n", 2]),
        tensor("h", TensorProto.BFLOAT16, [3]),
        tensor("i", TensorProto.INT64, [2]),
    ]
    specs, _ = input_specs(identity_model(inputs), dims={"n": 3})
    data = generate_inputs(specs, 1)
    path = tmp_path / "set.npz"
    save_inputs(path, data)
    loaded = load_inputs(path, specs)
    assert list(loaded) == ["x", "h", "i"]
    for name in data:
        assert loaded[name].dtype == data[name].dtype
        np.testing.assert_array_equal(
            loaded[name].astype(np.float64), data[name].astype(np.float64)
        )


def test_npz_may_use_other_sizes_for_symbolic_dims(tmp_path: Path) -> None:
    specs, _ = input_specs(identity_model([tensor("x", TensorProto.FLOAT, ["n", 2])]))
    path = tmp_path / "big_batch.npz"
    np.savez(path, x=np.zeros((9, 2), np.float32))
    assert load_inputs(path, specs)["x"].shape == (9, 2)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({}, "missing x"),
        ({"x": np.zeros((1, 2), np.float32), "extra": np.zeros(1)}, "unknown extra"),
        ({"x": np.zeros((1, 2), np.float64)}, "is float64, the model wants float32"),
        ({"x": np.zeros((1, 3), np.float32)}, "has shape 1x3"),
    ],
)
def test_npz_mismatch_is_a_usage_error(tmp_path: Path, arrays: dict, message: str) -> None:
    specs, _ = input_specs(identity_model([tensor("x", TensorProto.FLOAT, ["n", 2])]))
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UsageError, match=message):
        load_inputs(path, specs)


def test_unreadable_or_missing_npz(tmp_path: Path) -> None:
    specs, _ = input_specs(identity_model([tensor("x", TensorProto.FLOAT, [2])]))
    with pytest.raises(UsageError, match="not found"):
        load_inputs(tmp_path / "nope.npz", specs)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="cannot read"):
        load_inputs(junk, specs)


def test_non_tensor_input_is_refused() -> None:
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["s"], ["n"])],
        "g",
        [seq],
        [tensor("n", TensorProto.INT64, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(UsageError, match="not a tensor"):
        input_specs(model)

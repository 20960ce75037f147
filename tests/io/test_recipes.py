"""Folded weights as recipes: the same bytes as the in-memory fold, evaluated in chunks.

Every model here is folded twice: from its file (large weights become recipes, computed while
the output is written) and from an in-memory copy (every weight computed in memory, the
reference). The written files must be byte-identical, and so must ``result.model``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import bnfold
from bnfold.engine import scaled_weights
from bnfold.engine.foldmath import round_to
from bnfold.storage import filebytes, lazyio, recipes, streamwrite
from bnfold.storage.load import load_model
from tests.builders.graphs import assert_equivalent, make_model, random_bn_params, tensor

BN_NAMES = ["gamma", "beta", "mean", "var"]
BF16 = helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16).type


@pytest.fixture(autouse=True)
def small_recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes for every lazy weight (>= 4 KiB) and chunks of a few slices, so that small
    models exercise many chunks and the threads that compute them ahead."""
    monkeypatch.setattr(recipes, "MIN_RECIPE_BYTES", 0)
    monkeypatch.setattr(recipes, "CHUNK_BYTES", 1500)
    monkeypatch.setattr(filebytes, "MAP_THRESHOLD_BYTES", 0)  # map every source range


def _bn(prefix: str, rng: np.random.Generator, channels: int, dtype: type, x: str, y: str):  # type: ignore[no-untyped-def]
    params = random_bn_params(rng, channels, dtype)
    names = [f"{prefix}_{n}" for n in BN_NAMES]
    node = helper.make_node("BatchNormalization", [x, *names], [y], name=prefix, epsilon=1e-3)
    return node, params, names


def _model(kind: str, dtype: type, seed: int) -> onnx.ModelProto:
    """One layer of ``kind`` with BN(s) around it; weights of 4-40 KiB (lazy when read)."""
    rng = np.random.default_rng(seed)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    c = int(rng.choice([24, 32]))
    inits: list[np.ndarray] = []
    names: list[str] = []
    nodes: list[onnx.NodeProto] = []

    def add(name: str, value: np.ndarray) -> str:
        inits.append(value.astype(dtype))
        names.append(name)
        return name

    def bn(prefix: str, x: str, y: str, channels: int) -> None:
        node, params, param_names = _bn(prefix, rng, channels, dtype, x, y)
        nodes.append(node)
        for n, v in zip(param_names, params, strict=True):
            add(n, v)

    w = rng.standard_normal
    if kind in ("conv", "conv-group", "convtranspose"):
        group = 2 if kind != "conv" else 1
        op = "ConvTranspose" if kind == "convtranspose" else "Conv"
        shape = [c, c // group, 3, 3]
        inputs = ["x", add("W", w(shape))]
        if rng.random() < 0.5:
            inputs.append(add("b", w(c)))
        nodes.append(helper.make_node(op, inputs, ["y"], name="layer", group=group, pads=[1] * 4))
        bn("bn", "y", "z", c)
        x_shape = ["N", c, 5, 5]
    elif kind in ("gemm", "gemm-transB"):
        trans_b = int(kind == "gemm-transB")
        shape = [c * 3, c * 2][:: -1 if trans_b else 1]
        nodes.append(
            helper.make_node(
                "Gemm", ["x", add("W", w(shape)), add("C", w(c * 2))], ["y"], transB=trans_b
            )
        )
        bn("bn", "y", "z", c * 2)
        x_shape = ["N", c * 3]
    elif kind == "matmul":
        nodes.append(helper.make_node("MatMul", ["x", add("W", w([c * 3, c * 2]))], ["y"]))
        bn("bn", "y", "z", c * 2)
        x_shape = ["N", c * 3]
    elif kind == "bn-matmul":  # the BN reads a graph input: it folds into the MatMul after it
        bn("bn", "x", "y", c * 3)
        nodes.append(helper.make_node("MatMul", ["y", add("W", w([c * 3, c * 2]))], ["z"]))
        x_shape = ["N", c * 3]
    elif kind == "twice":  # BN -> Conv (no pads) -> BN: two folds into one weight, two rounds
        bn("bn0", "x", "y0", c)
        nodes.append(helper.make_node("Conv", ["y0", add("W", w([c, c, 3, 3]))], ["y1"]))
        bn("bn1", "y1", "z", c)
        x_shape = ["N", c, 5, 5]
    else:
        raise AssertionError(kind)
    return make_model(
        nodes,
        [tensor("x", x_shape, elem)],
        [tensor("z", None, elem)],
        inits,
        names=names,
        opset=22 if elem == TensorProto.BFLOAT16 else 17,  # Conv takes bfloat16 from opset 22
    )


KINDS = [
    "conv",
    "conv-group",
    "convtranspose",
    "gemm",
    "gemm-transB",
    "matmul",
    "bn-matmul",
    "twice",
]


def _save_both(
    model: onnx.ModelProto, tmp_path: Path, external: bool
) -> tuple[bnfold.OptimizeResult, bnfold.OptimizeResult, list[bytes], list[bytes]]:
    source = tmp_path / "m.onnx"
    onnx.save(model, source, save_as_external_data=external, size_threshold=1024)
    lazy = bnfold.optimize(source)
    memory = bnfold.optimize(onnx.load(source))
    written = []
    for result, folder in ((lazy, "lazy"), (memory, "memory")):
        # The same file name in two folders: the model file names its data file.
        (tmp_path / folder).mkdir(exist_ok=True)
        files = result.save(tmp_path / folder / "out.onnx", external_data=external)
        written.append([path.read_bytes() for path in files])
    return lazy, memory, written[0], written[1]


@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
def test_recipe_path_writes_the_bytes_of_the_in_memory_path(
    kind: str, dtype: type, external: bool, tmp_path: Path
) -> None:
    for seed in range(2):
        model = _model(kind, dtype, seed)
        lazy, memory, lazy_files, memory_files = _save_both(model, tmp_path, external)
        recipe_tensors = [t.name for t in lazy.folded.graph.initializer if recipes.is_recipe(t)]
        folded_weight = any(fold.dtype == str(np.dtype(dtype)) for fold in lazy.report.folds)
        # The recipe path was taken wherever a weight was folded (else this test proves nothing).
        assert bool(recipe_tensors) == folded_weight
        assert lazy.report.to_dict()["folds"] == memory.report.to_dict()["folds"]
        assert lazy.report.to_dict()["skipped"] == memory.report.to_dict()["skipped"]
        assert lazy_files == memory_files
        assert lazy.model.SerializeToString() == _plain(memory.model).SerializeToString()
        if kind == "twice" and folded_weight:
            (weight,) = recipe_tensors
            stages = [e for e in lazy.folded.graph.initializer if e.name == weight]
            recipe = recipes.recipe_of(stages[0], tmp_path)
            # one stage per fold into the weight (float16 refuses the consumer fold)
            assert recipe is not None and len(recipe.stages) == len(lazy.report.folds)


def _plain(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the explicit ``data_location = DEFAULT`` that onnx.load leaves on
    tensors it read from external data (two bytes each, not a value)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for item in copy.graph.initializer:
        if item.data_location == TensorProto.DEFAULT:
            item.ClearField("data_location")
    return copy


def test_folded_recipes_compute_the_unfolded_function(tmp_path: Path) -> None:
    model = _model("conv", np.float32, 0)
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    result = bnfold.optimize(source, output=tmp_path / "out.onnx")
    assert any(recipes.is_recipe(t) for t in result.folded.graph.initializer)
    assert_equivalent(model, onnx.load(tmp_path / "out.onnx"))
    assert_equivalent(model, result.model)


def _write_source(path: Path, array: np.ndarray, offset: int) -> onnx.TensorProto:
    path.write_bytes(b"\x07" * offset + array.tobytes() + b"\x09" * 13)
    proto = onnx.TensorProto(
        name="W", dims=array.shape, data_type=helper.np_dtype_to_tensor_dtype(array.dtype)
    )
    proto.data_location = TensorProto.EXTERNAL
    for key, value in (
        ("location", path.name),
        ("offset", str(offset)),
        ("length", str(array.nbytes)),
    ):
        entry = proto.external_data.add()
        entry.key, entry.value = key, value
    return proto


@pytest.mark.parametrize("dtype", ["FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE"])
@pytest.mark.parametrize("chunk", [1, 700, 10**9])
def test_chunked_stages_equal_rounding_after_each_whole_product(
    dtype: str, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipes, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(3)
    np_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(getattr(TensorProto, dtype)))
    weight = (rng.standard_normal((17, 6, 3)) * 4).astype(np_dtype)
    proto = _write_source(tmp_path / "w.bin", weight, offset=37)
    first = rng.uniform(-3, 3, (17, 1, 1))
    second = rng.uniform(-3, 3, (1, 6, 1))
    recipe = recipes.source_recipe(proto, tmp_path)
    assert recipe is not None
    recipe = recipe.then(first).then(second)
    expected = round_to(
        round_to(weight.astype(np.float64) * first, np_dtype).value.astype(np.float64) * second,
        np_dtype,
    ).value
    assert recipe.evaluate().tobytes() == expected.tobytes()
    stored = onnx.TensorProto(name="W")
    recipes.store_recipe(stored, recipe)
    assert lazyio.tensor_array(stored, tmp_path).tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="recipe"):
        lazyio.external_source(stored, tmp_path)  # the unscaled source bytes are not its value


def test_a_recipe_copied_with_its_model_still_evaluates(tmp_path: Path) -> None:
    model = _model("conv", np.float32, 1)
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    result = bnfold.optimize(source)
    copy = onnx.ModelProto()
    copy.CopyFrom(result.folded)
    full = lazyio.load_all(copy, tmp_path)
    assert full.SerializeToString() == result.model.SerializeToString()
    assert not any(t.data_location == TensorProto.EXTERNAL for t in full.graph.initializer)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rounding_error_and_overflow_measured_in_chunks_equal_round_to(
    dtype: type, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    weight = (rng.standard_normal((40, 8, 3, 3)) * 3).astype(dtype)
    weight[3, 0, 0, 0] = 1e-7 if dtype is np.float16 else 1e30
    scale = rng.uniform(0.1, 2.0, 40)
    scale[7] = 1e4 if dtype is np.float16 else 1e9  # overflows row 7 only
    model = make_model(
        [helper.make_node("Conv", ["x", "W"], ["y"])],
        [tensor("x", ["N", 8, 5, 5], helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))],
        [tensor("y", None, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))],
        [weight],
        names=["W"],
    )
    onnx.save(model, tmp_path / "m.onnx")
    view = _main_view(load_model(tmp_path / "m.onnx"))
    factors = scale.reshape(40, 1, 1, 1)
    for factor_set in (factors, np.where(factors > 100, 1.0, factors)):
        got = scaled_weights.scaled_constant(view, "W", weight, factor_set)
        want = round_to(weight.astype(np.float64) * factor_set, np.dtype(dtype))
        assert got is not None and isinstance(got.value, recipes.ScaledTensor)
        assert (got.max_abs_error, got.max_rel_error) == (want.max_abs_error, want.max_rel_error)
        assert got.value.all_finite() == bool(np.all(np.isfinite(want.value)))
        assert got.value.evaluate().tobytes() == want.value.tobytes()


def test_a_float32_product_over_the_bound_is_checked_element_by_element(tmp_path: Path) -> None:
    """max|W|·max|s| overflows float32, but no single product does: the fold stays finite."""
    weight = np.ones((4, 300), np.float32)
    weight[0, 0] = 1e30
    factors = np.array([1.0, 1e20, 1e20, 1e20]).reshape(4, 1)
    model = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [tensor("x", ["N", 4])],
        [tensor("y", None)],
        [weight.T.copy()],
        names=["W"],
    )
    onnx.save(model, tmp_path / "m.onnx")
    view = _main_view(load_model(tmp_path / "m.onnx"))
    got = scaled_weights.scaled_constant(view, "W", weight.T.copy(), factors.T)
    assert got is not None and got.value.known_finite is True
    over = scaled_weights.scaled_constant(view, "W", weight.T.copy(), factors.T * 1e10)
    assert over is not None and over.value.known_finite is False


def test_small_and_in_memory_weights_are_computed_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipes, "MIN_RECIPE_BYTES", 1 << 20)
    model = _model("conv", np.float32, 0)
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    assert not any(recipes.is_recipe(t) for t in bnfold.optimize(source).folded.graph.initializer)
    monkeypatch.setattr(recipes, "MIN_RECIPE_BYTES", 0)
    in_memory = bnfold.optimize(model).folded
    assert not any(t.data_location == TensorProto.EXTERNAL for t in in_memory.graph.initializer)


def _main_view(loaded):  # type: ignore[no-untyped-def]
    from bnfold.engine.constants import ConstantCache
    from bnfold.engine.graph import GraphView

    return GraphView(
        loaded.model.graph,
        ir_version=loaded.model.ir_version,
        opset=17,
        cache=ConstantCache(base_dir=loaded.base_dir),
        shapes=dict,
        types=dict,
    )


@pytest.mark.parametrize("threshold", [0, 1 << 30], ids=["mapped", "read"])
def test_a_source_range_past_the_end_of_its_file_is_an_error(
    threshold: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filebytes, "MAP_THRESHOLD_BYTES", threshold)
    path = tmp_path / "w.bin"
    path.write_bytes(bytes(range(200)) * 50)  # 10000 bytes
    got = filebytes.read_array(path, 5001, 4000, np.dtype("<f4"))
    assert got.tobytes() == path.read_bytes()[5001:9001]
    with pytest.raises(OSError, match="ended"):
        filebytes.read_array(path, 8001, 4000, np.dtype("<f4"))


def test_large_tensors_stream_into_a_buffer_without_a_file_descriptor(tmp_path: Path) -> None:
    """The writeback hint after each large tensor needs a real file; a buffer skips it."""
    weight = np.random.default_rng(0).standard_normal((300, 1000)).astype(np.float32)  # 1.2 MB
    model = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [tensor("x", ["N", 300])],
        [tensor("y", None)],
        [weight],
        names=["W"],
    )
    onnx.save(model, tmp_path / "m.onnx")
    lazy = lazyio.read_lazy(tmp_path / "m.onnx")
    buffer = io.BytesIO()
    streamwrite.write_model(lazy, buffer, tmp_path)
    assert buffer.getvalue() == model.SerializeToString()


@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
def test_in_place_reads_the_recipes_sources_before_replacing_them(
    external: bool, tmp_path: Path
) -> None:
    model = _model("conv", np.float32, 0)
    source = tmp_path / "m.onnx"
    onnx.save(model, source, save_as_external_data=external, size_threshold=1024)
    (tmp_path / "ref").mkdir()
    reference = bnfold.optimize(onnx.load(source))
    reference.save(tmp_path / "ref" / "m.onnx", external_data=external)
    result = bnfold.optimize(source, in_place=True)
    assert len(result.report.folds) == 1
    expected = lazyio.load_all(
        onnx.load(tmp_path / "ref" / "m.onnx", load_external_data=False), tmp_path / "ref"
    )
    got = lazyio.load_all(onnx.load(source, load_external_data=False), tmp_path)
    assert got.SerializeToString() == expected.SerializeToString()


def test_a_forked_child_evaluates_recipes_with_its_own_threads(tmp_path: Path) -> None:
    import multiprocessing

    model = _model("conv", np.float32, 1)
    onnx.save(model, tmp_path / "m.onnx")
    result = bnfold.optimize(tmp_path / "m.onnx")
    expected = result.model.SerializeToString()  # the parent's pool now has threads
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        # Without a fresh pool in the child, its tasks would wait forever for dead threads.
        got = pool.apply_async(_materialize, (tmp_path / "m.onnx",)).get(timeout=120)
    assert got == expected


def _materialize(path: Path) -> bytes:
    return bnfold.optimize(path).model.SerializeToString()

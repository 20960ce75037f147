"""The storage edges of issue 22: every ONNX dtype written by every path, protobuf's merge
rules, and models reached through symbolic links.

The reference everywhere is the in-memory path: ``bnfold.optimize(onnx.load(path))`` saved
the same way. The file path (lazy reading, recipes, streaming) must write the same bytes, and
onnx.load of what it wrote must hold what onnx.load of the input holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import bnfold
from bnfold.cli import main
from bnfold.storage import dtypes, lazyio, recipes
from tests.builders.edges.storage import (
    EXOTIC_TYPES,
    as_pieces,
    place_model,
    to_bfloat16,
    with_exotic_tensors,
)
from tests.builders.files import leftovers, snapshot
from tests.builders.graphs import make_model, random_bn_params, tensor

SIZED_TYPES = [
    value for name, value in TensorProto.DataType.items() if name not in ("UNDEFINED", "STRING")
]


def _conv_bn(channels: int, seed: int = 0, kernel: int = 3) -> onnx.ModelProto:
    """Conv → BN in float32; the weight is ``channels² · kernel²`` elements."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((channels, channels, kernel, kernel)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv", pads=[1] * 4),
        helper.make_node("BatchNormalization", ["y", "g", "b", "m", "v"], ["z"], name="bn"),
    ]
    inits = [weight, bias, *random_bn_params(rng, channels)]
    return make_model(
        nodes,
        [tensor("x", ["N", channels, 4, 4])],
        [tensor("z", None)],
        inits,
        names=["W", "B", "g", "b", "m", "v"],
    )


def _fold_both(path: Path, tmp_path: Path, external: bool) -> tuple[list[bytes], list[bytes]]:
    """The files written from ``path`` (lazy) and from ``onnx.load(path)`` (in memory)."""
    written = []
    for name, source in (("lazy", path), ("memory", onnx.load(path))):
        folder = tmp_path / f"out-{name}"
        folder.mkdir()
        result = bnfold.optimize(source)
        files = result.save(folder / "out.onnx", external_data=external)
        written.append([file.read_bytes() for file in files])
        assert not leftovers(folder)
    return written[0], written[1]


def _plain(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the explicit ``data_location = DEFAULT`` that onnx.load leaves on
    tensors it read from external data (not a value)."""
    for item in model.graph.initializer:
        if item.HasField("data_location") and item.data_location == TensorProto.DEFAULT:
            item.ClearField("data_location")
    return model


# ---- one way from dtype to bytes -----------------------------------------------------------
@pytest.mark.parametrize("data_type", SIZED_TYPES, ids=TensorProto.DataType.Name)
@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 1001])
def test_raw_bytes_are_onnx_bytes_for_every_type(data_type: int, count: int) -> None:
    from tests.builders.edges.storage import exotic_values

    values = exotic_values(data_type, [count], np.random.default_rng(count))
    if values.dtype.kind == "c":
        values = values + 1j * values[::-1]
    expected = numpy_helper.from_array(values)
    assert expected.data_type == data_type
    got = dtypes.raw_bytes(values)
    assert bytes(got) == expected.raw_data
    assert dtypes.stored_nbytes(data_type, count) == len(expected.raw_data)
    back = dtypes.from_raw(bytes(got), data_type, (count,))
    assert back.dtype == values.dtype and back.tobytes() == values.tobytes()


def test_raw_bytes_are_little_endian_whatever_the_array() -> None:
    values = np.arange(6, dtype=">f4").reshape(2, 3)[:, ::2]  # big-endian, not contiguous
    assert (
        bytes(dtypes.raw_bytes(values, TensorProto.FLOAT))
        == np.array([0, 2, 3, 5], "<f4").tobytes()
    )


# ---- bfloat16 on the streaming path ---------------------------------------------------------
@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
def test_a_large_bfloat16_weight_streams_with_the_bytes_of_the_in_memory_path(
    external: bool, tmp_path: Path
) -> None:
    """The crash of issue 22: a folded bfloat16 weight of 1 MiB or more (exit 70)."""
    model = to_bfloat16(_conv_bn(channels=280))  # 280·280·9·2 bytes: 1.41 MB of weight
    assert recipes.MIN_RECIPE_BYTES <= 280 * 280 * 9 * 2
    path = place_model(model, tmp_path / "in", external=external)
    before = snapshot(tmp_path / "in")
    lazy = bnfold.optimize(path)
    assert [fold.dtype for fold in lazy.report.folds] == ["bfloat16"]
    assert any(recipes.is_recipe(t) for t in lazy.folded.graph.initializer)
    lazy_files, memory_files = _fold_both(path, tmp_path, external)
    assert lazy_files == memory_files
    result = CliRunner().invoke(
        main, ["optimize", str(path), "-o", str(tmp_path / "cli.onnx"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert onnx.load(tmp_path / "cli.onnx") == onnx.load(tmp_path / "out-memory" / "out.onnx")
    assert snapshot(tmp_path / "in") == before


# ---- exotic types on every write path -------------------------------------------------------
@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
def test_every_exotic_type_is_written_unchanged_by_every_path(
    external: bool, tmp_path: Path
) -> None:
    model = with_exotic_tensors(_conv_bn(channels=24), np.random.default_rng(1))
    onnx.checker.check_model(model, full_check=True)
    path = place_model(model, tmp_path / "in", external=external)
    lazy_files, memory_files = _fold_both(path, tmp_path, external)
    assert lazy_files == memory_files
    written = onnx.load(tmp_path / "out-lazy" / "out.onnx")
    original = {t.name: t for t in onnx.load(path).graph.initializer}
    for item in written.graph.initializer:
        if item.data_type in EXOTIC_TYPES:
            want = numpy_helper.to_array(original[item.name])
            got = numpy_helper.to_array(item)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), item.name
    assert {t.data_type for t in written.graph.initializer} >= set(EXOTIC_TYPES)
    # The lazy reader left the large ones in the file and reads them back exactly.
    loaded = bnfold.storage.load.load_model(path)
    for item in loaded.model.graph.initializer:
        if item.data_type in EXOTIC_TYPES:
            got = lazyio.tensor_array(item, loaded.base_dir)
            assert got.tobytes() == numpy_helper.to_array(original[item.name]).tobytes()


def test_a_packed_tensor_of_the_wrong_length_is_refused_with_exit_3(tmp_path: Path) -> None:
    model = with_exotic_tensors(
        _conv_bn(channels=4), np.random.default_rng(2), sizes=[7], types=[TensorProto.INT4]
    )
    item = next(t for t in model.graph.initializer if t.data_type == TensorProto.INT4)
    item.raw_data = item.raw_data + b"\x00"  # 7 int4 take 4 bytes, not 5
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "int4 needs 4" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# ---- protobuf merge semantics ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("cuts", "repeat_raw"),
    [([0.5], ""), ([0.0, 1.0], ""), ([0.3, 0.6], "W"), ([1.0], "W"), ([0.5], "g")],
    ids=["halves", "empty-first-and-last", "thirds-raw-twice", "all-first", "small-raw-twice"],
)
@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
def test_a_model_in_pieces_is_read_as_protobuf_merges_it(
    cuts: list[float], repeat_raw: str, external: bool, tmp_path: Path
) -> None:
    model = _conv_bn(channels=24)  # W: 20 KB, lazy when read
    if external and repeat_raw:
        pytest.skip("the light model has no raw_data to repeat")
    data = as_pieces(model, cuts, repeat_raw=repeat_raw)
    merged = onnx.ModelProto()
    merged.ParseFromString(data)
    assert merged.SerializeToString() == model.SerializeToString()  # what onnx.load reads
    path = place_model(model, tmp_path / "in", external=external, pieces=cuts)
    if repeat_raw:
        path.write_bytes(data)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loaded = bnfold.storage.load.load_model(path)
    full = lazyio.load_all(loaded.model, loaded.base_dir)  # type: ignore[arg-type]
    assert full == _plain(onnx.load(path))
    lazy_files, memory_files = _fold_both(path, tmp_path, external)
    assert lazy_files == memory_files
    written = onnx.load(tmp_path / "out-lazy" / "out.onnx")
    assert [n.op_type for n in written.graph.node] == ["Conv"]


def test_a_second_graph_piece_with_only_a_name_keeps_every_node(tmp_path: Path) -> None:
    """Issue 22: the lazy reader kept the last ``graph`` piece only and wrote 0 nodes."""
    model = _conv_bn(channels=24)
    tail = onnx.ModelProto()
    tail.graph.name = "renamed"
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString() + tail.SerializeToString())
    assert len(onnx.load(path).graph.node) == 2
    result = bnfold.optimize(path, output=tmp_path / "out.onnx")
    written = onnx.load(tmp_path / "out.onnx")
    assert written.graph.name == "renamed"
    assert [n.op_type for n in written.graph.node] == ["Conv"]
    assert len(result.report.folds) == 1


# ---- symbolic links -------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["file", "away", "folder"])
@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external"])
def test_a_model_through_a_link_reads_its_data_beside_the_link(
    link: str, external: bool, tmp_path: Path
) -> None:
    model = _conv_bn(channels=24)
    path = place_model(model, tmp_path / "in", external=external, link=link)
    assert onnx.load(path) == onnx.load(path)  # onnx reads it (beside the link)
    before = snapshot(tmp_path / "in")
    lazy_files, memory_files = _fold_both(path, tmp_path, external)
    assert lazy_files == memory_files
    assert snapshot(tmp_path / "in") == before


def _refused(path: Path, tmp_path: Path, code: int, message: str) -> None:
    """The CLI refuses ``path`` with one line and ``code``, writing and changing nothing."""
    folder = tmp_path / "in"
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["optimize", str(path)])
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert snapshot(folder) == before


def test_data_beside_the_target_but_not_beside_the_link_is_missing(tmp_path: Path) -> None:
    """As onnx: a link elsewhere to a model with external data does not find the data."""
    path = place_model(_conv_bn(channels=24), tmp_path / "in", external=True)
    away = tmp_path / "in" / "away"
    away.mkdir()
    os.symlink(os.path.join("..", "real", "m.onnx"), away / "m.onnx")
    with pytest.raises(Exception, match=r"m\.onnx\.data"):
        onnx.load(away / "m.onnx")
    _refused(away / "m.onnx", tmp_path, 3, "external data file missing")
    assert path.exists()


@pytest.mark.parametrize("link", ["file", "away", "folder"])
def test_data_outside_the_folder_of_the_link_is_refused(link: str, tmp_path: Path) -> None:
    """The safety rule holds through links: the data file itself a link out of the model's
    folder (the folder of the path as given) is refused with exit 7."""
    path = place_model(_conv_bn(channels=24), tmp_path / "in", external=True, link=link)
    data = path.parent / "m.onnx.data"
    outside = tmp_path / "in" / "outside.data"
    outside.write_bytes(data.resolve().read_bytes())
    data.resolve().unlink()
    os.symlink(outside, data.resolve())
    _refused(path, tmp_path, 7, "outside the model's folder")

"""Property-based fuzzing of the file path of ``bnfold.optimize``: the storage edges.

Strategy: a model of ``tests.builders.fuzz.graphs.random_models`` (the fuzzer's graphs and
edge classes), laid out in files by the storage classes of ``tests.builders.edges.storage``
(issue 22): maybe in bfloat16, maybe with tensors of every exotic type as graph outputs, in
one file or with external data, as one piece or several that protobuf merges, opened
directly or through a symbolic link to the file or its folder. Every tensor of ``LAZY_BYTES``
or more stays in its file when read and every folded one becomes a recipe evaluated a few
bytes at a time, so these small models take the paths big ones take.

Property: what the file path writes (lazy reading, recipes, streaming) is byte for byte what
the in-memory path writes from ``onnx.load`` of the same file, with the same report; the
written model is valid wherever the input is, its BatchNormalization count is what the report
says; the input files are untouched and nothing is left behind. CI runs the ``ci`` profile
(500 examples); ``BNFOLD_FUZZ_EXAMPLES=5000`` for a long run, as for ``test_fuzz.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

import bnfold
from bnfold.storage import filebytes, lazyio, recipes
from tests.builders.edges.storage import place_model, to_bfloat16, with_exotic_tensors
from tests.builders.files import leftovers, snapshot
from tests.builders.fuzz.checks import batchnorm_count_all
from tests.builders.fuzz.graphs import FuzzModel, random_models
from tests.builders.fuzz.settings import fuzz_settings

# Tensors this large stay in their file when read: every weight and most BN parameters, but no
# shape tensor of rank <= 8 (a Reshape's shape left in the file is unknown to shape
# inference, as it would be for the 4 KiB shape tensors no real model has).
LAZY_BYTES = 72
EXOTIC_SAMPLE = [
    onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.FLOAT8E5M2,
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
    onnx.TensorProto.FLOAT4E2M1,
    onnx.TensorProto.INT2,
    onnx.TensorProto.FLOAT6E3M2,
    onnx.TensorProto.BOOL,
    onnx.TensorProto.COMPLEX64,
]


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, object]:
    return {
        "bfloat16": draw(st.integers(0, 3)) == 0,
        "exotic": draw(st.integers(0, 3)) == 0,
        "external": draw(st.booleans()),
        "pieces": draw(st.lists(st.floats(0.0, 1.0), max_size=2)),
        "link": draw(st.sampled_from(["", "", "file", "away", "folder"])),
    }


def _checks(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001 - any checker failure: the input is not fully valid
        return False
    return True


def _plain(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the explicit ``data_location = DEFAULT`` that onnx.load leaves on
    tensors it read from external data (not a value)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for item in copy.graph.initializer:
        if item.HasField("data_location") and item.data_location == onnx.TensorProto.DEFAULT:
            item.ClearField("data_location")
    return copy


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


@pytest.mark.slow
@fuzz_settings()
@given(random_models(), layouts(), st.integers(0, 2**32 - 1))
def test_the_file_path_writes_the_bytes_of_the_in_memory_path(
    drawn: FuzzModel, layout: dict[str, object], seed: int
) -> None:
    model = drawn.model
    legacy = _default_opset(model) < 13 or model.ir_version < 4
    if layout["bfloat16"] and not legacy:
        converted = to_bfloat16(model)
        if _checks(converted):
            model = converted
            event("bfloat16")
    if layout["exotic"] and not legacy:
        model = with_exotic_tensors(
            model, np.random.default_rng(seed), sizes=(3, 41), types=EXOTIC_SAMPLE, cast=False
        )
        event("exotic types")
    assume(model.ByteSize() < 2**20)
    event(f"external {layout['external']}, pieces {len(layout['pieces']) + 1}")  # type: ignore[arg-type]
    event(f"link {layout['link'] or 'none'}")
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.object(lazyio, "LAZY_THRESHOLD_BYTES", LAZY_BYTES),
        mock.patch.object(recipes, "MIN_RECIPE_BYTES", 0),
        mock.patch.object(recipes, "CHUNK_BYTES", 64),
        mock.patch.object(filebytes, "MAP_THRESHOLD_BYTES", 256),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # fp16 overflow in numpy casts
        _check_layout(model, Path(folder), layout)


def _check_layout(model: onnx.ModelProto, root: Path, layout: dict[str, object]) -> None:
    external = bool(layout["external"])
    path = place_model(
        model,
        root / "in",
        external=external,
        link=str(layout["link"]),
        pieces=list(layout["pieces"]),  # type: ignore[call-overload]
    )
    before = snapshot(root / "in")
    loaded = onnx.load(path)
    valid = _checks(loaded)
    results, written = [], []
    for name, source in (("lazy", path), ("memory", loaded)):
        out = root / f"out-{name}"
        out.mkdir()
        result = bnfold.optimize(source)
        files = result.save(out / "m.onnx", external_data=external)
        results.append(result)
        written.append([file.read_bytes() for file in files])
        assert not leftovers(out)
    lazy, memory = results
    assert lazy.report.to_dict()["folds"] == memory.report.to_dict()["folds"]
    assert lazy.report.to_dict()["skipped"] == memory.report.to_dict()["skipped"]
    assert written[0] == written[1], "the file path wrote other bytes than the in-memory path"
    output = onnx.load(root / "out-lazy" / "m.onnx")
    if valid:
        onnx.checker.check_model(output, full_check=True)
    assert _plain(output) == _plain(lazy.model), "the written model is not the result's"
    if not loaded.functions:  # (a local function's BNs are counted once per call once inlined)
        bn_folds = [f for f in lazy.report.folds if f.kind == "BatchNormalization"]
        assert batchnorm_count_all(output) == batchnorm_count_all(loaded) - len(bn_folds)
    assert snapshot(root / "in") == before

"""Lazy reading and streaming writing give the bytes protobuf would, without loading tensors."""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

import bnfold
from bnfold.storage import lazyio, streamwrite
from bnfold.storage.load import load_model
from tests.builders.conv_bn import conv_bn_model
from tests.builders.graphs import assert_equivalent

BACKEND = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
CORPUS = (
    sorted(glob.glob(f"{BACKEND}/light/*.onnx"))
    + sorted(glob.glob(f"{BACKEND}/pytorch-converted/*/model.onnx"))[:20]
)


@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    """A Conv+BN model whose weight (64·64·3·3 float32) is large enough to stay lazy."""
    model = conv_bn_model(c_in=64, c_out=64)
    path = tmp_path / "big.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("path", CORPUS + ["models/resnet_tiny.onnx"], ids=os.path.basename)
def test_streamed_bytes_equal_protobuf_serialization(path: str) -> None:
    source = Path(path).resolve()
    full = onnx.load(str(source))
    lazy = lazyio.read_lazy(source)
    written = io.BytesIO()
    streamwrite.write_model(lazy, written, source.parent)
    assert written.getvalue() == full.SerializeToString()
    assert lazyio.load_all(lazy, source.parent).SerializeToString() == full.SerializeToString()


def test_large_tensors_stay_in_the_file_until_read(big_model: Path) -> None:
    lazy = lazyio.read_lazy(big_model)
    weight = next(t for t in lazy.graph.initializer if t.name == "W")
    assert weight.data_location == onnx.TensorProto.EXTERNAL and not weight.raw_data
    expected = onnx.numpy_helper.to_array(
        next(t for t in onnx.load(big_model).graph.initializer if t.name == "W")
    )
    np.testing.assert_array_equal(lazyio.tensor_array(weight, big_model.parent), expected)


def test_external_data_output_round_trips_and_matches_one_file_output(
    big_model: Path, tmp_path: Path
) -> None:
    result = bnfold.optimize(big_model)
    one, ext = tmp_path / "one.onnx", tmp_path / "ext.onnx"
    result.save(one)
    result.save(ext, external_data=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 64 * 64 * 9 * 4 - 1
    assert load_model(ext).materialized().SerializeToString() == onnx.load(one).SerializeToString()
    assert_equivalent(onnx.load(big_model), onnx.load(ext))
    # and from external data back to one file: the bytes do not depend on where weights lived
    again = tmp_path / "again.onnx"
    bnfold.optimize(ext).save(again, external_data=False)
    assert again.read_bytes() == one.read_bytes()


def test_in_place_reads_every_tensor_before_replacing_the_file(big_model: Path) -> None:
    original = onnx.load(big_model)
    result = bnfold.optimize(big_model)
    with pytest.raises(bnfold.BnfoldError):
        result.save(big_model)  # refused without overwrite_input
    result.save(big_model, overwrite_input=True)
    assert_equivalent(original, onnx.load(big_model))

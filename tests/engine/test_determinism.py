"""Same input, same bytes; folding twice is a no-op; what was not asked stays as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.builders.conv_bn import conv_bn_model
from tests.builders.graphs import fold

ROOT = Path(__file__).parents[2]


def _annotated_model() -> onnx.ModelProto:
    model = conv_bn_model()
    model.doc_string = "keep me"
    model.producer_name = "tests"
    model.graph.doc_string = "graph doc"
    helper.set_model_props(model, {"author": "tests", "license": "none"})
    model.graph.node[0].doc_string = "conv doc"
    custom = helper.make_node("Mystery", ["z"], ["m"], domain="com.example", name="custom")
    model.graph.node.append(custom)
    model.graph.output.append(helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def test_fold_is_deterministic_and_idempotent() -> None:
    model = _annotated_model()
    first = fold(model).model.SerializeToString()
    second = fold(model).model.SerializeToString()
    assert first == second
    again = fold(onnx.load_from_string(first))
    assert not again.report.folds
    assert again.model.SerializeToString() == first


def test_what_was_not_asked_stays() -> None:
    model = _annotated_model()
    folded = fold(model).model
    assert folded.ir_version == model.ir_version
    assert list(folded.opset_import) == list(model.opset_import)
    assert folded.doc_string == "keep me" and folded.graph.doc_string == "graph doc"
    assert list(folded.metadata_props) == list(model.metadata_props)
    assert [i.name for i in folded.graph.input] == [i.name for i in model.graph.input]
    assert list(folded.graph.output) == list(model.graph.output)
    conv, custom = folded.graph.node
    assert conv.name == "conv" and conv.doc_string == "conv doc"
    assert custom == model.graph.node[-1]


def test_input_proto_is_not_modified() -> None:
    model = _annotated_model()
    before = model.SerializeToString()
    fold(model)
    assert model.SerializeToString() == before


@pytest.mark.slow
def test_output_bytes_do_not_depend_on_hash_seed(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(_annotated_model(), source)
    outputs = []
    for seed in ("0", "12345"):
        target = tmp_path / f"out{seed}.onnx"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "cli.py"),
                "optimize",
                str(source),
                "-o",
                str(target),
                "-q",
            ],
            check=True,
            env=env,
            cwd=ROOT,
        )
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    assert np.frombuffer(outputs[0], np.uint8).size > 0

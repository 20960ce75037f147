"""Options of ``bnfold optimize`` that reach the library (the README promises each of them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper

from bnfold.cli import main
from tests.helpers import assert_equivalent, make_model, random_bn_params, tensor


def test_lower_standalone_rewrites_a_lone_batchnorm_as_mul_add(tmp_path: Path) -> None:
    model = make_model(
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["z"], name="bn")],
        [tensor("x", [1, 3, 4, 4])],
        [tensor("z", None)],
        random_bn_params(np.random.default_rng(0), 3),
        names=["g", "b", "m", "v"],
    )
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    result = CliRunner().invoke(main, ["optimize", str(source), "-q"])
    assert result.exit_code == 0 and onnx.load(tmp_path / "m.folded.onnx") == model
    result = CliRunner().invoke(main, ["optimize", str(source), "--lower-standalone", "-q"])
    assert result.exit_code == 0, result.output
    lowered = onnx.load(tmp_path / "m.folded.onnx")
    assert [node.op_type for node in lowered.graph.node] == ["Mul", "Add"]
    assert_equivalent(model, lowered)

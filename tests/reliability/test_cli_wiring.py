"""Options of ``bnfold optimize`` that reach the library (the README promises each of them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper

from bnfold.cli import main
from tests.builders.graphs import assert_equivalent, make_model, random_bn_params, tensor


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


SHARED_OPTIONS = ["--providers", "--shape", "--dim", "--range", "--default-dim", "--inputs"]


def _help_of(command: str, option: str) -> str:
    params = {name: p for p in main.commands[command].params for name in p.opts}
    return getattr(params[option], "help", "") or ""


def test_option_groups_are_defined_once_with_the_same_help() -> None:
    """verify, bench and optimize (for --verify/--bench) share the input and provider options."""
    for option in SHARED_OPTIONS:
        helps = {command: _help_of(command, option) for command in ("verify", "bench", "optimize")}
        assert len(set(helps.values())) == 1 and helps["verify"], (option, helps)
    for option in ("--report", "--markdown"):
        helps = {c: _help_of(c, option) for c in ("verify", "bench", "optimize", "check")}
        assert len(set(helps.values())) == 1, (option, helps)

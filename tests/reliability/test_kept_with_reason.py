"""Valid models with odd contents: folded exactly where possible, otherwise kept with a reason.

NaN/Inf parameters, ``var + epsilon <= 0``, zero-size tensors and mismatched parameter shapes
never crash ``bnfold optimize``: the BatchNormalization stays, the report gives the stable
reason code, and the written model is byte-identical to the input. Ops of custom domains are
kept untouched while everything around them is folded (checked numerically).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

import bnfold
from bnfold.cli import main
from tests.builders import broken as models
from tests.builders.graphs import IR_VERSION, assert_equivalent, batchnorm_count, make_model, tensor


def _params(**changes: object) -> list[np.ndarray]:
    """γ, β, μ, σ² for 4 channels, with some entries replaced."""
    values = {
        "gamma": np.array([1.0, -0.5, 2.0, 0.7], np.float32),
        "beta": np.array([0.1, 0.2, -0.3, 0.4], np.float32),
        "mean": np.array([0.5, -1.0, 0.0, 2.0], np.float32),
        "var": np.array([1.0, 0.5, 2.0, 0.25], np.float32),
    }
    for name, value in changes.items():
        values[name] = np.asarray(value, np.float32)
    return [values["gamma"], values["beta"], values["mean"], values["var"]]


def _conv_then_empty_concat() -> onnx.ModelProto:
    """A zero-size constant joins the Conv output before the BN (not foldable, not a crash)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Concat", ["y", "empty"], ["c"], name="concat", axis=1),
        helper.make_node("BatchNormalization", ["c", *models.BN_NAMES], ["z"], name="bn"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z", [1, 4, 4, 4])],
        [
            rng.standard_normal([4, 3, 3, 3]).astype(np.float32),
            np.zeros([1, 0, 4, 4], np.float32),
            *_params(),
        ],
        names=["W", "empty", *models.BN_NAMES],
    )


KEPT: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "NaN in gamma": (
        lambda: models.conv_bn(params=_params(gamma=[1.0, np.nan, 1.0, 1.0])),
        "param-not-finite",
    ),
    "Inf in var": (
        lambda: models.conv_bn(params=_params(var=[1.0, np.inf, 1.0, 1.0])),
        "param-not-finite",
    ),
    "-Inf in mean": (
        lambda: models.conv_bn(params=_params(mean=[-np.inf, 0.0, 0.0, 0.0])),
        "param-not-finite",
    ),
    "negative variance": (
        lambda: models.conv_bn(params=_params(var=[1.0, -2.0, 1.0, 1.0])),
        "nonpositive-variance",
    ),
    "var + epsilon == 0": (
        lambda: models.conv_bn(params=_params(var=[1.0, -1e-5, 1.0, 1.0]), epsilon=1e-5),
        "nonpositive-variance",
    ),
    "folded weight overflows float32": (
        lambda: models.conv_bn(params=_params(gamma=[3e38, 1.0, 1.0, 1.0], var=[1e-6] * 4)),
        "overflow",
    ),
    "zero-size parameters": (
        lambda: models.conv_bn(channels=0, params=[np.zeros(0, np.float32)] * 4),
        "param-shape-mismatch",
    ),
    "gamma shorter than the others": (
        lambda: models.conv_bn(params=_params(gamma=[1.0, 1.0, 1.0])),
        "param-shape-mismatch",
    ),
    "2-D gamma": (
        lambda: models.conv_bn(params=_params(gamma=[[1.0], [1.0], [1.0], [1.0]])),
        "param-shape-mismatch",
    ),
    "parameters for 5 channels after a 4-channel Conv": (
        lambda: _with_bn_channels(5),
        "channel-mismatch",
    ),
    "zero-size constant concatenated before the BN": (
        _conv_then_empty_concat,
        "no-linear-producer",
    ),
}


def _with_bn_channels(channels: int) -> onnx.ModelProto:
    model = models.conv_bn()
    del model.graph.initializer[2:]
    rng = np.random.default_rng(1)
    for name, value in zip(
        models.BN_NAMES, [rng.uniform(0.5, 1.5, channels).astype(np.float32)] * 4, strict=True
    ):
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return model


@pytest.mark.parametrize("case", list(KEPT))
def test_odd_parameters_are_kept_with_their_reason(case: str, tmp_path: Path) -> None:
    build, reason = KEPT[case]
    source = tmp_path / "model.onnx"
    source.write_bytes(build().SerializeToString())
    report = tmp_path / "report.json"
    output = tmp_path / "out.onnx"
    args = ["optimize", str(source), "-o", str(output), "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["folds"] == []
    assert [(s["bn"], s["reason"]) for s in data["skipped"]] == [("bn", reason)], data
    assert output.read_bytes() == source.read_bytes()


def test_zero_batch_input_still_folds_exactly() -> None:
    """A graph input with a zero-size batch dimension: the fold is the same, outputs empty."""
    model = models.conv_bn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 0
    result = bnfold.optimize(model)
    assert [f.pattern for f in result.report.folds] == ["conv-bn"]
    assert_equivalent(model, result.model)


def _custom_op_sandwich() -> onnx.ModelProto:
    """Conv -> BN -> com.example.Gadget -> Conv -> BN, and an unknown-domain side branch."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["y1"], name="conv1"),
        helper.make_node("BatchNormalization", ["y1", "g1", "b1", "m1", "v1"], ["z1"], name="bn1"),
        helper.make_node("Gadget", ["z1"], ["u"], name="gadget", domain="com.example", knob=3),
        helper.make_node("Conv", ["u", "W2"], ["y2"], name="conv2"),
        helper.make_node("BatchNormalization", ["y2", "g2", "b2", "m2", "v2"], ["z2"], name="bn2"),
        helper.make_node("Widget", ["x"], ["side"], name="widget", domain="org.other"),
    ]
    names = ["W1", "g1", "b1", "m1", "v1", "W2", "g2", "b2", "m2", "v2"]
    values = [
        rng.standard_normal([4, 3, 3, 3]).astype(np.float32),
        *_params(),
        rng.standard_normal([4, 4, 1, 1]).astype(np.float32),
        *_params(gamma=[-1.0, 0.3, 1.5, 2.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "custom",
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z2", [1, 4, 4, 4]), tensor("side", [1, 3, 6, 6])],
        [onnx.numpy_helper.from_array(v, n) for v, n in zip(values, names, strict=True)],
    )
    opsets = [
        helper.make_opsetid(d, v) for d, v in (("", 17), ("com.example", 1), ("org.other", 2))
    ]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = IR_VERSION
    return model


def _as_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every custom-domain node replaced by Identity (runnable by ORT)."""
    runnable = models.copy(model)
    for node in runnable.graph.node:
        if node.domain not in ("", "ai.onnx"):
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
    return runnable


def test_custom_domain_ops_are_kept_and_the_rest_is_folded() -> None:
    model = _custom_op_sandwich()
    result = bnfold.optimize(model)
    assert sorted(f.bn for f in result.report.folds) == ["bn1", "bn2"]
    assert batchnorm_count(result.model) == 0
    kept = [n for n in result.model.graph.node if n.domain not in ("", "ai.onnx")]
    assert kept == [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert list(result.model.opset_import) == list(model.opset_import)
    assert_equivalent(_as_identity(model), _as_identity(result.model))

"""Inputs that exercise the model, weak-evidence detection, headroom, quiet onnxruntime logs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import bnfold
from bnfold.cli import main
from bnfold.errors import UsageError
from bnfold.runtime.inputs import input_specs
from bnfold.verify import verify
from bnfold.verify.compare import compare_output
from bnfold.verify.evidence import weak_outputs
from tests.builders.verify_models import make_model, save, tensor

pytestmark = pytest.mark.usefixtures("cpu_only_default")


def conv_stack(dims: list, *, layers: int = 3, bn: bool = True) -> onnx.ModelProto:
    """``layers`` x (3x3 Conv, stride 2, no padding -> BN -> Relu) on an input of ``dims``.

    Needs H, W >= 15 for three layers: a 1x1 default would crash onnxruntime.
    """
    rng = np.random.default_rng(0)
    nodes, inits, source = [], {}, "x"
    for i in range(layers):
        cin = 3 if i == 0 else 4
        nodes.append(helper.make_node("Conv", [source, f"W{i}"], [f"c{i}"], strides=[2, 2]))
        inits[f"W{i}"] = rng.standard_normal((4, cin, 3, 3)).astype(np.float32)
        out = f"c{i}"
        if bn:
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [out, f"g{i}", f"b{i}", f"m{i}", f"v{i}"],
                    [f"n{i}"],
                )
            )
            inits.update(
                {
                    f"g{i}": rng.uniform(0.5, 2, 4).astype(np.float32),
                    f"b{i}": rng.standard_normal(4).astype(np.float32),
                    f"m{i}": rng.standard_normal(4).astype(np.float32),
                    f"v{i}": rng.uniform(0.5, 2, 4).astype(np.float32),
                }
            )
            out = f"n{i}"
        nodes.append(helper.make_node("Relu", [out], [f"r{i}"] if i < layers - 1 else ["y"]))
        source = f"r{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    x.type.tensor_type.shape.dim.add()
    for dim in dims:
        d = (
            x.type.tensor_type.shape.dim.add()
            if x.type.tensor_type.shape.dim[0].ByteSize()
            else x.type.tensor_type.shape.dim[0]
        )
        if isinstance(dim, str):
            d.dim_param = dim
        else:
            d.dim_value = dim
    graph = helper.make_graph(
        nodes,
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_minus_one_dims_are_symbolic_and_sized_as_an_image(tmp_path: Path) -> None:
    """paddle2onnx writes [-1, 3, -1, -1]: no crash, an image's default size, exit 0."""
    model = conv_stack([-1, 3, -1, -1])
    specs, notes = input_specs(model)
    (spec,) = specs
    assert spec.shape[:2] == (1, 3) and spec.shape[2] == spec.shape[3] >= 15
    assert any("x[2], x[3] set to 224 (the default for an image input" in n for n in notes), notes
    folded = bnfold.optimize(model).model
    original_path, folded_path = save(model, tmp_path / "m.onnx"), save(folded, tmp_path / "f.onnx")
    result = CliRunner().invoke(
        main, ["verify", str(original_path), str(folded_path), "--providers", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "set to" in result.output


def test_named_spatial_dims_get_a_size_and_options_still_win() -> None:
    model = conv_stack(["N", 3, "H", "W"])
    specs, _ = input_specs(model)
    assert specs[0].shape[0] == 1 and specs[0].shape[2] >= 15
    specs, _ = input_specs(model, dims={"H": 40, "W": 41, "N": 2})
    assert specs[0].shape == (2, 3, 40, 41)
    specs, notes = input_specs(model, default_dim=3)
    assert specs[0].shape == (3, 3, 3, 3) and any("--default-dim" in n for n in notes)


def test_a_size_nothing_can_satisfy_is_a_usage_error_naming_the_option() -> None:
    model = conv_stack([1, 3, 2, 2])  # static and too small: onnxruntime refuses to run it
    with pytest.raises(UsageError) as caught:
        verify(model, model, providers="cpu")
    assert "--shape" in str(caught.value) or "--inputs" in str(caught.value)
    huge = conv_stack([1, 3, "H", "W"])
    with pytest.raises(UsageError, match="too large"):
        input_specs(huge, dims={"H": 100000, "W": 100000})


def test_weak_evidence_kinds() -> None:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        "g",
        [tensor("x", TensorProto.FLOAT, [2, 3])],
        [tensor("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    ones = {"y": np.ones((2, 3), np.float32)}
    weak = weak_outputs(model, [{"y": np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)}])
    assert weak["y"].kind == "saturated" and "100% of elements" in weak["y"].message
    assert weak_outputs(model, [ones, ones])["y"].kind == "constant"
    probs = [
        {"y": np.array([[0.1, 0.7, 0.2]], np.float32)},
        {"y": np.array([[0.2, 0.5, 0.3]], np.float32)},
    ]
    assert weak_outputs(model, probs)["y"].kind == "same-argmax"
    varied = [
        {"y": np.array([[0.1, 0.7, 0.2]], np.float32)},
        {"y": np.array([[0.6, 0.1, 0.3]], np.float32)},
    ]
    assert weak_outputs(model, varied) == {}
    identity = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [tensor("x", TensorProto.FLOAT, [1, 3])],
        [tensor("y", TensorProto.FLOAT, [1, 3])],
    )
    plain = helper.make_model(identity, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    logits = [
        {"y": np.array([[3.0, -2.0, 9.0]], np.float32)},
        {"y": np.array([[4.0, 1.0, 8.0]], np.float32)},
    ]
    assert weak_outputs(plain, logits) == {}  # not probability-like: logits still show errors


def test_headroom_is_observed_over_allowed() -> None:
    ref = np.array([1.0, 100.0], np.float32)
    half = compare_output("y", ref, ref + np.array([0.5e-4, 0.0], np.float32))
    assert half.passed and half.tolerance_used == pytest.approx(0.25, rel=1e-2)
    over = compare_output("y", ref, ref * np.float32(1.01))
    assert not over.passed and over.tolerance_used > 1
    assert compare_output("y", np.array([np.nan]), np.array([1.0])).tolerance_used == math.inf
    assert compare_output("i", np.array([1, 2]), np.array([1, 2])).tolerance_used == 0.0


def test_report_shows_headroom(tmp_path: Path) -> None:
    model = conv_stack([1, 3, 32, 32])
    folded = bnfold.optimize(model).model
    report = verify(model, folded, providers="cpu")
    assert report.passed
    data = report.to_dict()
    assert data["providers"][0]["outputs"]["y"]["tolerance_used"] < 1
    assert all(s["tolerance_used"] < 1 for s in data["providers"][0]["sites"].values())
    assert "tol used" in report.to_markdown() and "of tolerance" in report.summary_line()


def reshape_crash() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Candidate reshapes to a fixed [2, 4]: onnxruntime fails at run time for a batch of 1."""
    io = ([tensor("x", TensorProto.FLOAT, ["N", 4])], [tensor("y", TensorProto.FLOAT, ["N", 4])])
    original = make_model([helper.make_node("Relu", ["x"], ["y"])], *io)
    candidate = make_model(
        [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
        *io,
        {"s": np.array([2, 4], np.int64)},
    )
    return original, candidate


def test_onnxruntime_log_lines_are_hidden_unless_verbose(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    original, candidate = reshape_crash()
    a, b = save(original, tmp_path / "a.onnx"), save(candidate, tmp_path / "b.onnx")
    args = ["verify", str(a), str(b), "--providers", "cpu", "-q"]
    from bnfold.cli import main as entry

    with pytest.raises(SystemExit) as code:
        entry(args, standalone_mode=True)
    assert code.value.code == 1
    out, err = capfd.readouterr()
    assert "[E:onnxruntime" not in out + err and "[W:onnxruntime" not in out + err
    lines = (out + err).splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1
    with pytest.raises(SystemExit):
        entry([*args, "--verbose"], standalone_mode=True)
    out, err = capfd.readouterr()
    assert "[E:onnxruntime" in err

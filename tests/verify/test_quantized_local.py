"""Quantized tensors judged locally, layer by layer (issue 24, ``bnfold/verify/local.py``).

The 4-layer QDQ model (``tests/builders/qdq.py``, 64 channels like ``benchmarks/qdq_fold.py``,
16 x 16 maps for speed): the exact fold's int32 bias rounding moves each layer by one step in
under 1 % of the elements, but end to end the moves grow (several % of the output, up to
several steps). Judged locally the exact fold passes; one channel's weight scale x 1.05 fails
at its own layer's site.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import bnfold
from bnfold.cli import main
from bnfold.verify import VerifyReport
from bnfold.verify.local import plan_local
from bnfold.verify.quantized import MAX_STEPS, SHARE_BOUND
from tests.builders.qdq import QdqSpec, qdq_conv_model

SPEC = QdqSpec(layers=4, channels=64, size=16, final_q=True)
LEVELS = "disable,all"


@pytest.fixture(scope="module")
def models() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    original = qdq_conv_model(SPEC)
    return original, bnfold.optimize(original).model


def _corrupted(folded: onnx.ModelProto, layer: int, channel: int = 3) -> onnx.ModelProto:
    """One output channel's weight scale in ``layer`` x 1.05."""
    model = onnx.ModelProto()
    model.CopyFrom(folded)
    dq = next(
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] == f"l{layer}_w"
    )
    init = next(t for t in model.graph.initializer if t.name == dq.input[1])
    scale = numpy_helper.to_array(init).copy()
    scale[channel] *= 1.05
    init.CopyFrom(numpy_helper.from_array(scale.astype(np.float32), init.name))
    return model


def _verify(original: onnx.ModelProto, candidate: onnx.ModelProto) -> VerifyReport:
    return bnfold.verify(original, candidate, providers="cpu", levels=LEVELS, runs=2)


def test_exact_multi_layer_fold_passes_though_moves_grow(
    models: tuple[onnx.ModelProto, onnx.ModelProto],
) -> None:
    report = _verify(*models)
    assert report.passed, report.summary_line()
    assert [r.level for r in report.ran] == ["disable", "all"]
    for result in report.ran:
        # End to end the moves grow past the per-tensor rule ...
        end_to_end = result.outputs["y"].steps
        assert end_to_end is not None
        assert end_to_end.max_steps > MAX_STEPS or end_to_end.share > SHARE_BOUND
        # ... while every layer, on the original's quantized inputs, stays within it.
        assert {f"l{i}_bn" for i in range(4)} <= set(result.local)
        assert all(j["passed"] for j in result.local.values())
        assert all(j["max_steps"] <= MAX_STEPS for j in result.local.values())
        assert result.moves_start is not None
    data = json.loads(report.to_json())
    assert data["providers"][0]["local"]["l0_bn"]["passed"] is True
    assert "judged locally" in report.to_markdown()


@pytest.mark.parametrize("layer", [0, 3])
def test_corrupted_channel_scale_fails_at_its_layer(
    models: tuple[onnx.ModelProto, onnx.ModelProto], layer: int
) -> None:
    original, folded = models
    report = _verify(original, _corrupted(folded, layer))
    assert not report.passed
    assert [r.status for r in report.providers] == ["failed", "failed"]
    for result in report.providers:
        assert result.first_divergence == f"l{layer}_bn"
        assert "judged locally" in (result.reason or "")
        site = result.local[f"l{layer}_bn"]
        assert not site["passed"] and site["max_steps"] > MAX_STEPS
        # The layers before it pass locally.
        assert all(result.local[f"l{i}_bn"]["passed"] for i in range(layer))
        assert not result.outputs["y"].passed


def test_regions_stop_at_the_quantized_tensors(
    models: tuple[onnx.ModelProto, onnx.ModelProto],
) -> None:
    original, folded = models
    plan = plan_local(original, folded, ["y", "l0_bn", "l3_bn"])
    # A layer's region starts at the integers its DequantizeLinear reads ...
    assert plan.original["l3_bn"].boundaries == ["l3_xq"]
    assert plan.candidate["l3_bn"].boundaries == ["l3_xq"]
    assert "BatchNormalization" in {n.op_type for n in plan.original["l3_bn"].nodes}
    assert "BatchNormalization" not in {n.op_type for n in plan.candidate["l3_bn"].nodes}
    # ... and a quantized tensor's region is the whole Q -> DQ -> Conv -> Relu -> Q layer
    # (what onnxruntime fuses into a QLinearConv).
    assert plan.original["l1_xq"].boundaries == ["l0_xq"]
    closure = plan.closure("y")
    assert closure is not None and closure[0] == "l0_xq" and closure[-1] == "y"


def test_optimize_with_verify_passes_on_the_command_line(
    models: tuple[onnx.ModelProto, onnx.ModelProto], tmp_path: Path
) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(models[0], source)
    result = CliRunner().invoke(
        main, ["optimize", str(source), "-o", str(tmp_path / "out.onnx"), "--verify"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.onnx").exists()


# The same depth ending in a float output (``final_q=False``): the last layer's site and the
# output are float tensors downstream of the re-quantized activations. Each is a float unit,
# judged locally with the float rule on the original's integers at its layer's input.
FLOAT_SPEC = QdqSpec(layers=4, channels=64, size=16, final_q=False)


@pytest.fixture(scope="module")
def float_models() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    original = qdq_conv_model(FLOAT_SPEC)
    return original, bnfold.optimize(original).model


def test_float_tail_of_an_exact_fold_passes_locally(
    float_models: tuple[onnx.ModelProto, onnx.ModelProto],
) -> None:
    original, folded = float_models
    plan = plan_local(original, folded, ["y", "l0_bn", "l3_bn"])
    assert {"l3_bn", "y"} <= plan.floats
    assert plan.original["l3_bn"].boundaries == ["l3_xq"]
    assert plan.closure("y") is not None
    report = _verify(*float_models)
    assert report.passed, report.summary_line()
    for result in report.ran:
        for name in ("l3_bn", "y"):
            local = result.local[name]
            assert local["kind"] == "float" and local["passed"]
            assert local["tolerance_used"] < 1
        assert result.outputs["y"].passed and result.sites["l3_bn"].passed
    assert "float, max error" in report.to_markdown()


@pytest.mark.parametrize("layer", [0, 3])
def test_corrupted_channel_scale_before_a_float_output_fails_at_its_layer(
    float_models: tuple[onnx.ModelProto, onnx.ModelProto], layer: int
) -> None:
    original, folded = float_models
    report = _verify(original, _corrupted(folded, layer))
    assert not report.passed
    assert [r.status for r in report.providers] == ["failed", "failed"]
    for result in report.providers:
        assert result.first_divergence == f"l{layer}_bn"
        assert "judged locally" in (result.reason or "")
        assert not result.local[f"l{layer}_bn"]["passed"]
        assert all(result.local[f"l{i}_bn"]["passed"] for i in range(layer))
        assert not result.outputs["y"].passed
        if layer == 3:
            assert result.local["l3_bn"]["tolerance_used"] > 1
            assert "float tolerance" in (result.reason or "")


def test_optimize_with_verify_passes_with_a_float_output(
    float_models: tuple[onnx.ModelProto, onnx.ModelProto], tmp_path: Path
) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(float_models[0], source)
    result = CliRunner().invoke(
        main, ["optimize", str(source), "-o", str(tmp_path / "out.onnx"), "--verify"]
    )
    assert result.exit_code == 0, result.output


def test_a_float_unit_may_move_by_half_a_step_of_its_layers_integer_bias(
    float_models: tuple[onnx.ModelProto, onnx.ModelProto],
) -> None:
    """Re-quantizing a folded int32 bias moves each channel's bias by at most half a step of
    its scale (x_scale·w_scale'): the float unit after the layer is allowed that much more."""
    from bnfold.verify.local import bias_half_step

    original, folded = float_models
    plan = plan_local(original, folded, ["y", "l3_bn"])
    region = plan.candidate["l3_bn"]
    constants = {t.name: t for t in folded.graph.initializer}
    scales = [
        numpy_helper.to_array(constants[node.input[1]])
        for node in region.nodes
        if node.op_type == "DequantizeLinear"
        and constants.get(node.input[0]) is not None
        and constants[node.input[0]].data_type == onnx.TensorProto.INT32
    ]
    assert scales, "the last layer dequantizes an int32 bias"
    expected = 0.5 * max(float(np.max(np.abs(s))) for s in scales)
    assert bias_half_step(region, folded.graph, None) == pytest.approx(expected)
    # A region with no integer bias gets no allowance beyond the float rule.
    assert (
        bias_half_step(plan.candidate["l3_bn"].__class__("u", [], [], []), folded.graph, None)
        == 0.0
    )

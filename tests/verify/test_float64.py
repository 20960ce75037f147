"""Issue 23, tolerance from the numbers: a tensor beyond ``atol + rtol*|ref|`` is judged
against a float64 run of the original, so an exact fold of an ill-conditioned BN (scales in
the hundreds) passes, while a 1 % change of the slice a fold wrote still fails at its site.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import numpy_helper

import bnfold
from bnfold.verify import truth, verify
from bnfold.verify.compare import compare_output, judge_by_float64
from tests.builders import verify_models as vm
from tests.builders.corrupt import corrupt_layer

pytestmark = pytest.mark.usefixtures("cpu_only_default")
SITES = ("bn0", "bn1", "bn2")


@pytest.fixture(scope="module")
def conditioned() -> tuple[object, object]:
    original = vm.conditioned_convnet()
    return original, bnfold.optimize(original).model


def test_exact_fold_of_large_scales_passes_by_the_float64_judge(conditioned) -> None:
    original, folded = conditioned
    for mode in ("folds", "all"):
        report = verify(original, folded, providers="cpu", levels="disable,all", sites=mode)
        assert report.exit_code == 0, report.summary_line()
        for result in report.providers:
            for name in SITES:
                judged = result.sites[name].float64
                # Before: beyond the plain allowance; the original is as far from float64.
                assert judged is not None and judged.allowance_used > 5, (name, judged)
                assert judged.candidate_error < judged.original_error
    data = json.loads(report.to_json())
    rows = data["float64_judge"]["judged"]
    assert {r["name"] for r in rows} >= set(SITES) and all(r["passed"] for r in rows)
    assert "float64 judge, cpu/all `bn0`" in report.to_markdown()


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("channel", [0, 5])
def test_a_wrong_slice_fails_at_its_site_even_against_float64(conditioned, site, channel) -> None:
    original, folded = conditioned
    report = verify(original, corrupt_layer(folded, site, channel=channel), providers="cpu")
    assert report.exit_code == 1, report.summary_line()
    result = report.providers[0]
    assert result.first_divergence == site, result.reason
    assert "even against float64" in (result.reason or "")
    judged = result.sites[site].float64
    assert judged is not None and judged.candidate_error > 2 * judged.allowed


def test_without_a_float64_truth_the_failure_stands(conditioned, monkeypatch) -> None:
    original, folded = conditioned
    monkeypatch.setattr(truth, "MAX_WEIGHT_BYTES", 0)
    report = verify(original, folded, providers="cpu", save_failing=False)
    assert report.exit_code == 1
    assert report.float64_unavailable and "MiB of weights" in report.float64_unavailable
    assert any("float64 judge not run" in line for line in report.float64_lines())


def test_the_rule_per_channel() -> None:
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((1, 2, 4, 4)) * 10
    noise = np.zeros_like(exact)
    noise[:, 0] = 1e-2  # channel 0: the original is 1e-2 off float64, channel 1 is exact
    ref = (exact + noise).astype(np.float32)
    closer = (exact + noise / 2).astype(np.float32)
    plain = compare_output("t", ref, closer)
    assert not plain.passed
    judged = judge_by_float64(plain, ref, closer, exact)
    assert judged.passed and judged.float64 is not None
    # A 1 % error in the exact channel is not hidden by channel 0's rounding.
    wrong = closer.copy()
    wrong[:, 1] *= 1.01
    judged = judge_by_float64(compare_output("t", ref, wrong), ref, wrong, exact)
    assert not judged.passed and judged.mismatched > 0


def test_the_truth_of_an_opset9_batchnorm_is_inference_mode() -> None:
    """onnx's reference BatchNormalization-9 takes batch statistics (its default momentum);
    the truth must be the inference BN onnxruntime runs, or it judges nothing."""
    from bnfold.runtime.inputs import generate_inputs, input_specs

    model = vm.conditioned_convnet(layers=1)
    model.opset_import[0].version = 9
    specs, _ = input_specs(model)
    feeds = generate_inputs(specs, 0, 0)
    values = truth.Float64Truth(model, None, [feeds]).values(0)
    assert values is not None
    c = values["conv0"]
    # In float64 like the truth: v + eps in float32 would round the scale the BN divides by.
    g, b, m, v = (numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer[2:6])
    expected = (c - m.reshape(1, -1, 1, 1)) / np.sqrt(v.reshape(1, -1, 1, 1) + 1e-9)
    expected = expected * g.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(values["bn0"], expected, rtol=1e-6, atol=1e-6)


def test_the_truth_reads_integer_tensors_left_in_the_file(tmp_path) -> None:
    """A model read from a file keeps its tensors of 4 KiB and more in the file, integer ones
    included (here a Gather's 2048 int64 indices); the float64 truth must read them, or the
    reference evaluator refuses the model and no exact fold gets the float64 judgement."""
    import onnx
    from onnx import TensorProto, helper

    from bnfold.runtime.inputs import generate_inputs, input_specs
    from bnfold.storage.load import load_model

    indices = np.arange(2048, dtype=np.int64) % 16
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2048])],
        [numpy_helper.from_array(indices, "idx")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "m.onnx")
    loaded = load_model(tmp_path / "m.onnx")
    assert loaded.model.graph.initializer[0].data_location == TensorProto.EXTERNAL
    specs, _ = input_specs(loaded.model)
    feeds = generate_inputs(specs, 0, 0)
    judge = truth.Float64Truth(loaded.model, loaded.base_dir, [feeds])
    values = judge.values(0)
    assert values is not None, judge.unavailable
    np.testing.assert_array_equal(values["y"], feeds["x"].astype(np.float64)[:, indices])

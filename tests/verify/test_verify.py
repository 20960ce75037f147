"""The verify() driver: verdicts, the unoptimized reference, provider truth, inputs, structure."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import bnfold
from bnfold.errors import ModelLoadError, ProviderUnavailable, UsageError, VerificationFailed
from bnfold.runtime import session as session_module
from bnfold.verify import StructureMismatch, verify
from tests.builders.verify_models import (
    ConvBN,
    embedding,
    make_model,
    matmul_transpose_bn,
    save,
    tensor,
    two_outputs,
    unary,
    with_changes,
)

pytestmark = pytest.mark.usefixtures("cpu_only_default")


def test_correct_fold_passes(conv_bn: ConvBN) -> None:
    report = verify(
        conv_bn.original(), conv_bn.folded(), levels="disable,basic,extended,all", runs=2
    )
    assert report.passed and report.exit_code == 0
    assert [(r.provider, r.level, r.status) for r in report.providers] == [
        ("cpu", level, "passed") for level in ("disable", "basic", "extended", "all")
    ]
    comparison = report.providers[0].outputs["y"]
    assert comparison.total == 2 * 4 * 8 * 8 and comparison.mismatched == 0
    assert 0 < comparison.max_abs_error < 1e-4  # not bit-exact, but close: a real comparison ran
    report.raise_for_status()  # no exception


def test_top_level_forwarder(conv_bn: ConvBN) -> None:
    assert bnfold.verify(conv_bn.original(), conv_bn.folded(), providers="cpu").passed


def test_corrupted_fold_fails_and_names_the_output(conv_bn: ConvBN) -> None:
    report = verify(conv_bn.original(), conv_bn.corrupted(1e-3), providers=["cpu"])
    assert not report.passed and report.exit_code == 1
    (result,) = report.providers
    assert result.status == "failed" and result.failing_run == 0
    assert report.failed_outputs() == ["y"]
    assert result.outputs["y"].mismatched > 0
    with pytest.raises(VerificationFailed, match="'y'"):
        report.raise_for_status()


def test_reference_is_cpu_with_all_optimizations_disabled(
    conv_bn: ConvBN, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, str]] = []
    real = session_module.create_session

    def spy(model: Any, provider: str, level: str, **kwargs: Any) -> Any:
        calls.append((kwargs.get("role", ""), provider, level))
        return real(model, provider, level, **kwargs)

    monkeypatch.setattr(sys.modules["bnfold.verify.runner"], "create_session", spy)
    verify(conv_bn.original(), conv_bn.folded(), providers="cpu", levels="basic,all")
    assert calls == [
        ("original", "cpu", "disable"),
        ("candidate", "cpu", "basic"),
        ("candidate", "cpu", "all"),
    ]


def test_an_optimized_reference_would_hide_this_wrong_fold() -> None:
    """onnxruntime's own MatMul->Transpose->BN fusion is wrong for square dims.

    The wrong fold computes exactly what onnxruntime computes for the original at BASIC, so
    only an unoptimized reference can catch it; the exact rewrite must still pass.
    """
    original = matmul_transpose_bn()
    wrong = matmul_transpose_bn(wrong_fold=True)
    report = verify(original, wrong, providers="cpu", levels="disable,all")
    assert [r.status for r in report.providers] == ["failed", "failed"]
    assert verify(
        original, matmul_transpose_bn(correct_fold=True), providers="cpu", levels="disable,all"
    ).passed

    # The premise: an optimized reference agrees with the wrong fold.
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    optimized = onnxruntime.InferenceSession(
        original.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    plain = onnxruntime.InferenceSession(
        wrong.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    if not np.allclose(optimized.run(None, {"x": x})[0], plain.run(None, {"x": x})[0], atol=1e-5):
        pytest.skip(
            "this onnxruntime no longer mis-fuses MatMul->Transpose->BN; the premise is gone"
        )


def test_outputs_matched_by_name_when_candidate_reorders_them() -> None:
    original = two_outputs(("sum", "prod"))
    report = verify(original, two_outputs(("prod", "sum")), providers="cpu")
    assert report.passed and set(report.providers[0].outputs) == {"sum", "prod"}

    wrong = verify(original, two_outputs(("prod", "sum"), scale=1.01), providers="cpu")
    assert wrong.failed_outputs() == ["prod"]
    assert wrong.providers[0].outputs["sum"].passed


def test_nan_in_the_same_places_passes_elsewhere_fails() -> None:
    original = unary("Log")  # negative inputs -> NaN on both sides
    same = verify(original, unary("Log"), providers="cpu")
    assert same.passed
    assert same.providers[0].outputs["y"].max_abs_error is not None

    moved = verify(original, unary("Log", pre_abs=True), providers="cpu")
    comparison = moved.providers[0].outputs["y"]
    assert not moved.passed and comparison.nonfinite_mismatched > 0


def test_runtime_shape_difference_fails() -> None:
    # Both declare y as [n]; the candidate's y is twice as long at run time.
    x, y = tensor("x", TensorProto.FLOAT, ["n"]), tensor("y", TensorProto.FLOAT, ["n"])
    original = make_model([helper.make_node("Identity", ["x"], ["y"])], [x], [y])
    doubled = make_model([helper.make_node("Concat", ["x", "x"], ["y"], axis=0)], [x], [y])
    report = verify(original, doubled, providers="cpu", dims={"n": 3})
    comparison = report.providers[0].outputs["y"]
    assert not report.passed and "shape [6] differs from reference [3]" in (comparison.reason or "")


def test_gather_indices_are_valid_so_the_original_runs() -> None:
    model = embedding(vocab=7)  # default integers [0, 10) would index out of range
    report = verify(model, model, providers="cpu", dims={"batch": 8}, runs=3)
    assert report.passed
    (spec,) = report.inputs
    assert (spec["low"], spec["high"]) == (0, 7) and spec["shape"] == [8, 5]


def test_dynamic_dims_from_options_and_default(conv_bn: ConvBN) -> None:
    report = verify(conv_bn.original(), conv_bn.folded(), providers="cpu", dims={"N": 3})
    assert report.inputs[0]["shape"] == [3, 3, 8, 8]
    assert report.providers[0].outputs["y"].shape == [3, 4, 8, 8]
    default = verify(conv_bn.original(), conv_bn.folded(), providers="cpu")
    assert default.inputs[0]["shape"] == [1, 3, 8, 8]
    assert any("N set to 1" in note for note in default.notes)


def test_inputs_from_npz_and_mapping(tmp_path: Path, conv_bn: ConvBN) -> None:
    data = {"x": np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    path = tmp_path / "real.npz"
    np.savez(path, **data)
    from_file = verify(conv_bn.original(), conv_bn.folded(), providers="cpu", inputs=path)
    assert from_file.passed and from_file.input_files == [str(path)] and from_file.seeds == []
    assert from_file.inputs[0]["shape"] == [2, 3, 8, 8]
    from_mapping = verify(
        conv_bn.original(), conv_bn.folded(), providers="cpu", inputs=[data, data]
    )
    assert from_mapping.passed and from_mapping.runs == 2


def test_failing_inputs_are_saved_and_reproduce_the_failure(
    tmp_path: Path, conv_bn: ConvBN
) -> None:
    original = save(conv_bn.original(), tmp_path / "original.onnx")
    corrupted = save(conv_bn.corrupted(), tmp_path / "corrupted.onnx")
    report = verify(original, corrupted, providers="cpu", runs=3, seed=11)
    assert report.failing_inputs == str(tmp_path / "corrupted.failing-inputs.npz")
    assert report.rerun_command is not None and "--inputs" in report.rerun_command
    with np.load(report.failing_inputs) as saved:
        np.testing.assert_array_equal(saved["x"].shape, (1, 3, 8, 8))
    again = verify(original, corrupted, providers="cpu", inputs=report.failing_inputs)
    assert not again.passed and again.failing_inputs == report.failing_inputs

    elsewhere = verify(original, corrupted, providers="cpu", save_failing=tmp_path / "fails")
    assert elsewhere.failing_inputs == str(tmp_path / "fails" / "corrupted.failing-inputs.npz")
    assert Path(elsewhere.failing_inputs).is_file()
    never = verify(original, corrupted, providers="cpu", save_failing=False)
    assert never.failing_inputs is None and never.rerun_command is None


def test_in_memory_candidate_failure_is_not_saved_without_a_folder(conv_bn: ConvBN) -> None:
    report = verify(conv_bn.original(), conv_bn.corrupted(), providers="cpu")
    assert report.failing_inputs is None
    assert any("not saved" in note for note in report.notes)


def test_original_that_fails_on_generated_inputs_is_a_usage_error() -> None:
    table = np.zeros((3, 2), np.float32)
    node = helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)
    model = make_model(
        [node],
        [tensor("ids", TensorProto.INT64, [4])],
        [tensor("y", TensorProto.FLOAT, [4, 2])],
        {"table": table},
    )
    with pytest.raises(UsageError, match="original model fails"):
        verify(model, model, providers="cpu", ranges={"ids": (5, 9)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rename_output": "z"}, "outputs differ from the original: missing 'y'; new 'z'"),
        ({"opset": 18}, "opset imports differ from the original: ai.onnx: 17 -> 18"),
        ({"ir_version": 9}, "IR version is 9"),
    ],
)
def test_structure_differences_raise_exit_3(conv_bn: ConvBN, change: dict, message: str) -> None:
    candidate = with_changes(conv_bn.folded(), **change)
    with pytest.raises(StructureMismatch, match=message) as caught:
        verify(conv_bn.original(), candidate, providers="cpu")
    assert isinstance(caught.value, ModelLoadError) and caught.value.exit_code == 3


def test_output_dtype_or_shape_declaration_change_is_structural(conv_bn: ConvBN) -> None:
    candidate = conv_bn.folded()
    candidate.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 9
    with pytest.raises(StructureMismatch, match="output 'y' has shape"):
        verify(conv_bn.original(), candidate, providers="cpu")
    cast = conv_bn.folded()
    cast.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    with pytest.raises(StructureMismatch, match="output 'y' is double"):
        verify(conv_bn.original(), cast, providers="cpu")


def test_checker_failure_is_structural(conv_bn: ConvBN) -> None:
    candidate = conv_bn.folded()
    # Valid node by node, but full_check's shape inference sees a 5x5 kernel give 6x6, not 8x8.
    candidate.graph.node[0].attribute.append(helper.make_attribute("kernel_shape", [5, 5]))
    with pytest.raises(StructureMismatch, match="fails the ONNX checker.*differ in dimension 2"):
        verify(conv_bn.original(), candidate, providers="cpu")


def test_dangling_input_in_candidate_is_exit_3(conv_bn: ConvBN) -> None:
    candidate = conv_bn.folded()
    candidate.graph.node[0].input[1] = "undefined_weight"
    with pytest.raises(ModelLoadError, match="undefined_weight") as caught:
        verify(conv_bn.original(), candidate, providers="cpu")
    assert caught.value.exit_code == 3


def test_checker_failure_shared_with_the_original_is_only_noted(conv_bn: ConvBN) -> None:
    # onnxruntime runs graph outputs without a shape; onnx's checker refuses them.
    original, candidate = conv_bn.original(), conv_bn.folded()
    for model in (original, candidate):
        model.graph.output[0].type.tensor_type.ClearField("shape")
    report = verify(original, candidate, providers="cpu")
    assert report.passed
    assert any("original fails the ONNX checker too" in note for note in report.notes)


def test_unloadable_model_is_exit_3(tmp_path: Path, conv_bn: ConvBN) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        verify(tmp_path / "missing.onnx", conv_bn.folded())
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError):
        verify(junk, conv_bn.folded())


def test_silent_cuda_fallback_never_passes(conv_bn: ConvBN, fake_cuda_fallback: list) -> None:
    report = verify(conv_bn.original(), conv_bn.folded(), providers="cpu,cuda")
    statuses = {r.provider: r.status for r in report.providers}
    assert statuses == {"cpu": "passed", "cuda": "unavailable"}
    assert not report.passed and report.exit_code == 4
    cuda = report.providers[1]
    assert cuda.actual_providers == ["CPUExecutionProvider"] and cuda.outputs == {}
    with pytest.raises(ProviderUnavailable, match="cuda/all"):
        report.raise_for_status()


def test_default_cuda_that_does_not_work_is_only_noted(conv_bn: ConvBN) -> None:
    report = verify(conv_bn.original(), conv_bn.folded())  # cpu_only_default: CUDA "broken"
    assert report.passed and [r.provider for r in report.providers] == ["cpu"]
    assert report.requested_providers is None
    assert "CUDA unavailable: no GPU in this test" in report.notes


def test_the_cuda_note_is_one_short_clause() -> None:
    from bnfold.runtime.session import brief_reason

    logged = (
        "onnxruntime built the session on CPUExecutionProvider instead of CUDAExecutionProvider:"
        " cannot load libonnxruntime_providers_cuda.so: libcublasLt.so.13: cannot open shared"
        " object file: No such file or directory; Require cuDNN 9.* and CUDA 13.*"
    )
    assert brief_reason(logged) == "libcublasLt.so.13 missing"
    assert brief_reason("this onnxruntime build has no CUDAExecutionProvider (install x)") == (
        "this onnxruntime build has none"
    )
    assert len(brief_reason("x" * 500)) == 60 and brief_reason(None) == "unknown reason"


def test_default_cuda_that_falls_back_late_does_not_fail_the_run(
    conv_bn: ConvBN, fake_cuda_fallback: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe said CUDA works, but the candidate's session still landed on CPU.
    monkeypatch.setattr(sys.modules["bnfold.verify"], "cuda_available", lambda: (True, None))
    report = verify(conv_bn.original(), conv_bn.folded())
    assert [(r.provider, r.status, r.requested) for r in report.providers] == [
        ("cpu", "passed", False),
        ("cuda", "unavailable", False),
    ]
    assert report.passed and report.exit_code == 0
    assert "unavailable (not requested)" in report.to_markdown()


def test_mismatch_wins_over_missing_provider(conv_bn: ConvBN, fake_cuda_fallback: list) -> None:
    report = verify(conv_bn.original(), conv_bn.corrupted(), providers="cpu,cuda")
    assert report.exit_code == 1


def test_candidate_crash_is_a_failure(conv_bn: ConvBN, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = session_module.run_session
    calls = {"n": 0}

    def crash_on_candidate(session: Any, feeds: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:  # the first call is the reference
            raise RuntimeError("CUDA failure 700: an illegal memory access")
        return real_run(session, feeds)

    monkeypatch.setattr(sys.modules["bnfold.verify.runner"], "run_session", crash_on_candidate)
    report = verify(conv_bn.original(), conv_bn.folded(), providers="cpu")
    (result,) = report.providers
    assert result.status == "failed" and "illegal memory access" in (result.reason or "")
    assert report.exit_code == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runs": 0},
        {"atol": -1.0},
        {"rtol": float("nan")},
        {"providers": "cpu,warp"},
        {"levels": "max"},
        {"inputs": []},
    ],
)
def test_bad_arguments_are_usage_errors(conv_bn: ConvBN, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        verify(conv_bn.original(), conv_bn.folded(), **kwargs)


def test_tolerance_override_is_used(conv_bn: ConvBN) -> None:
    loose = verify(conv_bn.original(), conv_bn.corrupted(1e-3), providers="cpu", atol=1.0, rtol=0.0)
    assert loose.passed and loose.providers[0].outputs["y"].atol == 1.0
    strict = verify(
        conv_bn.original(), conv_bn.folded(), providers="cpu", atol=0.0, rtol=0.0, levels="all"
    )
    # an exact fold is still not bit-exact: with zero tolerance it must fail
    assert not strict.passed


def test_external_data_candidate_by_path(tmp_path: Path, conv_bn: ConvBN) -> None:
    path = tmp_path / "folded_ext.onnx"
    onnx.save_model(
        conv_bn.folded(),
        path,
        save_as_external_data=True,
        location="folded_ext.data",
        size_threshold=0,
    )
    assert (tmp_path / "folded_ext.data").is_file()
    assert verify(conv_bn.original(), path, providers="cpu").passed


@pytest.mark.gpu
@pytest.mark.skipif(not session_module.cuda_available()[0], reason="CUDA is not really usable here")
def test_cuda_verification_on_a_real_gpu(conv_bn: ConvBN) -> None:
    report = verify(
        conv_bn.original(), conv_bn.folded(), providers="cpu,cuda", levels="disable,all"
    )
    assert report.passed, report.summary_line()
    assert {r.provider for r in report.providers} == {"cpu", "cuda"}
    assert verify(conv_bn.original(), conv_bn.corrupted(), providers="cuda").exit_code == 1


def test_provider_options_reach_the_session_by_short_or_full_name(
    conv_bn: ConvBN, fake_cuda_fallback: list
) -> None:
    options = {"CUDAExecutionProvider": {"device_id": 3}}
    verify(conv_bn.original(), conv_bn.folded(), providers="cuda", provider_options=options)
    cuda_calls = [c for c in fake_cuda_fallback if c["providers"][0] != "CPUExecutionProvider"]
    assert cuda_calls and cuda_calls[0]["providers"][0] == (
        "CUDAExecutionProvider",
        {"device_id": 3},
    )

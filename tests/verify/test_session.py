"""Sessions: name parsing, optimization levels, provider truth, option plumbing, bfloat16."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from bnfold.errors import ModelLoadError, UsageError
from bnfold.runtime import session
from bnfold.runtime.session import (
    LEVELS,
    create_session,
    cuda_available,
    default_providers,
    parse_levels,
    parse_providers,
    run_session,
    session_options,
    summarize_ort_log,
)
from tests.builders.verify_models import ConvBN, make_model, tensor


def test_parse_providers_short_full_and_alias_names() -> None:
    assert parse_providers(None) is None
    assert parse_providers("cpu,cuda") == ["cpu", "cuda"]
    assert parse_providers(" CUDA , cpu ,cuda") == ["cuda", "cpu"]
    assert parse_providers("TensorrtExecutionProvider,trt,rocm") == ["tensorrt", "rocm"]
    assert parse_providers("CPUExecutionProvider") == ["cpu"]
    assert parse_providers("VitisAIExecutionProvider") == ["VitisAIExecutionProvider"]


@pytest.mark.parametrize("text", ["", " , ", "gpu0", "cuda,nvidia"])
def test_parse_providers_rejects_unknown(text: str) -> None:
    with pytest.raises(UsageError):
        parse_providers(text)


def test_parse_levels() -> None:
    assert parse_levels("all") == ["all"]
    assert parse_levels("disable, basic,extended,all,basic") == [
        "disable",
        "basic",
        "extended",
        "all",
    ]
    assert parse_levels("ORT_ENABLE_BASIC") == ["basic"]
    assert parse_levels(["disable", "all"]) == ["disable", "all"]
    with pytest.raises(UsageError):
        parse_levels("fast")
    with pytest.raises(UsageError):
        parse_levels("")


def test_levels_map_to_onnxruntime_enums() -> None:
    assert set(LEVELS) == {"disable", "basic", "extended", "all"}
    for name, attribute in LEVELS.items():
        expected = getattr(onnxruntime.GraphOptimizationLevel, attribute)
        assert session_options(name).graph_optimization_level == expected
    assert session_options("disable", threads=1).intra_op_num_threads == 1


def test_cpu_session_is_ok_and_reports_real_providers(conv_bn: ConvBN) -> None:
    result = create_session(conv_bn.original(), "cpu", "disable")
    assert result.status == "ok" and result.reason is None
    assert result.actual_providers[0] == "CPUExecutionProvider"
    assert result.session is not None and result.create_ms > 0
    outputs = run_session(result.session, {"x": np.ones((1, 3, 8, 8), np.float32)})
    assert list(outputs) == ["y"] and outputs["y"].shape == (1, 4, 8, 8)


def test_silent_cpu_fallback_is_unavailable_with_reason(
    conv_bn: ConvBN, fake_cuda_fallback: list
) -> None:
    result = create_session(conv_bn.original(), "cuda", "all")
    assert result.status == "unavailable"
    assert result.session is None
    assert result.actual_providers == ["CPUExecutionProvider"]
    assert "instead of CUDAExecutionProvider" in (result.reason or "")
    assert "libcudart.so.13" in (result.reason or "")  # the captured library error


def test_cuda_provider_options_are_passed(conv_bn: ConvBN, fake_cuda_fallback: list) -> None:
    create_session(conv_bn.original(), "cuda", "basic")
    create_session(
        conv_bn.original(),
        "cuda",
        "basic",
        provider_options={"device_id": 1, "arena_extend_strategy": "kSameAsRequested"},
    )
    first, second = fake_cuda_fallback[0], fake_cuda_fallback[1]
    assert first["providers"] == [
        ("CUDAExecutionProvider", {"device_id": 0}),
        "CPUExecutionProvider",
    ]
    assert second["providers"][0] == (
        "CUDAExecutionProvider",
        {"device_id": 1, "arena_extend_strategy": "kSameAsRequested"},
    )
    assert first["kwargs"].get("enable_fallback") == 0
    expected = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert first["options"].graph_optimization_level == expected


def test_provider_missing_from_build_is_unavailable(conv_bn: ConvBN) -> None:
    if "CoreMLExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has CoreML")
    result = create_session(conv_bn.original(), "coreml", "all")
    assert result.status == "unavailable"
    assert "not in this onnxruntime build" in (result.reason or "")


def test_provider_start_failure_is_unavailable(
    conv_bn: ConvBN, monkeypatch: pytest.MonkeyPatch
) -> None:
    class EPFail(Exception):
        pass

    def failing_session(*args: Any, **kwargs: Any) -> Any:
        raise EPFail(
            "TensorRT EP could not be created: libnvinfer.so.10: cannot open shared object file"
        )

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", failing_session)
    result = create_session(conv_bn.original(), "tensorrt", "all")
    assert result.status == "unavailable"
    assert "libnvinfer" in (result.reason or "")


def test_broken_model_is_a_model_error_not_unavailable() -> None:
    node = helper.make_node("Conv", ["x", "W"], ["y"])  # W is never defined
    graph = helper.make_graph(
        [node],
        "bad",
        [tensor("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [tensor("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load the candidate"):
        create_session(model, "cpu", "all", role="candidate")


def test_summarize_ort_log_keeps_library_and_requirement() -> None:
    log = (
        "\x1b[1;31m2026-11-22 02:04:12.929 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
        "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& "
        "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
        "/venv/onnxruntime/capi/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open "
        "shared object file: No such file or directory\n\x1b[m\n"
        "\x1b[0;93m2026-11-22 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:1295 "
        "CreateExecutionProviderFactoryInstance] Failed to create CUDAExecutionProvider. Require cuDNN 9.* "
        "and CUDA 13.*. Please install all dependencies as mentioned in the GPU requirements page\x1b[m\n"
    )
    summary = summarize_ort_log(log)
    assert summary is not None
    assert "cannot load libonnxruntime_providers_cuda.so: libcublasLt.so.13" in summary
    assert "Require cuDNN 9.* and CUDA 13.*" in summary
    assert "\x1b" not in summary
    assert summarize_ort_log("nothing to see") is None


def test_default_providers_add_cuda_only_when_it_really_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session, "cuda_available", lambda: (False, "no GPU"))
    assert default_providers() == ["cpu"]
    monkeypatch.setattr(session, "cuda_available", lambda: (True, None))
    assert default_providers() == ["cpu", "cuda"]


def test_cuda_probe_sees_through_the_silent_fallback(fake_cuda_fallback: list) -> None:
    session.probe_provider.cache_clear()
    try:
        works, reason = cuda_available()
    finally:
        session.probe_provider.cache_clear()  # do not leak the fake answer to other tests
    assert works is False
    assert "instead of CUDAExecutionProvider" in (reason or "")


def test_bfloat16_in_and_out() -> None:
    inputs = [tensor("x", TensorProto.BFLOAT16, [3])]
    outputs = [tensor("y", TensorProto.BFLOAT16, [3]), tensor("z", TensorProto.FLOAT, [3])]
    nodes = [
        helper.make_node("Identity", ["x"], ["y"]),
        helper.make_node("Cast", ["x"], ["z"], to=TensorProto.FLOAT),
    ]
    model = make_model(nodes, inputs, outputs)
    result = create_session(model, "cpu", "disable")
    assert result.session is not None
    x = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    out = run_session(result.session, {"x": x})
    assert out["y"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(out["y"].astype(np.float32), x.astype(np.float32))
    np.testing.assert_array_equal(out["z"], x.astype(np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available()[0], reason="CUDA is not really usable here")
def test_cuda_session_really_runs_on_cuda(conv_bn: ConvBN) -> None:
    result = create_session(conv_bn.folded(), "cuda", "all")
    assert result.status == "ok", result.reason
    assert result.actual_providers[0] == "CUDAExecutionProvider"

"""Plugin providers, same-provider comparison and provider drift, --provider-option.

No GPU here and the OpenVINO plugin finds no device on this machine's CPU, so the comparison
logic is tested with a fake provider whose kernels drift by 0.45 % (what the issue measured
for OpenVINO on resnet_tiny); the real OpenVINO test runs where the plugin has a device.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

import bnfold
from bnfold.cli import main
from bnfold.errors import UsageError
from bnfold.runtime.providers import parse_provider_options, plugin_installed
from bnfold.verify import verify
from tests.builders.corrupt import corrupt_layer

MODELS = Path(__file__).resolve().parents[2] / "models"
DRIFT = 4.5e-3


class DriftingSession:
    """A CPU session that says it runs on CUDA and scales every float output by 1 + DRIFT."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def run(self, names: Any, feeds: Any) -> list[Any]:
        return [
            (v * np.float32(1 + DRIFT)).astype(v.dtype) if v.dtype.kind == "f" else v
            for v in self._real.run(names, feeds)
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def drifting_cuda(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    real_session = onnxruntime.InferenceSession
    calls: list[Any] = []

    def fake(model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any) -> Any:
        calls.append(providers)
        session = real_session(model, sess_options, providers=["CPUExecutionProvider"])
        first = providers[0] if providers else None
        name = first[0] if isinstance(first, tuple) else first
        return DriftingSession(session) if name == "CUDAExecutionProvider" else session

    monkeypatch.setattr(onnxruntime, "InferenceSession", fake)
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    return calls


def test_exact_fold_passes_on_a_drifting_provider_and_drift_is_reported(
    drifting_cuda: list[Any],
) -> None:
    original = onnx.load(MODELS / "resnet_tiny.onnx")
    folded = bnfold.optimize(original).model
    report = verify(original, folded, providers="cpu,cuda", levels="disable,all")
    assert report.passed, report.summary_line()
    entry = report.drift["cuda"]
    assert entry["status"] == "measured"
    worst = max(c.max_rel_error or 0.0 for c in entry["outputs"].values())
    assert worst == pytest.approx(DRIFT, rel=0.05)
    # Against the CPU reference the same exact fold would have failed: that is the drift.
    assert max(c.tolerance_used or 0.0 for c in entry["sites"].values()) > 1
    text = report.to_markdown() + str(report.to_dict()["provider_drift"])
    assert "provider drift cuda" in text and "not a fold failure" in text


def test_wrong_fold_fails_on_the_drifting_provider_at_its_site(drifting_cuda: list[Any]) -> None:
    original = onnx.load(MODELS / "resnet_tiny.onnx")
    folded = bnfold.optimize(original).model
    site = next(n.output[0] for n in original.graph.node if n.op_type == "BatchNormalization")
    report = verify(
        original, corrupt_layer(folded, site), providers="cuda", levels="all", save_failing=False
    )
    (result,) = report.providers
    assert result.status == "failed" and result.first_divergence == site


def test_provider_option_parsing_and_cli(
    tmp_path: Path, drifting_cuda: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_provider_options(["cuda:use_tf32=0", "cuda:device_id=1"]) == {
        "cuda": {"use_tf32": "0", "device_id": "1"}
    }
    for bad in ("cuda", "cuda:use_tf32", ":x=1"):
        with pytest.raises(UsageError, match="PROVIDER:KEY=VALUE"):
            parse_provider_options([bad])
    original = onnx.load(MODELS / "mlp_bn.onnx")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(original, a)
    onnx.save(bnfold.optimize(original).model, b)
    result = CliRunner().invoke(
        main,
        ["verify", str(a), str(b), "--providers", "cuda", "--provider-option", "cuda:use_tf32=0"],
    )
    assert result.exit_code == 0, result.output
    cuda_calls = [p for p in drifting_cuda if p and isinstance(p[0], tuple)]
    assert cuda_calls and all(p[0][1].get("use_tf32") == "0" for p in cuda_calls)


def test_openvino_is_a_known_plugin_with_provider_truth() -> None:
    """Installed or not, with or without a device: passed, or unavailable (exit 4) with why."""
    original = onnx.load(MODELS / "mlp_bn.onnx")
    folded = bnfold.optimize(original).model
    report = verify(original, folded, providers="openvino")
    (result,) = report.providers
    if result.status == "unavailable":
        assert report.exit_code == 4
        assert "OpenVINOExecutionProvider (plugin)" in (result.reason or "")
        if not plugin_installed("openvino"):
            assert "bnfold[openvino]" in (result.reason or "")
    else:
        assert (
            result.status == "passed" and result.actual_providers[0] == "OpenVINOExecutionProvider"
        )


def _openvino_runs() -> str | None:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "the OpenVINO plugin is installed by CI on Linux x86_64 only"
    if not plugin_installed("openvino"):
        return "onnxruntime-ep-openvino is not installed (pip install 'bnfold[openvino]')"
    from bnfold.runtime.session import probe_provider

    ok, reason = probe_provider("openvino")
    return None if ok else f"OpenVINO does not run here: {reason}"


@pytest.mark.parametrize("name", ["resnet_tiny.onnx", "unet_tiny.onnx", "mlp_bn.onnx"])
@pytest.mark.slow
def test_openvino_same_provider_verdict(name: str) -> None:
    reason = _openvino_runs()
    if reason:
        pytest.skip(reason)
    original = onnx.load(MODELS / name)
    folded = bnfold.optimize(original).model
    report = verify(original, folded, providers="cpu,openvino", levels="disable,all")
    assert report.passed, report.summary_line()
    assert report.drift["openvino"]["status"] == "measured"
    site = next(n.output[0] for n in original.graph.node if n.op_type == "BatchNormalization")
    wrong = verify(
        original,
        corrupt_layer(folded, site),
        providers="openvino",
        levels="all",
        save_failing=False,
    )
    assert wrong.exit_code == 1


class RecordingOptions:
    """Stands in for ``SessionOptions`` where a plugin's devices are added."""

    def __init__(self, real: Any) -> None:
        self.real, self.devices, self.options = real, None, None

    def add_provider_for_devices(self, devices: Any, options: Any) -> None:
        self.devices, self.options = devices, options

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("really_used", [True, False])
def test_plugin_path_registers_adds_devices_and_checks_truth(
    monkeypatch: pytest.MonkeyPatch, really_used: bool
) -> None:
    """A plugin with a device: string options go to add_provider_for_devices, no providers
    list is passed, and a session that is not really on the plugin is 'unavailable'."""
    from bnfold.runtime import session as session_module

    recorded: dict[str, Any] = {}
    real_options = session_module.session_options
    real_session = onnxruntime.InferenceSession
    fake_device = object()

    def options(*args: Any, **kwargs: Any) -> RecordingOptions:
        recorded["options"] = RecordingOptions(real_options(*args, **kwargs))
        return recorded["options"]

    class PluginSession(DriftingSession):
        def get_providers(self) -> list[str]:
            return ["OpenVINOExecutionProvider", "CPUExecutionProvider"]

    def make(model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any) -> Any:
        recorded["providers"] = providers
        session = real_session(model, sess_options.real, providers=["CPUExecutionProvider"])
        # really_used=False: onnxruntime put the whole session on CPU.
        return PluginSession(session) if really_used else session

    monkeypatch.setattr(session_module, "register_plugin", lambda short: (True, None))
    monkeypatch.setattr(session_module, "plugin_devices", lambda full: [fake_device])
    monkeypatch.setattr(session_module, "session_options", options)
    monkeypatch.setattr(onnxruntime, "InferenceSession", make)
    attempt = session_module.create_session(
        str(MODELS / "mlp_bn.onnx"), "openvino", "all", provider_options={"num_of_threads": 2}
    )
    assert recorded["providers"] is None
    assert recorded["options"].devices == [fake_device]
    options_given = recorded["options"].options
    assert options_given["num_of_threads"] == "2"  # string options, the caller's kept
    # The model's own precision unless the caller says otherwise (OpenVINO's CPU default is
    # bfloat16 on CPUs with bf16 units).
    assert '"INFERENCE_PRECISION_HINT": "f32"' in options_given["load_config"]
    if really_used:
        assert attempt.status == "ok" and attempt.actual_providers[0] == "OpenVINOExecutionProvider"
    else:
        assert attempt.status == "unavailable"
        assert "instead of OpenVINOExecutionProvider" in (attempt.reason or "")


def test_plugin_not_installed_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from bnfold.runtime import providers

    monkeypatch.setitem(providers.PLUGINS, "openvino", ("no_such_plugin_pkg", "pip install x"))
    providers.register_plugin.cache_clear()
    try:
        ok, reason = providers.register_plugin("openvino")
    finally:
        providers.register_plugin.cache_clear()
    assert not ok and "no_such_plugin_pkg" in (reason or "") and "pip install x" in (reason or "")

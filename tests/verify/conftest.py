"""Fixtures for the verify tests; the models themselves live in ``tests/builders/verify_models.py``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest

from tests.builders.verify_models import ConvBN


@pytest.fixture
def conv_bn() -> ConvBN:
    return ConvBN()


@pytest.fixture
def conv_bn_files(tmp_path: Path, conv_bn: ConvBN) -> dict[str, Path]:
    """original.onnx, folded.onnx, corrupted.onnx in a temporary folder."""
    paths = {name: tmp_path / f"{name}.onnx" for name in ("original", "folded", "corrupted")}
    onnx.save(conv_bn.original(), paths["original"])
    onnx.save(conv_bn.folded(), paths["folded"])
    onnx.save(conv_bn.corrupted(), paths["corrupted"])
    return paths


@pytest.fixture
def cpu_only_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default provider set = CPU only, as on a machine without a working GPU."""
    from bnfold.runtime import session

    monkeypatch.setattr(session, "cuda_available", lambda: (False, "no GPU in this test"))
    # The module, not ``bnfold.verify`` the function; imported here so the fixture also works
    # in a run where no earlier test imported it (``pytest tests/verify/test_cli.py``).
    verify_module = importlib.import_module("bnfold.verify")
    monkeypatch.setattr(verify_module, "cuda_available", lambda: (False, "no GPU in this test"))


@pytest.fixture
def fake_cuda_fallback(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """onnxruntime-gpu on a GPU-less machine: CUDA is listed, the session silently runs on CPU.

    Returns the list of ``InferenceSession`` calls (providers and options) for assertions.
    """
    real_session = onnxruntime.InferenceSession
    calls: list[dict[str, Any]] = []

    def fake_session(
        model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any
    ) -> Any:
        calls.append({"providers": providers, "options": sess_options, "kwargs": kwargs})
        if providers and providers[0] != "CPUExecutionProvider":
            print(
                "Failed to load library libonnxruntime_providers_cuda.so with error: libcudart.so.13: cannot open"
            )
        return real_session(model, sess_options, providers=["CPUExecutionProvider"])

    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "InferenceSession", fake_session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    return calls

"""Fixtures for the bench tests; the models live in ``tests/builders/bench_models.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest

from bnfold.bench import BenchReport, bench
from tests.builders.bench_models import QUICK, fast_model, slow_model


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fast.onnx (one Add) and slow.onnx (about 40x slower) in a temporary folder."""
    folder = tmp_path_factory.mktemp("bench_models")
    paths = {"fast": folder / "fast.onnx", "slow": folder / "slow.onnx"}
    onnx.save(fast_model(), paths["fast"])
    onnx.save(slow_model(), paths["slow"])
    return paths


@pytest.fixture(scope="session")
def slow_report(model_files: dict[str, Path]) -> BenchReport:
    """fast (original) vs slow (candidate) on CPU at two levels and two batch sizes."""
    return bench(
        model_files["fast"],
        model_files["slow"],
        providers="cpu",
        levels="disable,all",
        batches=[1, 2],
        **QUICK,
    )


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """onnxruntime-gpu on a GPU-less machine: CUDA is listed as available, but the session
    it builds runs on CPU only (its get_providers() lacks CUDAExecutionProvider).

    Returns the provider lists onnxruntime was asked for, one per session created.
    """
    real_session = onnxruntime.InferenceSession
    requested: list[list[Any]] = []

    def cpu_session(
        model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any
    ) -> Any:
        requested.append(list(providers or []))
        return real_session(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", cpu_session)
    return requested

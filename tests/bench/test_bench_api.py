"""``bnfold.bench.bench()`` end to end on tiny CPU models.

The only timing claims are verdicts with a huge margin: the slow candidate is about 40x
slower than the original, so ``slower`` cannot flake.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bnfold
from bnfold.bench import BenchReport, bench
from bnfold.errors import CandidateSlower, ModelLoadError, ProviderUnavailable, UsageError
from tests.builders.bench_models import (
    QUICK,
    QUICK_SAMPLES,
    batchnorm_model,
    fast_model,
    folded_batchnorm_model,
    slow_model,
    two_input_model,
)


def test_much_slower_candidate_is_reported_slower(slow_report: BenchReport) -> None:
    assert len(slow_report.comparisons) == 4  # 2 levels x 2 batch sizes
    for comparison in slow_report.comparisons:
        assert comparison.verdict == "slower"
        assert comparison.estimate.ci_high < 0.5
        assert comparison.candidate_ms > comparison.original_ms
    assert slow_report.failure() is None  # no --fail-if-slower: a verdict, not an error
    assert slow_report.exit_code == 0


def test_one_result_per_model_and_setting(slow_report: BenchReport) -> None:
    keys = [(r.model, r.provider, r.level, r.batch) for r in slow_report.results]
    assert keys == [
        (model, "cpu", level, batch)
        for level in ("disable", "all")
        for batch in (1, 2)
        for model in ("original", "candidate")
    ]
    for result in slow_report.results:
        assert result.status == "ok"
        assert result.actual_providers[0] == "CPUExecutionProvider"
        assert result.latency is not None and result.latency.samples == QUICK_SAMPLES
        assert result.samples_ms is not None and len(result.samples_ms) == QUICK_SAMPLES
        assert result.session_create_ms is not None and result.session_create_ms > 0
        assert result.first_run_ms is not None and result.first_run_ms > 0
        assert (
            result.latency.min_ms
            <= result.latency.p50_ms
            <= result.latency.p90_ms
            <= result.latency.p99_ms
        )


def test_batch_sweep_sets_the_symbolic_first_dimension(slow_report: BenchReport) -> None:
    assert slow_report.inputs == [
        {"batch": 1, "inputs": {"x": {"dtype": "float32", "shape": [1, 16]}}},
        {"batch": 2, "inputs": {"x": {"dtype": "float32", "shape": [2, 16]}}},
    ]
    assert any("--batch sets dimension 0 of 'x'" in note for note in slow_report.input_notes)


def test_model_facts_from_files(slow_report: BenchReport, model_files: dict[str, Path]) -> None:
    facts = slow_report.model_facts()
    assert facts["original"].file_size_bytes == model_files["fast"].stat().st_size
    assert facts["candidate"].file_size_bytes == model_files["slow"].stat().st_size
    assert facts["original"].node_count == 1
    assert facts["candidate"].node_count == 102
    assert facts["original"].batchnorm_count == 0


def test_batchnorm_count_and_in_memory_size() -> None:
    original, candidate = batchnorm_model(), folded_batchnorm_model()
    report = bench(original, candidate, providers="cpu", levels="disable", **QUICK)
    facts = report.model_facts()
    assert (facts["original"].node_count, facts["original"].batchnorm_count) == (1, 1)
    assert (facts["candidate"].node_count, facts["candidate"].batchnorm_count) == (2, 0)
    assert facts["original"].file_size_bytes == original.ByteSize()
    assert facts["candidate"].file_size_bytes == candidate.ByteSize()
    assert report.original == "<in-memory original>"
    assert report.comparisons[0].batch == 1  # the symbolic N defaults to 1


def test_fail_if_slower_trips_on_a_huge_slowdown() -> None:
    report = bench(
        fast_model(), slow_model(), providers="cpu", levels="disable", fail_if_slower=50, **QUICK
    )
    error = report.failure()
    assert isinstance(error, CandidateSlower)
    assert error.exit_code == 5
    assert "cpu/disable" in str(error)
    with pytest.raises(CandidateSlower):
        report.raise_for_status()


def test_fail_if_slower_stays_quiet_when_the_candidate_is_faster() -> None:
    report = bench(
        slow_model(), fast_model(), providers="cpu", levels="disable", fail_if_slower=0, **QUICK
    )
    assert report.comparisons[0].verdict == "faster"
    assert report.failure() is None


def test_rounds_adapt_to_the_latency_within_min_time() -> None:
    report = bench(
        fast_model(), fast_model(), providers="cpu", levels="disable", min_time=0.2, pairs=2
    )
    comparison = report.comparisons[0]
    # A microsecond model gets far more than the 5-round floor in 0.1 s per pair.
    assert comparison.rounds_per_pair > 200
    assert comparison.timed_seconds_per_pair == pytest.approx(0.1)  # --min-time / --pairs
    assert report.settings["min_time"] == 0.2
    assert report.settings["rounds"] is None


def test_given_inputs_are_used(tmp_path: Path) -> None:
    path = tmp_path / "inputs.npz"
    np.savez(path, x=np.ones((3, 16), np.float32))
    report = bench(
        fast_model(), fast_model(), providers="cpu", levels="disable", inputs=path, **QUICK
    )
    assert report.inputs == [{"batch": 3, "inputs": {"x": {"dtype": "float32", "shape": [3, 16]}}}]


def test_progress_sink_follows_each_setting() -> None:
    events: list[tuple[Any, ...]] = []

    class Recorder:
        def begin(self, label: str, total: float, unit: str) -> None:
            events.append(("begin", label, total, unit))

        def update(self, completed: float) -> None:
            events.append(("update", completed))

        def end(self) -> None:
            events.append(("end",))

    bench(
        fast_model(),
        fast_model(),
        providers="cpu",
        levels="disable,all",
        progress=Recorder(),
        **QUICK,
    )
    begins = [e[1] for e in events if e[0] == "begin"]
    assert begins == ["cpu/disable", "cpu/all"]
    assert {e[3] for e in events if e[0] == "begin"} == {"s"}  # the setting's share, seconds
    assert events.count(("end",)) == 2
    updates = [e[1] for e in events if e[0] == "update"]
    assert updates == sorted(updates[: len(updates) // 2]) + sorted(updates[len(updates) // 2 :])


def test_unavailable_default_cuda_is_a_row_not_an_error(
    monkeypatch: pytest.MonkeyPatch, fake_cuda: list[list[Any]]
) -> None:
    """Default providers include CUDA, onnxruntime lists it, but the session runs on CPU."""
    bench_module = importlib.import_module("bnfold.bench")
    monkeypatch.setattr(bench_module, "default_providers", lambda: ["cpu", "cuda"])
    report = bench(fast_model(), fast_model(), levels="disable", **QUICK)
    assert any(
        p and isinstance(p[0], tuple) and p[0][0] == "CUDAExecutionProvider" for p in fake_cuda
    )
    assert [(u.provider, u.level, u.explicit) for u in report.unavailable] == [
        ("cuda", "disable", False)
    ]
    assert "CPUExecutionProvider instead of CUDAExecutionProvider" in report.unavailable[0].reason
    cuda_rows = [r for r in report.results if r.provider == "cuda"]
    assert [r.status for r in cuda_rows] == ["unavailable", "unavailable"]
    assert all(r.latency is None for r in cuda_rows)
    assert [c.provider for c in report.comparisons] == ["cpu"]  # never a CPU number labelled CUDA
    assert report.failure() is None


def test_explicitly_requested_unavailable_provider_fails_with_exit_4(
    fake_cuda: list[list[Any]],
) -> None:
    report = bench(fast_model(), fast_model(), providers="cpu,cuda", levels="disable", **QUICK)
    error = report.failure()
    assert isinstance(error, ProviderUnavailable)
    assert error.exit_code == 4
    assert report.exit_code == 4
    assert [c.provider for c in report.comparisons] == ["cpu"]


def test_top_level_bnfold_bench_forwards() -> None:
    importlib.import_module("bnfold.bench")  # importing the package must not break bnfold.bench()
    report = bnfold.bench(fast_model(), fast_model(), providers="cpu", levels="disable", **QUICK)
    assert isinstance(report, BenchReport)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"iters": 0}, "iters"),
        ({"pairs": 1}, "pairs"),
        ({"margin": 100}, "margin"),
        ({"margin": -1}, "margin"),
        ({"cpus": "0-x"}, "cpus"),
        ({"cpus": "100000"}, "cpus"),
        ({"inter_threads": -1}, "inter_threads"),
        ({"fail_if_slower": 100}, "fail-if-slower"),
        ({"levels": "fastest"}, "optimization level"),
        ({"providers": "abacus"}, "execution provider"),
        ({"batches": "1,zero"}, "--batch"),
        ({"threads": -2}, "threads"),
        ({"confidence": 1.5}, "confidence"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        bench(fast_model(), fast_model(), **options)


def test_batch_needs_a_symbolic_first_dimension() -> None:
    with pytest.raises(UsageError, match="symbolic"):
        bench(fast_model(batch=1), fast_model(batch=1), providers="cpu", batches=[1, 8])


def test_batch_and_inputs_file_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "inputs.npz"
    np.savez(path, x=np.ones((3, 16), np.float32))
    with pytest.raises(UsageError, match="--inputs"):
        bench(fast_model(), fast_model(), providers="cpu", batches="1,2", inputs=path)


def test_candidate_with_other_inputs_is_refused() -> None:
    with pytest.raises(UsageError, match="'z'|z"):
        bench(fast_model(), two_input_model(), providers="cpu", **QUICK)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        bench(tmp_path / "nope.onnx", fast_model(), providers="cpu")


def test_fail_if_slower_alone_uses_the_margin() -> None:
    report = bench(
        fast_model(), slow_model(), providers="cpu", levels="disable", fail_if_slower=True, **QUICK
    )
    assert report.fail_if_slower_pct == report.margin * 100 == 3.0
    assert isinstance(report.failure(), CandidateSlower)


def _recording_sessions(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every session bench creates (role and options), then create it for real."""
    measure = importlib.import_module("bnfold.bench.measure")
    real = measure.create_session
    calls: list[dict[str, Any]] = []

    def recording(model: Any, provider: str, level: str, **kwargs: Any) -> Any:
        calls.append({"level": level, **kwargs})
        return real(model, provider, level, **kwargs)

    monkeypatch.setattr(measure, "create_session", recording)
    return calls


def test_each_pair_creates_fresh_sessions_in_alternating_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _recording_sessions(monkeypatch)
    report = bench(fast_model(), fast_model(), providers="cpu", levels="disable", **QUICK)
    assert [c["role"] for c in calls] == [
        "original",
        "candidate",
        "candidate",
        "original",
        "original",
        "candidate",
    ]
    comparison = report.comparisons[0]
    assert comparison.estimate.pairs == 3
    assert len(comparison.pair_speedups) == 3
    assert comparison.rounds_per_pair == 20


def test_threads_spinning_and_cpus_reach_the_sessions_and_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _recording_sessions(monkeypatch)
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    measure = importlib.import_module("bnfold.bench.measure")
    real_session = measure.create_session

    def pinned_check(*args: Any, **kwargs: Any) -> Any:
        seen.append(os.sched_getaffinity(0))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(measure, "create_session", pinned_check)
    first_cpu = min(before)
    report = bench(
        fast_model(),
        fast_model(),
        providers="cpu",
        levels="disable",
        pairs=2,
        iters=20,
        threads=1,
        inter_threads=1,
        spinning=False,
        cpus=str(first_cpu),
    )
    assert os.sched_getaffinity(0) == before  # restored
    assert seen and all(cpus == {first_cpu} for cpus in seen)
    assert {(c["threads"], c["inter_threads"], c["spinning"]) for c in calls} == {(1, 1, False)}
    assert report.settings["threads"] == {
        "intra_op_threads": 1,
        "inter_op_threads": 1,
        "spinning": False,
        "cpus": [first_cpu],
    }
    assert f"pinned to CPUs {first_cpu}" in report.settings["threads_text"]
    assert "spinning off" in report.settings["threads_text"]


def test_sessions_do_not_spin_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions run in turn: the idle one's spinning workers would take the timed one's
    cores, so bench turns spinning off by default and says so; ``spinning=True`` (and None,
    onnxruntime's own default) reach the sessions as given."""
    calls = _recording_sessions(monkeypatch)
    report = bench(fast_model(), fast_model(), providers="cpu", levels="disable", **QUICK)
    assert calls and {c["spinning"] for c in calls} == {False}
    assert "spinning off" in report.settings["threads_text"]
    for asked in (True, None):
        calls.clear()
        bench(
            fast_model(), fast_model(), providers="cpu", levels="disable", spinning=asked, **QUICK
        )
        assert {c["spinning"] for c in calls} == {asked}


def test_calibrate_times_the_original_against_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recording_sessions(monkeypatch)
    report = bench(
        fast_model(), slow_model(), providers="cpu", levels="disable", calibrate=True, **QUICK
    )
    roles = [c["role"] for c in calls]
    assert roles[:6] == [
        "original",
        "candidate",
        "original (A/A)",
        "original (A/A)",
        "candidate",
        "original",
    ]
    comparison = report.comparisons[0]
    assert comparison.verdict == "slower"
    calibration = comparison.calibration
    # What calibration records, not how fast this machine was (no timing is asserted: three
    # pairs of a sub-millisecond model under load can land anywhere).
    assert calibration is not None and calibration.pairs == 3
    assert calibration.speedup > 0
    assert report.noise_lines()[0].startswith("cpu/disable/batch 1: A/A ")


def test_real_aa_run_of_a_bundled_model_gives_no_verdict(tmp_path: Path) -> None:
    """The bundled MLP against a copy with other bytes (a doc_string): the same graph. A
    short run must not call it faster or slower; equivalent or inconclusive are honest."""
    import onnx

    source = Path(__file__).parents[2] / "models" / "mlp_bn.onnx"
    twin = onnx.load(source)
    twin.doc_string = "same graph, different bytes"
    twin_path = tmp_path / "twin.onnx"
    onnx.save(twin, twin_path)
    assert twin_path.read_bytes() != source.read_bytes()
    report = bench(source, twin_path, providers="cpu", levels="all", pairs=4, min_time=0.4)
    comparison = report.comparisons[0]
    assert comparison.estimate.pairs == 4
    assert comparison.verdict in ("equivalent", "inconclusive"), report.summary_line()
    assert "pairs vary" in report.noise_lines()[0]

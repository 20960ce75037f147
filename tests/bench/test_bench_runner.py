"""The timing loop and the IOBinding plumbing (on CPU; the CUDA path with a fake onnxruntime)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime
import pytest

from bnfold.bench.runner import (
    RoundPlan,
    binding_device,
    measure_interleaved,
    needs_host_binding,
    prepare_run,
    time_once_ms,
)
from bnfold.runtime.session import cuda_available
from tests.builders.bench_models import bfloat16_model, fast_model


def cpu_session(model: Any) -> Any:
    return onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def fake_clock(step_ns: int) -> Iterator[int]:
    now = 0
    while True:
        yield now
        now += step_ns


def test_rounds_interleave_after_warmup_in_alternating_order() -> None:
    calls: list[str] = []
    runs = [lambda: calls.append("A"), lambda: calls.append("B")]
    samples = measure_interleaved(runs, RoundPlan(iters=3, warmup=2))
    # A lead-in run of A, then 3 rounds rounded up to 4: each run first and second, and
    # after itself and after the other, equally often.
    assert calls == ["A", "B"] * 2 + ["A"] + ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert [len(s) for s in samples] == [4, 4]
    assert all(np.all(s >= 0) for s in samples)


def test_running_after_oneself_is_balanced_between_the_models() -> None:
    """A run right after its own previous run takes 10% less (its threads are awake); a
    warm-up ending in B must not give B one more such run in 4 rounds."""
    now = [0]
    last: list[str] = []

    def run_of(name: str) -> Callable[[], None]:
        def run() -> None:
            now[0] += 900_000 if last and last[-1] == name else 1_000_000
            last.append(name)

        return run

    first, second = measure_interleaved(
        [run_of("A"), run_of("B")], RoundPlan(iters=4, warmup=1), clock=lambda: now[0]
    )
    assert np.median(first) == pytest.approx(np.median(second))


def test_a_position_effect_cancels_over_whole_cycles() -> None:
    """The run that comes second in a round takes 10% longer (another's spinning threads);
    each model's median must not come from its majority position (3 rounds: 1.1x)."""
    now = [0]
    calls = [0]

    def run() -> None:
        calls[0] += 1
        now[0] += 1_000_000 if calls[0] % 2 else 1_100_000

    for plan in (RoundPlan(iters=3, warmup=0), RoundPlan(iters=4, min_time_s=1e-9, warmup=0)):
        calls[0] = 0
        first, second = measure_interleaved([run, run], plan, clock=lambda: now[0])
        assert np.median(first) == pytest.approx(np.median(second))


def test_min_time_runs_until_the_budget_is_spent() -> None:
    """Each clock read advances 1 ms; a round of two runs reads it 5 times (2 per run, 1 after)."""
    ticks = fake_clock(1_000_000)
    samples = measure_interleaved(
        [lambda: None, lambda: None],
        RoundPlan(iters=None, min_time_s=0.05, warmup=0),
        clock=lambda: next(ticks),
    )
    rounds = len(samples[0])
    assert rounds == 10  # elapsed after round r is 5r ms; 5 * 10 = 50 ms
    np.testing.assert_allclose(samples[0], 1.0)  # each run spans exactly one clock step


def test_min_time_respects_minimum_rounds_and_cap() -> None:
    ticks = fake_clock(10**9)  # one second per clock read: the budget is spent at once
    at_least = measure_interleaved(
        [lambda: None], RoundPlan(iters=7, min_time_s=0.001, warmup=0), clock=lambda: next(ticks)
    )
    assert len(at_least[0]) == 7
    slow_ticks = fake_clock(1)  # the budget is never spent: stop at max_rounds
    capped = measure_interleaved(
        [lambda: None],
        RoundPlan(iters=None, min_time_s=3600, warmup=0, max_rounds=25),
        clock=lambda: next(slow_ticks),
    )
    assert len(capped[0]) == 25


def test_progress_callback_sees_every_round() -> None:
    seen: list[int] = []
    measure_interleaved(
        [lambda: None], RoundPlan(iters=4, warmup=0), on_round=lambda r, _s: seen.append(r)
    )
    assert seen == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "plan", [{"iters": 0}, {"iters": 5, "warmup": -1}, {"iters": None, "min_time_s": 0.0}]
)
def test_round_plan_rejects_nonsense(plan: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RoundPlan(**plan)


@pytest.mark.parametrize(
    ("provider", "include_copies", "device"),
    [
        ("cpu", False, None),
        ("cuda", False, "cuda"),
        ("cuda", True, None),
        ("tensorrt", False, "cuda"),
    ],
)
def test_binding_device(provider: str, include_copies: bool, device: str | None) -> None:
    assert binding_device(provider, include_copies=include_copies) == device


def test_cpu_iobinding_gives_the_same_outputs_as_run() -> None:
    session = cpu_session(fast_model())
    feeds = {"x": np.arange(32, dtype=np.float32).reshape(2, 16)}
    prepared = prepare_run(session, feeds, device="cpu")
    assert prepared.binding is not None
    prepared.run_once()
    bound = prepared.binding.copy_outputs_to_cpu()[0]
    np.testing.assert_array_equal(bound, session.run(None, feeds)[0])
    np.testing.assert_array_equal(bound, feeds["x"] + 1)


def test_plain_run_needs_no_binding() -> None:
    session = cpu_session(fast_model())
    prepared = prepare_run(session, {"x": np.zeros((1, 16), np.float32)}, device=None)
    assert prepared.binding is None
    np.testing.assert_array_equal(prepared.run_once()[0], np.ones((1, 16), np.float32))


class FakeBinding:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    def bind_ortvalue_input(self, name: str, value: Any) -> None:
        self.log.append(("input", name, value.device))

    def bind_output(self, name: str, device: str, device_id: int = 0) -> None:
        self.log.append(("output", name, device, device_id))


class FakeSession:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    def io_binding(self) -> FakeBinding:
        return FakeBinding(self.log)

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name="y", type="tensor(float)")]

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        self.log.append(("run_with_iobinding", binding))

    def run(self, *args: Any) -> None:
        raise AssertionError("session.run would copy to and from the host")


def test_cuda_binding_places_inputs_and_outputs_on_the_device() -> None:
    log: list[tuple[Any, ...]] = []

    def ortvalue_from_numpy(array: np.ndarray, device: str, device_id: int) -> Any:
        log.append(("copy", array.shape, device, device_id))
        return SimpleNamespace(device=(device, device_id))

    fake_ort = SimpleNamespace(OrtValue=SimpleNamespace(ortvalue_from_numpy=ortvalue_from_numpy))
    session = FakeSession(log)
    prepared = prepare_run(
        session,
        {"x": np.zeros((2, 16), np.float32)},
        device="cuda",
        device_id=1,
        ort_module=fake_ort,
    )
    assert log == [
        ("copy", (2, 16), "cuda", 1),
        ("input", "x", ("cuda", 1)),
        ("output", "y", "cuda", 1),
    ]
    log.clear()
    prepared.run_once()
    prepared.run_once()
    # Each timed run only runs the binding: no host copies.
    assert log == [("run_with_iobinding", prepared.binding)] * 2


def test_bfloat16_goes_through_a_host_binding() -> None:
    import ml_dtypes

    session = cpu_session(bfloat16_model())
    feeds = {"x": np.linspace(-2, 2, 32).reshape(2, 16).astype(ml_dtypes.bfloat16)}
    assert needs_host_binding(session, feeds)
    assert not needs_host_binding(cpu_session(fast_model()), {"x": np.zeros((1, 16), np.float32)})
    prepared = prepare_run(session, feeds, device="cpu")
    prepared.run_once()
    out = prepared.binding.get_outputs()[0]
    assert out.data_type() == "tensor(bfloat16)"
    assert tuple(out.shape()) == (2, 16)


def test_time_once_ms_measures_a_call() -> None:
    calls: list[int] = []
    elapsed = time_once_ms(lambda: calls.append(1))
    assert calls == [1]
    assert 0 <= elapsed < 1000


@pytest.mark.gpu
def test_cuda_iobinding_on_a_real_gpu() -> None:
    works, reason = cuda_available()
    if not works:
        pytest.skip(f"no working CUDA here: {reason}")
    session = onnxruntime.InferenceSession(
        fast_model().SerializeToString(),
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    feeds = {"x": np.arange(32, dtype=np.float32).reshape(2, 16)}
    prepared = prepare_run(session, feeds, device=binding_device("cuda", include_copies=False))
    prepared.run_once()
    outputs = prepared.binding.get_outputs()
    assert outputs[0].device_name().lower() == "cuda"
    np.testing.assert_array_equal(prepared.binding.copy_outputs_to_cpu()[0], feeds["x"] + 1)

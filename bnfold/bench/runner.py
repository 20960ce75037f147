"""The timing loop: run prepared sessions in interleaved rounds and record latencies.

Why interleaved: machines drift (CPU frequency, thermal throttling, other processes). Timing
all of A and then all of B would charge the drift to one model; rounds spread it over both.
The order alternates (``A, B`` then ``B, A``): in a fixed order the second model always runs
right after the first, on caches the first just warmed or evicted, and on a small model that
alone showed a 20% "difference" between two models onnxruntime optimizes to the same graph. Garbage collection is paused while timing (as ``timeit`` does) so that
a collection triggered by one model's allocations is not charged to the other.

Why IOBinding on CUDA: ``session.run(None, feeds)`` copies inputs host->device and outputs
device->host on every call, so it times PCIe transfers as well as the model. With inputs
placed on the device once (``OrtValue.ortvalue_from_numpy(x, 'cuda', 0)``) and outputs bound
to the device (``bind_output(name, 'cuda', 0)``), ``run_with_iobinding`` times the model only.
onnxruntime synchronizes the device at the end of each run, so the wall clock is honest.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Execution providers whose memory lives on a CUDA device (IOBinding target).
DEVICE_OF_PROVIDER: dict[str, str] = {"cuda": "cuda", "tensorrt": "cuda"}
# --min-time stops after this many rounds even if time remains, to bound memory (16 MB for
# two models); the bootstrap bounds its own cost for long samples (see stats).
MAX_ROUNDS = 1_000_000
# --min-time still takes at least this many rounds so that percentiles mean something.
MIN_ROUNDS_FOR_MIN_TIME = 10

RunOnce = Callable[[], object]


def binding_device(provider: str, *, include_copies: bool) -> str | None:
    """Device to bind inputs and outputs to, or None to use plain ``session.run``.

    CPU providers need no binding (host memory is the device's memory). CUDA-backed providers
    bind to ``'cuda'`` unless ``include_copies`` asks to time host<->device copies too.
    """
    device = DEVICE_OF_PROVIDER.get(provider)
    if device is None or include_copies:
        return None
    return device


@dataclass
class PreparedRun:
    """One session with its inputs, ready to be run repeatedly by ``run_once()``.

    ``device`` None: ``session.run(None, feeds)``. Otherwise the inputs were copied to
    ``device`` once and outputs are bound there (``session.run_with_iobinding(binding)``);
    ``keepalive`` holds the host arrays and OrtValues the binding refers to but does not own.
    ``run_once`` is a ``functools.partial`` built once, so the timed call adds no Python
    work of ours beyond one call.
    """

    session: Any
    feeds: dict[str, np.ndarray]
    device: str | None = None
    device_id: int = 0
    binding: Any = None
    keepalive: list[Any] = field(default_factory=list)
    run_once: RunOnce = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.binding is not None:
            self.run_once = functools.partial(self.session.run_with_iobinding, self.binding)
        else:
            self.run_once = functools.partial(self.session.run, None, self.feeds)


def prepare_run(
    session: Any,
    feeds: Mapping[str, np.ndarray],
    *,
    device: str | None,
    device_id: int = 0,
    ort_module: Any = None,
) -> PreparedRun:
    """Return a ``PreparedRun``; with ``device`` set, bind inputs and outputs to it.

    ``ort_module`` defaults to ``onnxruntime`` (a parameter so tests can observe the calls).
    """
    if device is None:
        return PreparedRun(session, dict(feeds))
    if ort_module is None:
        import onnxruntime

        ort_module = onnxruntime
    binding = session.io_binding()
    keepalive: list[Any] = []
    for name, array in feeds.items():
        value = _to_ortvalue(ort_module, array, device, device_id, keepalive)
        binding.bind_ortvalue_input(name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name, device, device_id)
    return PreparedRun(session, dict(feeds), device, device_id, binding, keepalive)


def needs_host_binding(session: Any, feeds: Mapping[str, np.ndarray]) -> bool:
    """True when ``session.run`` cannot take the feeds or return the outputs: bfloat16
    (numpy has no bfloat16 of its own; ml_dtypes arrays must go through OrtValues)."""
    return any(array.dtype.name == "bfloat16" for array in feeds.values()) or any(
        output.type == _BFLOAT16_TYPE for output in session.get_outputs()
    )


_BFLOAT16_TYPE = "tensor(bfloat16)"
_ONNX_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16


def _to_ortvalue(
    ort_module: Any, array: np.ndarray, device: str, device_id: int, keepalive: list[Any]
) -> Any:
    """Copy ``array`` to ``device`` as an OrtValue; CPU OrtValues alias numpy memory, so the
    array is kept alive in ``keepalive`` with the value."""
    host = np.ascontiguousarray(array)
    keepalive.append(host)
    if host.dtype.name == "bfloat16":
        raw = host.view(np.uint16)
        keepalive.append(raw)
        if device == "cpu":
            value = ort_module.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, _ONNX_BFLOAT16)
        else:
            value = ort_module.OrtValue.ortvalue_from_shape_and_type(
                list(host.shape), _ONNX_BFLOAT16, device, device_id
            )
            value.update_inplace(raw)
    else:
        value = ort_module.OrtValue.ortvalue_from_numpy(host, device, device_id)
    keepalive.append(value)
    return value


def time_once_ms(run: RunOnce) -> float:
    """Wall-clock milliseconds of one call of ``run``."""
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / 1e6


@dataclass
class RoundPlan:
    """How long to measure: exactly ``iters`` rounds, or until ``min_time_s`` has passed.

    With ``min_time_s``: at least ``iters`` rounds (default ``MIN_ROUNDS_FOR_MIN_TIME``), then
    rounds until the timed phase has lasted ``min_time_s`` seconds, at most ``max_rounds``.
    """

    iters: int | None = 100
    min_time_s: float | None = None
    warmup: int = 10
    max_rounds: int = MAX_ROUNDS

    def __post_init__(self) -> None:
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters must be at least 1, got {self.iters}")
        if self.min_time_s is not None and not self.min_time_s > 0:
            raise ValueError(f"min_time_s must be positive, got {self.min_time_s}")
        if self.warmup < 0:
            raise ValueError(f"warmup must not be negative, got {self.warmup}")

    def minimum_rounds(self) -> int:
        if self.min_time_s is None:
            return self.iters if self.iters is not None else 100
        return self.iters if self.iters is not None else MIN_ROUNDS_FOR_MIN_TIME

    def capacity(self) -> int:
        """Most rounds this plan can take (``iters`` exactly when there is no time budget)."""
        if self.min_time_s is None:
            return self.minimum_rounds()
        return max(self.minimum_rounds(), self.max_rounds)


def round_order(runs: Sequence[RunOnce], round_index: int) -> list[tuple[int, RunOnce]]:
    """``(index, run)`` in the order of round ``round_index``.

    Two runs alternate (``A, B`` then ``B, A``). With more (an A/A calibration session
    beside the pair), each rotation is taken forward and then backward, so every run takes
    every position and follows every other run equally often over ``2n`` rounds.
    """
    order = list(enumerate(runs))
    if len(order) > 2:
        shift = (round_index // 2) % len(order)
        order = order[shift:] + order[:shift]
    return order if round_index % 2 == 0 else order[::-1]


def order_cycle(runs: int) -> int:
    """Rounds after which ``round_order`` has given every run every position equally often:
    1 for one run, 2 for two, ``2n`` for more."""
    if runs <= 1:
        return 1
    return 2 if runs == 2 else 2 * runs


def _whole_cycles(rounds: int, cycle: int) -> int:
    """``rounds`` rounded up to whole cycles of the order."""
    return -(-rounds // cycle) * cycle


def warm_up(
    runs: Sequence[RunOnce],
    count: int,
    *,
    time_limit_s: float | None = None,
    minimum: int = 0,
) -> float:
    """Run each of ``runs`` ``count`` times in turn (stopping early once ``minimum`` rounds
    are done and ``time_limit_s`` has passed); return the mean milliseconds per round (one
    call of every run), the latency estimate that sizes the timed phase."""
    if count < 1 or not runs:
        return 0.0
    start = time.perf_counter_ns()
    done = 0
    while done < count:
        for run in runs:
            run()
        done += 1
        elapsed_ns = time.perf_counter_ns() - start
        if time_limit_s is not None and done >= minimum and elapsed_ns >= time_limit_s * 1e9:
            break
    return (time.perf_counter_ns() - start) / 1e6 / done


def measure_interleaved(
    runs: Sequence[RunOnce],
    plan: RoundPlan,
    *,
    on_round: Callable[[int, float], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[NDArray[np.float64]]:
    """Warm up each run ``plan.warmup`` times, then time rounds of every run, the order
    alternating between rounds (``runs[0], runs[1]``, then ``runs[1], runs[0]``; see
    ``round_order`` for three runs).

    Returns one array of per-call milliseconds per run, all of equal length (the number of
    rounds). The rounds end on a whole cycle of the order (``order_cycle``: an even count
    for two runs), so that every run took every position equally often: the run that
    follows another can be faster or slower for it (caches, the other's spinning threads),
    and with 3 rounds of ``A,B / B,A / A,B`` each model's median would be a value from its
    majority position, an 8% "speedup" between a model and a copy of itself on light
    resnet50. ``iters`` and the minimum are rounded up to whole cycles. ``on_round(rounds_done, elapsed_s)`` is called after each round (progress bars).
    ``clock`` returns nanoseconds (a parameter so tests can drive the time budget).
    """
    if not runs:
        return []
    warm_up(runs, plan.warmup)
    # Lead-in: the run before round 0 is round 0's first, so that over whole cycles each
    # run follows itself as often as it follows another (A | A,B / B,A: A after A and
    # after B, B after A and after B). A warm-up ending in B would let B follow itself
    # once more in 4 rounds; running after oneself is faster (own threads awake, caches
    # warm), and that alone made a copy of light resnet50 5-7% "faster" than itself.
    runs[0]()
    cycle = order_cycle(len(runs))
    minimum = _whole_cycles(plan.minimum_rounds(), cycle)
    samples = np.empty((len(runs), max(minimum, plan.capacity())), dtype=np.float64)
    was_enabled = gc.isenabled()
    gc.disable()
    rounds = 0
    try:
        began = clock()
        while rounds < samples.shape[1]:
            for index, run in round_order(runs, rounds):
                start = clock()
                run()
                samples[index, rounds] = (clock() - start) / 1e6
            rounds += 1
            elapsed_s = (clock() - began) / 1e9
            if on_round is not None:
                on_round(rounds, elapsed_s)
            done = rounds >= minimum and rounds % cycle == 0
            if done and (plan.min_time_s is None or elapsed_s >= plan.min_time_s):
                break
    finally:
        if was_enabled:
            gc.enable()
    return [samples[index, :rounds].copy() for index in range(len(runs))]

"""``bench()``: an honest latency comparison of an original model and a candidate.

Within one wall-clock ``budget`` (``budget``: loading, session creation, warm-up and
timing all count), for every execution provider and onnxruntime optimization level (a
*setting*), and every batch size within it:

1. Fresh session pairs, one of each model, are created in this process (the order
   alternating between pairs; creation time recorded), run once (first-run time
   recorded), warmed up and timed in interleaved rounds on the same inputs (``measure``,
   ``runner``). The first pair prices the setting, and its share of the budget is planned
   as at most ``pairs`` pairs of equal length (``budget``; ``iters``/``min_time`` fix the
   length). On CUDA, inputs and outputs are bound to device memory so host copies are not
   timed, unless ``include_copies``.
2. After each batch of pairs the verdict is looked at with alpha-spending boundaries
   (``sequential``), and the setting stops as soon as it is decided, or at its share of
   the budget with ``inconclusive`` and the reason. The speedup is the 20%-trimmed
   geometric mean of the per-pair ratios of medians (``stats``); each model's latency is
   the same statistic taken apart (``typical``), so the two always agree. With
   ``calibrate``, a second session of the original in every pair gives the A/A noise floor.

A provider that does not really run (``session.get_providers()`` says otherwise) becomes an
``unavailable`` entry, never a silent CPU measurement. ``BenchReport.failure()`` gives the
error the CLI exits with (exit 4: an explicitly requested provider is unavailable; exit 5:
``fail_if_slower`` tripped).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UsageError
from ..runtime.inputs import describe_inputs
from ..runtime.placement import pinned
from ..runtime.session import default_providers, onnxruntime_version
from ..runtime.settings import DEFAULT_SEED, InputPlan, RuntimeChoice
from ..storage.load import LoadedModel, load_model
from .budget import Budget
from .design import (
    DEFAULT_DIM,
    DEFAULT_LEVELS,
    DEFAULT_MARGIN_PCT,
    DEFAULT_PAIRS,
    DEFAULT_SPINNING,
    DEFAULT_WARMUP,
    BenchDesign,
    BenchSettings,
    PairPlan,
    parse_batches,
)
from .feeds import build_feed_sets, feeds_for
from .kernels import kernel_notes
from .machine import machine_info
from .measure import Measurement
from .progress import ProgressSink, RichProgress
from .report import BenchReport, Comparison, ModelResult, Unavailable
from .stats import DEFAULT_CONFIDENCE

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_MARGIN_PCT",
    "BenchDesign",
    "BenchReport",
    "BenchSettings",
    "Comparison",
    "ModelResult",
    "RichProgress",
    "Unavailable",
    "bench",
    "bench_with",
    "parse_batches",
    "parse_fail_if_slower",
]

ModelSource = str | os.PathLike[str] | onnx.ModelProto


def bench(
    original: ModelSource,
    candidate: ModelSource,
    *,
    providers: str | Sequence[str] | None = None,
    levels: str | Sequence[str] = DEFAULT_LEVELS,
    batches: str | Sequence[int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    default_dim: int | None = DEFAULT_DIM,
    inputs: str | Path | Mapping[str, np.ndarray] | None = None,
    pairs: int = DEFAULT_PAIRS,
    iters: int | None = None,
    min_time: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    budget: float | None = None,
    threads: int | None = None,
    inter_threads: int | None = None,
    spinning: bool | None = DEFAULT_SPINNING,
    cpus: str | Sequence[int] | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    include_copies: bool = False,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    margin: float = DEFAULT_MARGIN_PCT,
    calibrate: bool = False,
    fail_if_slower: float | bool | None = None,
    progress: ProgressSink | None = None,
) -> BenchReport:
    """Measure ``original`` and ``candidate`` (paths or ModelProtos) and compare them.

    ``providers``: ``'cpu,cuda'`` or a list; None means CPU plus CUDA when it really works
    (then an unavailable provider is reported, not an error). ``levels``: onnxruntime
    optimization levels, each its own setting (default ``disable,all``). ``batches``: sizes
    for dimension 0 of the inputs whose dimension 0 is symbolic (see ``feeds``). ``budget``:
    wall-clock seconds for the whole call (None: ``budget.DEFAULT_BUDGET_S``, grown up to
    ``MAX_DEFAULT_BUDGET_S`` when ``MIN_PLANNED_PAIRS`` pairs of every setting need more).
    ``pairs``: the most fresh session pairs per setting (fewer when the budget buys fewer or
    the verdict is decided early); ``iters``: timed rounds per pair, or ``min_time``: timed
    seconds per setting spread over ``pairs`` (default: each pair's length is planned from
    the budget). ``threads``/``inter_threads``: onnxruntime intra-/inter-op threads;
    ``spinning``: worker threads spin-wait (default off: the idle session's spinning threads
    would compete with the timed one; None: onnxruntime's default, on); ``cpus``: pin to
    these CPUs (``'0,2-3'``). ``margin``: δ in percent (faster/slower only beyond ±δ).
    ``calibrate``: also time the original against itself. ``fail_if_slower``: True for the
    margin, or a percent; the report's ``failure()`` carries the verdict, nothing is raised
    for it here. Raises ``UsageError``/``ModelLoadError`` for bad arguments or models.
    """
    settings = BenchSettings(
        design=BenchDesign.of(
            plan=PairPlan.of(
                pairs=pairs, iters=iters, min_time=min_time, warmup=warmup, budget=budget
            ),
            confidence=confidence,
            margin=margin,
            calibrate=calibrate,
            fail_if_slower=fail_if_slower,
            include_copies=include_copies,
            batches=batches,
        ),
        runtime=RuntimeChoice.of(
            providers=providers,
            levels=levels,
            threads=threads,
            inter_threads=inter_threads,
            spinning=spinning,
            cpus=cpus,
            provider_options=provider_options,
        ),
        inputs=InputPlan.of(
            shapes=shapes,
            dims=dims,
            ranges=ranges,
            default_dim=default_dim,
            seed=seed,
            inputs=inputs,
        ),
    )
    return bench_with(original, candidate, settings, progress)


def bench_with(
    original: ModelSource,
    candidate: ModelSource,
    settings: BenchSettings,
    progress: ProgressSink | None = None,
) -> BenchReport:
    """``bench`` with its settings already built (the command line builds them from its
    option groups)."""
    design, runtime = settings.design, settings.runtime
    budget = Budget(design.plan.budget)  # from here on everything counts
    if len(settings.inputs.inputs) > 1:
        raise UsageError("bench takes one inputs file", hint="it times one input set")
    # The default set probes CUDA (slow): after every argument is known to be good.
    provider_list = default_providers() if runtime.providers is None else list(runtime.providers)
    budget.settings = len(provider_list) * len(runtime.levels)

    loaded_original = load_model(original, role="original")
    loaded_candidate = load_model(candidate, role="candidate")
    feed_sets, input_notes = build_feed_sets(loaded_original.model, settings.inputs, design.batches)
    for feed_set in feed_sets:
        feeds_for(loaded_candidate.model, feed_set.feeds, "candidate")

    measurement = Measurement(loaded_original, loaded_candidate, design, runtime, budget, progress)
    with pinned(runtime.threads.cpus):
        for provider in provider_list:
            for level in runtime.levels:
                measurement.measure_setting(provider, level, feed_sets, explicit=runtime.explicit)

    kernels, kernel_lines = kernel_notes(loaded_original, loaded_candidate, list(runtime.levels))
    plan = design.plan
    report_settings: dict[str, Any] = {
        "design": "group-sequential: fresh session pairs in batches, interleaved rounds, "
        "alpha-spending looks, within a wall-clock budget",
        "pairs": plan.pairs,
        "rounds": plan.rounds,
        "min_time": plan.seconds,
        "warmup": plan.warmup,
        "budget_s": budget.seconds,
        "budget_explicit": budget.explicit,
        "overrun_s": round(budget.overrun(), 3),
        "threads": runtime.threads.to_dict(),
        "threads_text": runtime.threads.describe(),
        "include_copies": design.include_copies,
        "seed": settings.inputs.seed,
        "confidence": design.confidence,
        "margin": design.margin,
        "margin_pct": design.margin_pct,
        "calibrate": design.calibrate,
        "providers": provider_list,
        "providers_explicit": runtime.explicit,
        "levels": list(runtime.levels),
        "batches": None if design.batches is None else list(design.batches),
        "interleaved": True,
        "duration_s": round(budget.elapsed(), 3),
    }
    return BenchReport(
        original=_label(loaded_original, "original"),
        candidate=_label(loaded_candidate, "candidate"),
        results=measurement.results,
        comparisons=measurement.comparisons,
        unavailable=measurement.unavailable,
        settings=report_settings,
        machine=machine_info(),
        onnxruntime_version=onnxruntime_version(),
        input_notes=input_notes,
        notes=kernel_lines,
        quantized_kernels=kernels,
        fail_if_slower_pct=design.fail_if_slower_pct,
        inputs=[{"batch": f.batch, "inputs": describe_inputs(f.feeds)} for f in feed_sets],
    )


def parse_fail_if_slower(text: str | None) -> float | bool | None:
    """``--fail-if-slower``: absent -> None; given alone (``'margin'``) -> True (use the
    margin); ``'5'`` -> 5.0. Raises UsageError for anything else."""
    if text is None:
        return None
    if text == "margin":
        return True
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"--fail-if-slower {text!r} is not a percentage",
            hint="write --fail-if-slower=PCT, or put --fail-if-slower after the two models",
        ) from None


def _label(loaded: LoadedModel, role: str) -> str:
    return str(loaded.path) if loaded.path is not None else f"<in-memory {role}>"

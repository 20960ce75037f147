"""``bench()``: an honest latency comparison of an original model and a candidate.

For every execution provider, onnxruntime optimization level and batch size (a *setting*):

1. Both sessions are created in this process (creation time recorded), each model is run once
   (first-run time recorded), then ``warmup`` more times.
2. Both are timed in interleaved rounds ``original, candidate, original, candidate, ...`` on
   the same inputs, for ``iters`` rounds or until ``min_time`` seconds have passed
   (see ``runner``). On CUDA, inputs and outputs are bound to device memory so host copies
   are not timed, unless ``include_copies``.
3. Per model: p50/p90/p99/mean/std/min. Per setting: ``speedup = p50(original) / p50(candidate)``
   with a percentile-bootstrap confidence interval and a verdict (see ``stats``).

A provider that does not really run (``session.get_providers()`` says otherwise) becomes an
``unavailable`` entry, never a silent CPU measurement. ``BenchReport.failure()`` gives the
error the CLI exits with (exit 4: an explicitly requested provider is unavailable; exit 5:
``fail_if_slower`` tripped).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UsageError
from ..modelio import LoadedModel, load_model
from ..verify.inputs import describe_inputs
from ..verify.session import default_providers, onnxruntime_version, parse_levels, parse_providers
from .feeds import build_feed_sets, feeds_for
from .machine import machine_info
from .measure import Measurement
from .progress import ProgressSink, RichProgress
from .report import BenchReport, Comparison, ModelResult, Unavailable
from .runner import RoundPlan
from .stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES

__all__ = ["BenchReport", "Comparison", "ModelResult", "RichProgress", "Unavailable", "bench"]

DEFAULT_LEVELS = ("disable", "all")
DEFAULT_ITERS = 100
DEFAULT_WARMUP = 10

ModelSource = str | Path | onnx.ModelProto


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
    default_dim: int = 1,
    inputs: str | Path | Mapping[str, np.ndarray] | None = None,
    iters: int | None = None,
    min_time: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    include_copies: bool = False,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    fail_if_slower: float | None = None,
    progress: ProgressSink | None = None,
) -> BenchReport:
    """Measure ``original`` and ``candidate`` (paths or ModelProtos) and compare them.

    ``providers``: ``'cpu,cuda'`` or a list; None means CPU plus CUDA when it really works
    (then an unavailable provider is reported, not an error). ``levels``: onnxruntime
    optimization levels, each its own setting (default ``disable,all``). ``batches``: sizes
    for dimension 0 of the inputs whose dimension 0 is symbolic (see ``feeds``). ``iters``:
    timed rounds (default 100); ``min_time``: seconds per setting (then ``iters`` is a
    minimum). ``threads``: onnxruntime intra-op threads. ``fail_if_slower``: percent, see
    ``stats.slower_beyond``; the report's ``failure()`` carries the verdict, nothing is raised
    for it here. Raises ``UsageError``/``ModelLoadError`` for bad arguments or models.
    """
    plan = _round_plan(iters, min_time, warmup)
    _check_options(threads, resamples, confidence, fail_if_slower)
    level_list = parse_levels(levels if isinstance(levels, str) else list(levels))
    batch_list = (
        parse_batches(batches) if isinstance(batches, str) else (list(batches) if batches else None)
    )
    provider_list, explicit = _providers(providers)  # last: the default probes CUDA (slow)

    loaded_original = load_model(original, role="original")
    loaded_candidate = load_model(candidate, role="candidate")
    feed_sets, notes = build_feed_sets(
        loaded_original.model,
        batches=batch_list,
        shapes={name: tuple(int(d) for d in shape) for name, shape in (shapes or {}).items()},
        dims=dims,
        ranges=ranges,
        inputs=inputs,
        default_dim=default_dim,
        seed=seed,
    )
    for feed_set in feed_sets:
        feeds_for(loaded_candidate.model, feed_set.feeds, "candidate")

    started = time.perf_counter()
    measurement = Measurement(
        loaded_original,
        loaded_candidate,
        plan=plan,
        threads=threads,
        provider_options=provider_options,
        include_copies=include_copies,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
        progress=progress,
    )
    for provider in provider_list:
        for level in level_list:
            measurement.measure_setting(provider, level, feed_sets, explicit=explicit)

    settings: dict[str, Any] = {
        "iters": plan.minimum_rounds() if min_time is None else iters,
        "min_time_s": min_time,
        "warmup": warmup,
        "threads": threads,
        "include_copies": include_copies,
        "seed": seed,
        "resamples": resamples,
        "confidence": confidence,
        "providers": provider_list,
        "providers_explicit": explicit,
        "levels": level_list,
        "batches": batch_list,
        "interleaved": True,
        "duration_s": round(time.perf_counter() - started, 3),
    }
    return BenchReport(
        original=_label(loaded_original, "original"),
        candidate=_label(loaded_candidate, "candidate"),
        results=measurement.results,
        comparisons=measurement.comparisons,
        unavailable=measurement.unavailable,
        settings=settings,
        machine=machine_info(),
        onnxruntime_version=onnxruntime_version(),
        notes=notes,
        fail_if_slower_pct=fail_if_slower,
        inputs=[{"batch": f.batch, "inputs": describe_inputs(f.feeds)} for f in feed_sets],
    )


def parse_batches(text: str | None) -> list[int] | None:
    """``'1,8,32'`` -> ``[1, 8, 32]``; None or empty -> None (no sweep)."""
    if text is None or not text.strip():
        return None
    sizes: list[int] = []
    for token in (part.strip() for part in text.split(",")):
        if not token.isdigit() or int(token) < 1:
            raise UsageError(
                f"--batch {text!r}: sizes must be positive integers",
                hint="for example --batch 1,8,32",
            )
        if int(token) not in sizes:
            sizes.append(int(token))
    return sizes


def _round_plan(iters: int | None, min_time: float | None, warmup: int) -> RoundPlan:
    if iters is None and min_time is None:
        iters = DEFAULT_ITERS
    try:
        return RoundPlan(iters=iters, min_time_s=min_time, warmup=warmup)
    except ValueError as exc:
        raise UsageError(str(exc).replace("min_time_s", "min_time")) from None


def _check_options(
    threads: int | None, resamples: int, confidence: float, fail_if_slower: float | None
) -> None:
    if threads is not None and threads < 0:
        raise UsageError(f"threads must be 0 (onnxruntime's default) or more, got {threads}")
    if resamples < 100:
        raise UsageError(
            f"resamples must be at least 100 for a meaningful interval, got {resamples}"
        )
    if not 0.5 <= confidence < 1.0:
        raise UsageError(f"confidence must be in [0.5, 1), got {confidence}")
    if fail_if_slower is not None and not 0.0 <= fail_if_slower < 100.0:
        raise UsageError(
            f"--fail-if-slower must be a percentage in [0, 100), got {fail_if_slower:g}",
            hint="0 fails on any significant slowdown, 10 on more than 10%",
        )


def _providers(providers: str | Sequence[str] | None) -> tuple[list[str], bool]:
    if providers is None:
        return default_providers(), False
    text = providers if isinstance(providers, str) else ",".join(providers)
    parsed = parse_providers(text)
    assert parsed is not None
    return parsed, True


def _label(loaded: LoadedModel, role: str) -> str:
    return str(loaded.path) if loaded.path is not None else f"<in-memory {role}>"

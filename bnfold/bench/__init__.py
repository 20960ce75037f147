"""``bench()``: an honest latency comparison of an original model and a candidate.

For every execution provider, onnxruntime optimization level and batch size (a *setting*):

1. ``pairs`` times: a fresh session of each model is created in this process (the order
   alternating between pairs; creation time recorded), run once (first-run time recorded),
   warmed up, and both are timed in interleaved rounds on the same inputs (``design``,
   ``runner``). The number of rounds per pair adapts to the model's latency unless ``iters``
   fixes it. On CUDA, inputs and outputs are bound to device memory so host copies are not
   timed, unless ``include_copies``.
2. Per model: p50/p90/p99/mean/std/min over all rounds. Per setting: each pair's ratio of
   medians; the speedup, its t-interval over pairs and a verdict with a margin of practical
   equivalence (``stats``). With ``calibrate``, a second session of the original in every
   pair gives the A/A noise floor beside it.

A provider that does not really run (``session.get_providers()`` says otherwise) becomes an
``unavailable`` entry, never a silent CPU measurement. ``BenchReport.failure()`` gives the
error the CLI exits with (exit 4: an explicitly requested provider is unavailable; exit 5:
``fail_if_slower`` tripped).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UsageError
from ..runtime.inputs import describe_inputs
from ..runtime.session import default_providers, onnxruntime_version, parse_levels, parse_providers
from ..storage.load import LoadedModel, load_model
from .design import DEFAULT_PAIRS, DEFAULT_SECONDS, DEFAULT_WARMUP, PairPlan
from .feeds import build_feed_sets, feeds_for
from .machine import machine_info
from .measure import Measurement
from ..runtime.placement import Threads, parse_cpus, pinned
from .progress import ProgressSink, RichProgress
from .report import BenchReport, Comparison, ModelResult, Unavailable
from .stats import DEFAULT_CONFIDENCE, DEFAULT_MARGIN

__all__ = [
    "BenchReport",
    "Comparison",
    "ModelResult",
    "RichProgress",
    "Unavailable",
    "bench",
    "parse_batches",
    "parse_fail_if_slower",
]

DEFAULT_LEVELS = ("disable", "all")
DEFAULT_MARGIN_PCT = DEFAULT_MARGIN * 100.0

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
    default_dim: int = 1,
    inputs: str | Path | Mapping[str, np.ndarray] | None = None,
    pairs: int = DEFAULT_PAIRS,
    iters: int | None = None,
    min_time: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    inter_threads: int | None = None,
    spinning: bool | None = None,
    cpus: str | Sequence[int] | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    include_copies: bool = False,
    seed: int = 0,
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
    for dimension 0 of the inputs whose dimension 0 is symbolic (see ``feeds``). ``pairs``:
    fresh session pairs per setting; ``iters``: timed rounds per pair (default: adapted to
    the latency so that the timed rounds of a setting take about ``min_time`` seconds,
    default 8). ``threads``/``inter_threads``: onnxruntime intra-/inter-op threads;
    ``spinning``: worker threads spin-wait (None: onnxruntime's default); ``cpus``: pin to
    these CPUs (``'0,2-3'``). ``margin``: δ in percent (faster/slower only beyond ±δ).
    ``calibrate``: also time the original against itself. ``fail_if_slower``: True for the
    margin, or a percent; the report's ``failure()`` carries the verdict, nothing is raised
    for it here. Raises ``UsageError``/``ModelLoadError`` for bad arguments or models.
    """
    plan = _pair_plan(pairs, iters, min_time, warmup)
    fail_pct = _check_options(threads, inter_threads, confidence, margin, fail_if_slower)
    placement = Threads(
        intra_op=threads,
        inter_op=inter_threads,
        spinning=spinning,
        cpus=parse_cpus(cpus) if isinstance(cpus, str) or cpus is None else tuple(sorted(cpus)),
    )
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
        threads=placement,
        provider_options=provider_options,
        include_copies=include_copies,
        confidence=confidence,
        margin=margin / 100.0,
        calibrate=calibrate,
        progress=progress,
    )
    with pinned(placement.cpus):
        for provider in provider_list:
            for level in level_list:
                began = time.perf_counter()
                done = len(measurement.comparisons)
                measurement.measure_setting(provider, level, feed_sets, explicit=explicit)
                per_pair = (time.perf_counter() - began) / plan.pairs / len(feed_sets)
                for comparison in measurement.comparisons[done:]:
                    comparison.seconds_per_pair = per_pair

    settings: dict[str, Any] = {
        "design": "hierarchical: fresh session pairs, interleaved rounds, t-interval over pairs",
        "pairs": plan.pairs,
        "rounds": plan.rounds,
        "seconds_per_setting": plan.seconds,
        "warmup": plan.warmup,
        "threads": placement.to_dict(),
        "threads_text": placement.describe(),
        "include_copies": include_copies,
        "seed": seed,
        "confidence": confidence,
        "margin": margin / 100.0,
        "margin_pct": margin,
        "calibrate": calibrate,
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
        fail_if_slower_pct=fail_pct,
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


def _pair_plan(pairs: int, iters: int | None, min_time: float | None, warmup: int) -> PairPlan:
    try:
        return PairPlan(
            pairs=pairs,
            rounds=iters,
            seconds=DEFAULT_SECONDS if min_time is None else min_time,
            warmup=warmup,
        )
    except ValueError as exc:
        text = str(exc).replace("seconds", "min_time").replace("rounds", "iters")
        raise UsageError(text) from None


def _check_options(
    threads: int | None,
    inter_threads: int | None,
    confidence: float,
    margin: float,
    fail_if_slower: float | bool | None,
) -> float | None:
    """Validate; return the percent ``--fail-if-slower`` trips beyond (None: off)."""
    for name, value in (("threads", threads), ("inter_threads", inter_threads)):
        if value is not None and value < 0:
            raise UsageError(f"{name} must be 0 (onnxruntime's default) or more, got {value}")
    if not 0.5 <= confidence < 1.0:
        raise UsageError(f"confidence must be in [0.5, 1), got {confidence}")
    if not 0.0 <= margin < 100.0:
        raise UsageError(
            f"--margin must be a percentage in [0, 100), got {margin:g}",
            hint="the default, 3, is what the same graph against itself stays within",
        )
    if fail_if_slower is None or fail_if_slower is False:
        return None
    if fail_if_slower is True:
        return margin
    if not 0.0 <= fail_if_slower < 100.0:
        raise UsageError(
            f"--fail-if-slower must be a percentage in [0, 100), got {fail_if_slower:g}",
            hint="without a value it uses --margin",
        )
    return float(fail_if_slower)


def _providers(providers: str | Sequence[str] | None) -> tuple[list[str], bool]:
    if providers is None:
        return default_providers(), False
    text = providers if isinstance(providers, str) else ",".join(providers)
    parsed = parse_providers(text)
    assert parsed is not None
    return parsed, True


def _label(loaded: LoadedModel, role: str) -> str:
    return str(loaded.path) if loaded.path is not None else f"<in-memory {role}>"

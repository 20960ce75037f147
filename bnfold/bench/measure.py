"""Measuring one setting: ``K`` fresh session pairs, each timed in interleaved rounds.

A setting is (execution provider, optimization level); each batch size of it is measured
with the same sessions, since a session serves every shape its model allows. Pair ``k``
creates its sessions in alternating order (original first for even ``k``, candidate first
for odd ``k``: the first session created can land on fresher memory), warms them up, and
times ``R`` rounds (``design``). With ``calibrate``, every pair also gets a second session of
the original, timed in the same rounds: original against itself is the A/A noise floor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import BnfoldError, UsageError
from ..runtime.session import SessionResult, create_session
from ..runtime.settings import RuntimeChoice
from ..storage.load import LoadedModel
from .design import BenchDesign
from .feeds import FeedSet, feeds_for
from .formatting import setting_label
from .modelinfo import ModelFacts, model_facts
from .progress import ProgressSink
from .report import (
    CALIBRATION,
    CANDIDATE,
    ORIGINAL,
    UNAVAILABLE,
    Comparison,
    ModelResult,
    Unavailable,
)
from .runner import (
    binding_device,
    measure_interleaved,
    needs_host_binding,
    prepare_run,
    time_once_ms,
    warm_up,
)
from .stats import pair_log_speedup, speedup_over_pairs, summarize


@dataclass
class _BatchRecord:
    """What the pairs of one batch size measured so far."""

    feed_set: FeedSet
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    create_ms: dict[str, list[float]] = field(default_factory=dict)
    first_run_ms: dict[str, list[float]] = field(default_factory=dict)
    log_speedups: list[float] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)
    actual_providers: dict[str, list[str]] = field(default_factory=dict)


class Measurement:
    """Measures settings one after another and accumulates their results."""

    def __init__(
        self,
        original: LoadedModel,
        candidate: LoadedModel,
        design: BenchDesign,
        runtime: RuntimeChoice,
        progress: ProgressSink | None,
    ) -> None:
        self.models = {ORIGINAL: original, CANDIDATE: candidate, CALIBRATION: original}
        self.facts: dict[str, ModelFacts] = {
            ORIGINAL: model_facts(original),
            CANDIDATE: model_facts(candidate),
        }
        calibrate = design.calibrate
        self.roles = (ORIGINAL, CANDIDATE, CALIBRATION) if calibrate else (ORIGINAL, CANDIDATE)
        self.design = design
        self.plan = design.plan
        self.runtime = runtime
        self.progress = progress
        self.results: list[ModelResult] = []
        self.comparisons: list[Comparison] = []
        self.unavailable: list[Unavailable] = []

    def measure_setting(
        self, provider: str, level: str, feed_sets: list[FeedSet], *, explicit: bool
    ) -> None:
        records = [_BatchRecord(feed_set) for feed_set in feed_sets]
        progress = self.progress
        if progress is not None:
            progress.begin(f"{provider}/{level}", float(self.plan.pairs), "pairs")
        try:
            for pair in range(self.plan.pairs):
                order = self.roles if pair % 2 == 0 else self.roles[::-1]
                sessions: dict[str, SessionResult] = {}
                for role in order:
                    attempt = self._session(role, provider, level)
                    if attempt.status != "ok":
                        self._record_unavailable(attempt, role, feed_sets, explicit=explicit)
                        return
                    sessions[role] = attempt
                for record in records:
                    self._measure_pair(sessions, record)
                del sessions  # release both sessions (and their thread pools) before the next
                if progress is not None:
                    progress.update(float(pair + 1))
        finally:
            if progress is not None:
                progress.end()
        for record in records:
            self._finish(provider, level, record)

    def _session(self, role: str, provider: str, level: str) -> SessionResult:
        return create_session(
            _session_source(self.models[role]),
            provider,
            level,
            role=role,
            **self.runtime.session_arguments(provider),
        )

    def _record_unavailable(
        self, attempt: SessionResult, role: str, feed_sets: list[FeedSet], *, explicit: bool
    ) -> None:
        reason = attempt.reason or "unavailable"
        if role != ORIGINAL:
            reason = f"{role} session: {reason}"
        self.unavailable.append(Unavailable(attempt.provider, attempt.level, reason, explicit))
        for feed_set in feed_sets:
            for model in (ORIGINAL, CANDIDATE):
                self.results.append(
                    ModelResult(
                        model=model,
                        provider=attempt.provider,
                        level=attempt.level,
                        batch=feed_set.batch,
                        facts=self.facts[model],
                        status=UNAVAILABLE,
                        reason=reason,
                        actual_providers=list(attempt.actual_providers),
                    )
                )

    def _measure_pair(self, sessions: dict[str, SessionResult], record: _BatchRecord) -> None:
        """Warm up and time one pair (plus the calibration session) on one batch size."""
        first = sessions[ORIGINAL]
        label = setting_label(first.provider, first.level, record.feed_set.batch)
        runs = []
        for role in self.roles:
            attempt = sessions[role]
            feeds = feeds_for(self.models[role].model, record.feed_set.feeds, role)
            device = binding_device(first.provider, include_copies=self.design.include_copies)
            if device is None and needs_host_binding(attempt.session, feeds):
                device = "cpu"
            device_id = int(attempt.provider_options.get("device_id", 0))
            run = prepare_run(attempt.session, feeds, device=device, device_id=device_id).run_once
            with _onnxruntime_failure(role, label):
                record.first_run_ms.setdefault(role, []).append(time_once_ms(run))
            record.create_ms.setdefault(role, []).append(attempt.create_ms)
            record.actual_providers[role] = list(attempt.actual_providers)
            runs.append(run)

        with _onnxruntime_failure("models", label):
            limit = self.plan.warmup_seconds()
            count = self.plan.warmup_runs() if limit is None else self.plan.max_rounds
            warm_up(runs, count, time_limit_s=limit, minimum=self.plan.warmup)
            samples = measure_interleaved(runs, self.plan.timed_phase())
        for role, sample in zip(self.roles, samples, strict=True):
            record.samples.setdefault(role, []).append(sample)
        record.log_speedups.append(pair_log_speedup(samples[0], samples[1]))
        if len(samples) > 2:
            record.calibration.append(pair_log_speedup(samples[0], samples[2]))

    def _finish(self, provider: str, level: str, record: _BatchRecord) -> None:
        batch = record.feed_set.batch
        for role in (ORIGINAL, CANDIDATE):
            pooled = np.concatenate(record.samples[role])
            self.results.append(
                ModelResult(
                    model=role,
                    provider=provider,
                    level=level,
                    batch=batch,
                    facts=self.facts[role],
                    actual_providers=record.actual_providers.get(role, []),
                    latency=summarize(pooled),
                    session_create_ms=float(np.median(record.create_ms[role])),
                    first_run_ms=float(np.median(record.first_run_ms[role])),
                    samples_ms=pooled,
                )
            )
        medians = {
            role: float(np.median([np.median(s) for s in record.samples[role]]))
            for role in (ORIGINAL, CANDIDATE)
        }
        confidence, margin = self.design.confidence, self.design.margin
        estimate = speedup_over_pairs(record.log_speedups, confidence=confidence, margin=margin)
        calibration = (
            speedup_over_pairs(record.calibration, confidence=confidence, margin=margin)
            if record.calibration
            else None
        )
        self.comparisons.append(
            Comparison(
                provider=provider,
                level=level,
                batch=batch,
                original_p50_ms=medians[ORIGINAL],
                candidate_p50_ms=medians[CANDIDATE],
                estimate=estimate,
                rounds_per_pair=int(np.median([s.size for s in record.samples[ORIGINAL]])),
                pair_speedups=[float(np.exp(d)) for d in record.log_speedups],
                calibration=calibration,
                timed_seconds_per_pair=None
                if self.plan.rounds is not None
                else self.plan.pair_seconds,
            )
        )


@contextlib.contextmanager
def _onnxruntime_failure(role: str, label: str) -> Iterator[None]:
    """Turn an onnxruntime failure while running into a one-line UsageError naming the
    model and the setting (outside the timed calls, so timing pays nothing for it)."""
    try:
        yield
    except BnfoldError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"onnxruntime failed to run the {role} at {label}: {text}",
            hint="check the input shapes (--shape, --dim, --batch) or --inputs",
        ) from None


def _session_source(loaded: LoadedModel) -> onnx.ModelProto | Path:
    # A file is handed to onnxruntime by path, so it reads external data itself.
    return loaded.path if loaded.path is not None else loaded.model

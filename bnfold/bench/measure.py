"""Measuring one setting: two sessions, first run, interleaved timing, statistics.

A setting is (execution provider, optimization level); each batch size of it is measured
with the same two sessions, since a session serves every shape its model allows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import BnfoldError, UsageError
from ..modelio import LoadedModel
from ..verify.session import SessionResult, create_session
from .feeds import FeedSet, feeds_for
from .formatting import setting_label
from .modelinfo import ModelFacts, model_facts
from .progress import ProgressSink
from .report import CANDIDATE, ORIGINAL, UNAVAILABLE, Comparison, ModelResult, Unavailable
from .runner import (
    RoundPlan,
    binding_device,
    measure_interleaved,
    needs_host_binding,
    prepare_run,
    time_once_ms,
)
from .stats import speedup_estimate, summarize


class Measurement:
    """Measures settings one after another and accumulates their results."""

    def __init__(
        self,
        original: LoadedModel,
        candidate: LoadedModel,
        *,
        plan: RoundPlan,
        threads: int | None,
        provider_options: Mapping[str, Mapping[str, Any]] | None,
        include_copies: bool,
        seed: int,
        resamples: int,
        confidence: float,
        progress: ProgressSink | None,
    ) -> None:
        self.models = {ORIGINAL: original, CANDIDATE: candidate}
        self.facts: dict[str, ModelFacts] = {
            ORIGINAL: model_facts(original),
            CANDIDATE: model_facts(candidate),
        }
        self.plan = plan
        self.threads = threads
        self.provider_options = {
            name: dict(options) for name, options in (provider_options or {}).items()
        }
        self.include_copies = include_copies
        self.seed = seed
        self.resamples = resamples
        self.confidence = confidence
        self.progress = progress
        self.results: list[ModelResult] = []
        self.comparisons: list[Comparison] = []
        self.unavailable: list[Unavailable] = []

    def measure_setting(
        self, provider: str, level: str, feed_sets: list[FeedSet], *, explicit: bool
    ) -> None:
        sessions: dict[str, SessionResult] = {}
        for role in (ORIGINAL, CANDIDATE):
            attempt = create_session(
                _session_source(self.models[role]),
                provider,
                level,
                threads=self.threads,
                provider_options=self.provider_options.get(provider),
                role=role,
            )
            if attempt.status != "ok":
                reason = attempt.reason or "unavailable"
                if role == CANDIDATE:
                    reason = f"candidate session: {reason}"
                self._record_unavailable(attempt, reason, feed_sets, explicit=explicit)
                return
            sessions[role] = attempt
        for feed_set in feed_sets:
            self._measure_batch(sessions, feed_set)

    def _record_unavailable(
        self, attempt: SessionResult, reason: str, feed_sets: list[FeedSet], *, explicit: bool
    ) -> None:
        self.unavailable.append(Unavailable(attempt.provider, attempt.level, reason, explicit))
        for feed_set in feed_sets:
            for role in (ORIGINAL, CANDIDATE):
                self.results.append(
                    ModelResult(
                        model=role,
                        provider=attempt.provider,
                        level=attempt.level,
                        batch=feed_set.batch,
                        facts=self.facts[role],
                        status=UNAVAILABLE,
                        reason=reason,
                        actual_providers=list(attempt.actual_providers),
                    )
                )

    def _measure_batch(self, sessions: dict[str, SessionResult], feed_set: FeedSet) -> None:
        provider = sessions[ORIGINAL].provider
        level = sessions[ORIGINAL].level
        label = setting_label(provider, level, feed_set.batch)
        runs = {}
        first_run_ms = {}
        for role, attempt in sessions.items():
            feeds = feeds_for(self.models[role].model, feed_set.feeds, role)
            device = binding_device(provider, include_copies=self.include_copies)
            if device is None and needs_host_binding(attempt.session, feeds):
                device = "cpu"
            device_id = int(attempt.provider_options.get("device_id", 0))
            run = prepare_run(attempt.session, feeds, device=device, device_id=device_id).run_once
            with _onnxruntime_failure(role, label):
                first_run_ms[role] = time_once_ms(run)
            runs[role] = run

        on_round = self._progress_callback(label)
        try:
            with _onnxruntime_failure("models", label):
                original_ms, candidate_ms = measure_interleaved(
                    [runs[ORIGINAL], runs[CANDIDATE]], self.plan, on_round=on_round
                )
        finally:
            if self.progress is not None:
                self.progress.end()

        for role, samples in ((ORIGINAL, original_ms), (CANDIDATE, candidate_ms)):
            attempt = sessions[role]
            self.results.append(
                ModelResult(
                    model=role,
                    provider=provider,
                    level=level,
                    batch=feed_set.batch,
                    facts=self.facts[role],
                    actual_providers=list(attempt.actual_providers),
                    latency=summarize(samples),
                    session_create_ms=attempt.create_ms,
                    first_run_ms=first_run_ms[role],
                    samples_ms=samples,
                )
            )
        estimate = speedup_estimate(
            original_ms,
            candidate_ms,
            resamples=self.resamples,
            confidence=self.confidence,
            seed=self.seed,
        )
        self.comparisons.append(
            Comparison(
                provider=provider,
                level=level,
                batch=feed_set.batch,
                original_p50_ms=float(np.median(original_ms)),
                candidate_p50_ms=float(np.median(candidate_ms)),
                estimate=estimate,
            )
        )

    def _progress_callback(self, label: str) -> Callable[[int, float], None] | None:
        progress = self.progress
        if progress is None:
            return None
        plan = self.plan
        if plan.min_time_s is None:
            progress.begin(label, float(plan.minimum_rounds()), "rounds")
            return lambda rounds, _elapsed: progress.update(float(rounds))
        progress.begin(label, plan.min_time_s, "s")
        return lambda _rounds, elapsed: progress.update(min(elapsed, plan.min_time_s or elapsed))


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

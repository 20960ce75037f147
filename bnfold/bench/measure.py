"""Measuring one setting: fresh session pairs in batches, until the verdict or the budget.

A setting is (execution provider, optimization level); each batch size of it is measured
with the same sessions, since a session serves every shape its model allows. Pair ``k``
creates its sessions in alternating order (original first for even ``k``, candidate first
for odd ``k``: the first session created can land on fresher memory), runs each once
(untimed, recorded), warms them up and times interleaved rounds. With ``calibrate``, every
pair also gets a second session of the original, timed in the same rounds: original
against itself is the A/A noise floor.

The first pair of a setting is also its price tag: its session creation, first runs and
warm-up rounds give the ``budget.PairCost`` that plans how many pairs of how many seconds
the setting's share of the budget buys, before its own rounds are timed. After every
``SequentialPlan.batch`` pairs (and at the last one) each batch size's verdict is looked at
(``sequential.decide``); a batch size that is decided is not timed again, and the setting
ends when every batch size is decided, the planned pairs are done, or another pair would
not end before the setting's deadline.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import BnfoldError, UsageError
from ..runtime.session import SessionResult, create_session
from ..runtime.settings import RuntimeChoice
from ..storage.load import LoadedModel
from .budget import (
    MIN_ROUNDS,
    WARMUP_FRACTION,
    Budget,
    PairCost,
    PairSchedule,
    SettingClock,
    plan_pairs,
)
from .design import BenchDesign
from .feeds import FeedSet, feeds_for
from .formatting import setting_label
from .modelinfo import ModelFacts, model_facts
from .progress import ProgressSink
from .records import (
    CALIBRATION,
    CANDIDATE,
    ORIGINAL,
    UNAVAILABLE,
    Comparison,
    ModelResult,
    Unavailable,
)
from .runner import (
    RoundPlan,
    RunOnce,
    binding_device,
    measure_interleaved,
    needs_host_binding,
    prepare_run,
    time_once_ms,
    warm_up,
)
from .sequential import DEFAULT_BATCH, DEFAULT_FIRST_LOOK, Decision, SequentialPlan, decide
from .stats import (
    INCONCLUSIVE,
    SpeedupEstimate,
    pair_log_speedup,
    pairs_needed,
    speedup_over_pairs,
    summarize,
)
from .typical import kept_pairs, typical_latency


@dataclass
class _BatchRecord:
    """What the pairs of one batch size measured so far, and its latest look."""

    feed_set: FeedSet
    label: str
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    create_ms: dict[str, list[float]] = field(default_factory=dict)
    first_run_ms: dict[str, list[float]] = field(default_factory=dict)
    log_speedups: list[float] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)
    actual_providers: dict[str, list[str]] = field(default_factory=dict)
    decision: Decision | None = None

    @property
    def open(self) -> bool:
        return self.decision is None or not self.decision.final


@dataclass
class _SettingPlan:
    """A setting's schedule (from its first pair), its looks and its deadline."""

    schedule: PairSchedule
    looks: SequentialPlan
    clock: SettingClock
    pairs: int = 0

    @property
    def share_s(self) -> float:
        return self.schedule.share_s

    def pair_done(self, seconds: float, max_pairs: int) -> None:
        """Count a pair that took ``seconds``; after the first, re-plan the pair count from
        what it really cost (before any look, so the looks keep a plan fixed in advance)."""
        self.clock.pair_done(seconds)
        self.pairs += 1
        if self.pairs == 1:
            self.schedule = self.schedule.after_first_pair(seconds, max_pairs)
            first_look = min(self.looks.first_look, self.schedule.pairs)
            self.looks = replace(self.looks, first_look=first_look)

    def final(self) -> bool:
        """No further pair: the planned pairs are done or another would end too late. A
        budget that ends before the first look makes this last look the first (no alpha
        was spent before it, and the time, not the data, decided it), so it can decide."""
        if self.pairs < self.schedule.pairs and self.clock.another_fits():
            return False
        if self.pairs < self.looks.first_look:
            self.looks = replace(self.looks, first_look=max(2, self.pairs))
        return True

    def look_due(self) -> bool:
        return self.pairs % self.looks.batch == 0


class Measurement:
    """Measures settings one after another within ``budget``; accumulates their results."""

    def __init__(
        self,
        original: LoadedModel,
        candidate: LoadedModel,
        design: BenchDesign,
        runtime: RuntimeChoice,
        budget: Budget,
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
        self.budget = budget
        self.progress = progress
        self.results: list[ModelResult] = []
        self.comparisons: list[Comparison] = []
        self.unavailable: list[Unavailable] = []

    def measure_setting(
        self, provider: str, level: str, feed_sets: list[FeedSet], *, explicit: bool
    ) -> None:
        records = [
            _BatchRecord(feed_set, setting_label(provider, level, feed_set.batch))
            for feed_set in feed_sets
        ]
        clock = self.budget.clock
        started = clock()
        progress = self.progress
        label = f"{provider}/{level}"
        first_share = self.budget.share(started)  # a default budget may grow on the first pair
        if progress is not None:
            progress.begin(label, first_share, "s")
        setting: _SettingPlan | None = None
        try:
            while any(record.open for record in records):
                began = clock()
                sessions = self._sessions(0 if setting is None else setting.pairs, provider, level)
                if isinstance(sessions, tuple):
                    self._record_unavailable(*sessions, feed_sets, explicit=explicit)
                    return
                measured = [record for record in records if record.open]
                runs = [self._first_runs(sessions, record) for record in measured]
                del sessions  # the runs hold the sessions; dropped with them below
                if setting is None:
                    setting = self._plan_setting(started, began, runs)
                    if progress is not None and setting.share_s != first_share:
                        progress.end()  # the bar's length is the share it now has
                        progress.begin(label, setting.share_s, "s")
                for record, record_runs in zip(measured, runs, strict=True):
                    self._time_pair(record, record_runs, setting.schedule)
                del runs  # release the sessions (and their thread pools) before the next pair
                setting.pair_done(clock() - began, self.plan.pairs)
                final = setting.final()
                for record in measured:
                    if final or setting.look_due():
                        record.decision = decide(
                            record.log_speedups,
                            setting.looks,
                            previous=record.decision,
                            final=final,
                        )
                if progress is not None:
                    progress.update(clock() - started)
        finally:
            if progress is not None:
                progress.end()
            self.budget.setting_done()
        assert setting is not None
        for record in records:
            self._finish(provider, level, record, setting)

    def _sessions(
        self, pair: int, provider: str, level: str
    ) -> dict[str, SessionResult] | tuple[str, SessionResult]:
        """This pair's sessions, created in alternating order; ``(role, attempt)`` of the
        one that failed instead when a provider does not really run."""
        order = self.roles if pair % 2 == 0 else self.roles[::-1]
        sessions: dict[str, SessionResult] = {}
        for role in order:
            attempt = create_session(
                _session_source(self.models[role]),
                provider,
                level,
                role=role,
                **self.runtime.session_arguments(provider),
            )
            if attempt.status != "ok":
                return role, attempt
            sessions[role] = attempt
        return sessions

    def _record_unavailable(
        self, role: str, attempt: SessionResult, feed_sets: list[FeedSet], *, explicit: bool
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

    def _first_runs(
        self, sessions: dict[str, SessionResult], record: _BatchRecord
    ) -> list[RunOnce]:
        """Bind each session to this batch size's inputs and run it once (recorded)."""
        first = sessions[ORIGINAL]
        runs = []
        for role in self.roles:
            attempt = sessions[role]
            feeds = feeds_for(self.models[role].model, record.feed_set.feeds, role)
            device = binding_device(first.provider, include_copies=self.design.include_copies)
            if device is None and needs_host_binding(attempt.session, feeds):
                device = "cpu"
            device_id = int(attempt.provider_options.get("device_id", 0))
            run = prepare_run(attempt.session, feeds, device=device, device_id=device_id).run_once
            with _onnxruntime_failure(role, record.label):
                record.first_run_ms.setdefault(role, []).append(time_once_ms(run))
            record.create_ms.setdefault(role, []).append(attempt.create_ms)
            record.actual_providers[role] = list(attempt.actual_providers)
            runs.append(run)
        return runs

    def _plan_setting(
        self, started: float, began: float, runs: list[list[RunOnce]]
    ) -> _SettingPlan:
        """Price the first pair (its setup so far, then its minimum warm-up rounds) and
        plan the setting's pairs from the share of the budget it gets."""
        clock = self.budget.clock
        setup_s = clock() - began
        warm_began = clock()
        round_ms = 0.0
        for record_runs in runs:
            with _onnxruntime_failure("models", "the first pair's warm-up"):
                round_ms += warm_up(record_runs, max(self.plan.warmup, 1))
        cost = PairCost(
            setup_s=setup_s,
            round_s=round_ms / 1000.0,
            warmup_s=clock() - warm_began,
            batches=len(runs),
        )
        self.budget.settle_default(cost)
        share = self.budget.share(started)
        schedule = plan_pairs(
            share,
            cost,
            max_pairs=self.plan.pairs,
            timed_s=self.plan.timed_seconds(),
            rounds=self.plan.rounds,
        )
        # The information fraction is over --pairs, not the pairs the share fits: a budget
        # that ends first makes a final look spending all the alpha left, which keeps the
        # last looks less strict (sequential.SequentialPlan). A share too small for the
        # first look moves it to the last pair, so that look can still decide.
        looks = SequentialPlan(
            confidence=self.design.confidence,
            margin=self.design.margin,
            max_pairs=self.plan.pairs,
            first_look=min(DEFAULT_FIRST_LOOK, schedule.pairs),
            batch=DEFAULT_BATCH,
        )
        return _SettingPlan(schedule, looks, SettingClock(started + share, clock))

    def _time_pair(self, record: _BatchRecord, runs: list[RunOnce], schedule: PairSchedule) -> None:
        """Warm up and time one pair (plus the calibration session) on one batch size."""
        with _onnxruntime_failure("models", record.label):
            if schedule.rounds is not None:
                count = max(self.plan.warmup, math.ceil(schedule.rounds * WARMUP_FRACTION))
                warm_up(runs, count)
                phase = RoundPlan(iters=schedule.rounds, warmup=0)
            else:
                assert schedule.timed_s is not None
                limit = schedule.timed_s * WARMUP_FRACTION
                warm_up(runs, self.plan.max_rounds, time_limit_s=limit, minimum=self.plan.warmup)
                phase = RoundPlan(
                    iters=MIN_ROUNDS,
                    min_time_s=schedule.timed_s,
                    warmup=0,
                    max_rounds=self.plan.max_rounds,
                )
            samples = measure_interleaved(runs, phase)
        for role, sample in zip(self.roles, samples, strict=True):
            record.samples.setdefault(role, []).append(sample)
        record.log_speedups.append(pair_log_speedup(samples[0], samples[1]))
        if len(samples) > 2:
            record.calibration.append(pair_log_speedup(samples[0], samples[2]))

    def _finish(
        self, provider: str, level: str, record: _BatchRecord, setting: _SettingPlan
    ) -> None:
        batch = record.feed_set.batch
        kept = kept_pairs(record.log_speedups)
        typical = {}
        for role in (ORIGINAL, CANDIDATE):
            pooled = np.concatenate(record.samples[role])
            medians = [float(np.median(s)) for s in record.samples[role]]
            typical[role] = typical_latency(medians, kept)
            self.results.append(
                ModelResult(
                    model=role,
                    provider=provider,
                    level=level,
                    batch=batch,
                    facts=self.facts[role],
                    actual_providers=record.actual_providers.get(role, []),
                    latency=summarize(pooled),
                    typical_ms=typical[role],
                    session_create_ms=float(np.median(record.create_ms[role])),
                    first_run_ms=float(np.median(record.first_run_ms[role])),
                    samples_ms=pooled,
                )
            )
        decision = record.decision
        assert decision is not None, "every setting ends with a final look"
        confidence, margin = self.design.confidence, self.design.margin
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
                original_ms=typical[ORIGINAL],
                candidate_ms=typical[CANDIDATE],
                estimate=_estimate(record.log_speedups, decision, confidence, margin),
                decision=decision,
                rounds_per_pair=int(np.median([s.size for s in record.samples[ORIGINAL]])),
                pair_speedups=[float(np.exp(d)) for d in record.log_speedups],
                calibration=calibration,
                seconds_per_pair=float(np.mean(setting.clock.pair_seconds)),
                timed_seconds_per_pair=setting.schedule.timed_s,
                schedule=setting.schedule.describe(),
                stopped_by=_stopped_by(decision, self.plan.pairs),
            )
        )


def _stopped_by(decision: Decision, max_pairs: int) -> str:
    """``decided``, ``pairs`` (all ``--pairs`` were timed) or ``budget`` (the setting's share
    ran out first, whether before its planned pairs or by planning fewer)."""
    if decision.verdict != INCONCLUSIVE:
        return "decided"
    return "pairs" if decision.pairs >= max_pairs else "budget"


def _estimate(
    log_ratios: list[float], decision: Decision, confidence: float, margin: float
) -> SpeedupEstimate:
    """The report's estimate: the trimmed-mean speedup and the pairs' spread (``stats``),
    with the decision's verdict and interval (at the level its look spent); for
    ``inconclusive``, the pairs a decisive run would need at the nominal ``confidence``."""
    fixed = speedup_over_pairs(log_ratios, confidence=confidence, margin=margin)
    needed = None
    if decision.verdict == INCONCLUSIVE and math.isfinite(fixed.pair_sd):
        needed = pairs_needed(
            math.log(fixed.speedup), fixed.pair_sd, margin, confidence, fixed.pairs
        )
    return replace(
        fixed,
        ci_low=decision.low,
        ci_high=decision.high,
        confidence=decision.confidence_used,
        verdict=decision.verdict,
        pairs_needed=needed,
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

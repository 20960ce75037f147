"""Run the reference and the candidate on input sets, compare outputs and fold sites.

Per (provider, level) the candidate runs twice:

1. as it is (the session a deployment builds): its graph outputs decide the verdict as
   before, ``|cand - ref| <= atol + rtol*|ref|`` per element;
2. with the fold sites exposed as extra outputs (``sites.py``): every site must pass the same
   rule. Exposing a tensor keeps onnxruntime from fusing across it, so this session is kept
   apart from the one in 1, whose outputs are what users get.

The reference is the original with the same sites exposed, on CPU with ``ORT_DISABLE_ALL``
(no fusion happens at that level, so exposing changes nothing in it). When something
differs, the first difference in the original's topological order is named: a wrong fold
shows first at its own site, everything downstream only inherits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ModelLoadError, UsageError
from ..runtime.session import (
    REFERENCE_LEVEL,
    REFERENCE_PROVIDER,
    ModelWithData,
    create_session,
    run_session,
)
from ..runtime.settings import RuntimeChoice
from ..storage.load import LoadedModel
from .compare import OutputComparison, compare_outputs, compare_sites, judge_by_float64
from .local import LocalJudge
from .quantized import QuantGrid, judge_quantized
from .report import FAILED, PASSED, UNAVAILABLE, ProviderResult
from .settings import Tolerance
from .sites import SitePlan, with_outputs
from .truth import Float64Truth


@dataclass
class Prepared:
    """A model as onnxruntime gets it: plain, and with the sites exposed (None: no sites)."""

    plain: onnx.ModelProto | Path
    exposed: onnx.ModelProto | None
    external_data_dir: Path | None

    def with_sites(self) -> ModelWithData | Path:
        """The model with its sites exposed where there are any, with its data folder."""
        model = self.exposed if self.exposed is not None else self.plain
        return model if isinstance(model, Path) else ModelWithData(model, self.external_data_dir)


@dataclass(frozen=True)
class Trial:
    """What every run of one verification shares: the input sets, the sites and graph
    outputs compared (by name), the tolerance and where onnxruntime runs."""

    input_sets: list[dict[str, np.ndarray]]
    plan: SitePlan
    output_names: list[str]
    tolerance: Tolerance
    runtime: RuntimeChoice
    # The float64 original, asked only for tensors beyond the allowance (None: never).
    truth: Float64Truth | None = None
    # Quantized outputs and sites, judged in quantization steps (``quantized.py``).
    quantized: dict[str, QuantGrid] = field(default_factory=dict)
    # Quantized tensors judged layer by layer on CPU (``local.py``; None: end to end only).
    local: LocalJudge | None = None


def prepare(loaded: LoadedModel, plan: SitePlan, *, probes: bool = False) -> Prepared:
    """``loaded`` with the plan's sites exposed (and its If conditions when ``probes``)."""
    # A path lets onnxruntime read external data itself and skips a serialization copy.
    plain: onnx.ModelProto | Path = loaded.path if loaded.path is not None else loaded.model
    names = plan.names + (plan.probes if probes else [])
    exposed = with_outputs(loaded.model, names) if names else None
    return Prepared(plain, exposed, loaded.base_dir)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def reference_runs(original: Prepared, trial: Trial) -> list[dict[str, Any]]:
    """Every output (graph outputs and exposed sites) of the original, per input set."""
    attempt = create_session(
        original.with_sites(),
        REFERENCE_PROVIDER,
        REFERENCE_LEVEL,
        role="original",
        **trial.runtime.session_arguments(None),
    )
    if attempt.status != "ok" or attempt.session is None:
        raise ModelLoadError(f"cannot run the original on CPU: {attempt.reason}")
    outputs = []
    for index, feeds in enumerate(trial.input_sets):
        try:
            outputs.append(run_session(attempt.session, feeds))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
            raise UsageError(
                f"the original model fails on input set {index}: {first_line(exc)}",
                hint="give real data with --inputs, or set sizes/values with --shape, --dim, --range",
            ) from None
    return outputs


def original_at(original: Prepared, level: str, trial: Trial) -> list[dict[str, Any]] | None:
    """The original on CPU at ``level``, per input set: its graph outputs from the plain model
    (onnxruntime fuses as it would for a user), its sites from the exposed one. None when it
    does not run there."""
    runs: list[dict[str, Any]] = [{} for _ in trial.input_sets]
    models: list[Any] = [original.plain]
    if original.exposed is not None:
        models.append(original.with_sites())
    for model in models:
        attempt = create_session(
            model,
            REFERENCE_PROVIDER,
            level,
            role="original",
            **trial.runtime.session_arguments(None),
        )
        if attempt.status != "ok" or attempt.session is None:
            return None
        for run, feeds in zip(runs, trial.input_sets, strict=True):
            try:
                produced = run_session(attempt.session, feeds)
            except Exception:  # noqa: BLE001 - then there is no same-level reference
                return None
            for name, value in produced.items():
                run.setdefault(name, value)
    return runs


def split(
    run: dict[str, Any], output_names: list[str], skip: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(graph outputs, sites) of one run of an exposed model; ``skip``: probes, neither."""
    outputs = {n: run[n] for n in output_names if n in run}
    sites = {n: v for n, v in run.items() if n not in outputs and n not in (skip or ())}
    return outputs, sites


def run_candidate(
    candidate: Prepared, provider: str, level: str, reference: list[dict[str, Any]], trial: Trial
) -> ProviderResult:
    """The candidate on one provider and level against ``reference`` (outputs, then sites)."""
    attempt = create_session(
        candidate.plain,
        provider,
        level,
        role="candidate",
        **trial.runtime.session_arguments(provider),
    )
    result = ProviderResult(
        provider=attempt.provider,
        level=level,
        status=UNAVAILABLE,
        reason=attempt.reason,
        actual_providers=attempt.actual_providers,
        session_create_ms=round(attempt.create_ms, 3),
    )
    if attempt.status != "ok" or attempt.session is None:
        return result
    references = [split(run, trial.output_names, trial.plan.probes) for run in reference]
    crashed = _compare_runs(result, attempt.session, [r[0] for r in references], "outputs", trial)
    if crashed is None and candidate.exposed is not None:
        _compare_sites(result, candidate, (provider, level), [r[1] for r in references], trial)
    result.status = FAILED if result.failing_run is not None or crashed else PASSED
    if result.status == FAILED and crashed is None:
        result.reason = _first_divergence(result, trial.plan)
    return result


def _compare_sites(
    result: ProviderResult,
    candidate: Prepared,
    setting: tuple[str, str],
    site_refs: list[dict[str, Any]],
    trial: Trial,
) -> None:
    """The candidate with its sites exposed on ``setting`` (provider, level) against the
    reference's sites."""
    provider, level = setting
    try:
        attempt = create_session(
            candidate.with_sites(),
            provider,
            level,
            role="candidate with its fold sites exposed",
            **trial.runtime.session_arguments(provider),
        )
    except ModelLoadError as exc:
        result.site_error = exc.message
        return
    if attempt.status != "ok" or attempt.session is None:
        result.site_error = f"the candidate with exposed sites did not run: {attempt.reason}"
        return
    _compare_runs(result, attempt.session, site_refs, "sites", trial)


def _compare_runs(
    result: ProviderResult,
    session: Any,
    references: list[dict[str, Any]],
    what: str,
    trial: Trial,
) -> str | None:
    """Compare ``what`` (outputs or sites) over all input sets into ``result``; crash reason or None."""
    merged: dict[str, OutputComparison] = getattr(result, what)
    tolerance = trial.tolerance
    for index, (feeds, ref) in enumerate(zip(trial.input_sets, references, strict=True)):
        try:
            produced = run_session(session, feeds)
        except Exception as exc:  # noqa: BLE001 - the candidate crashing is a failure, not a bug here
            if what == "sites":
                result.site_error = f"the candidate with exposed sites raised on input set {index}: {first_line(exc)}"
                return result.site_error
            result.failing_run = index
            result.reason = f"candidate raised on input set {index}: {first_line(exc)}"
            return result.reason
        compare = compare_sites if what == "sites" else compare_outputs
        comparisons = compare(ref, produced, atol=tolerance.atol, rtol=tolerance.rtol)
        truth = trial.truth if result.provider == REFERENCE_PROVIDER else None
        comparisons = _judge(comparisons, ref, produced, truth, index)
        comparisons = judge_quantized(comparisons, ref, produced, trial.quantized)
        if trial.local is not None and result.provider == REFERENCE_PROVIDER:
            comparisons = trial.local.decide(comparisons, result.level, index)
        if result.failing_run is None and any(not c.passed for c in comparisons.values()):
            result.failing_run = index
        for name, comparison in comparisons.items():
            merged[name] = merged[name].merge(comparison) if name in merged else comparison
    return None


def _judge(
    comparisons: dict[str, OutputComparison],
    ref: dict[str, Any],
    produced: dict[str, Any],
    truth: Float64Truth | None,
    index: int,
) -> dict[str, OutputComparison]:
    """Tensors beyond the allowance judged again against the float64 original (``compare``)."""
    failing = [n for n, c in comparisons.items() if not c.passed and c.max_abs_error is not None]
    failing = [n for n in failing if n in ref and n in produced]
    if truth is None or not failing:
        return comparisons
    exact = truth.values(index)
    if exact is None:
        return comparisons
    judged = dict(comparisons)
    for name in failing:
        if name in exact:
            judged[name] = judge_by_float64(
                comparisons[name], ref[name], produced[name], exact[name]
            )
    return judged


def _first_divergence(result: ProviderResult, plan: SitePlan) -> str:
    """``first divergence at `t` (BN `b` folded into `c`): <what differs>`` in topological order."""
    bad = [(n, c) for n, c in result.outputs.items() if not c.passed]
    bad += [(n, c) for n, c in result.sites.items() if not c.passed]
    name, comparison = min(bad, key=lambda item: plan.position(item[0].split("[")[0]))
    site = plan.by_name(name)
    where = site.label() if site is not None else f"output `{name}`"
    run = f"input set {result.failing_run}, " if result.failing_run is not None else ""
    result.first_divergence = name
    return f"{run}first divergence at {where}: {comparison.reason}"

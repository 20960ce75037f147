"""Same-provider references and provider drift.

A provider's kernels differ from the CPU's: OpenVINO computes convolutions in its own
precision (~0.45 % relative on resnet_tiny in the issue's measurement), cuDNN uses TF32 by
default on Ampere and later (~1e-3 relative). Comparing a folded model on provider P with
the original on CPU would call such an exact fold a mismatch. So, for P other than CPU:

- the verdict compares candidate@(P, L) with original@(P, ``disable``): the same kernels see
  both models. ``disable`` and not L: at BASIC and above onnxruntime fuses Conv+BN itself
  (and gets MatMul->Transpose->BN wrong), so an optimized original would compare a fold with a
  fold;
- *drift* = original@(P, ``disable``) against original@(CPU, ``disable``), the anchor of truth,
  with the same metrics (outputs and sites). It is reported on its own line and never fails
  the fold verdict.

When the original does not run on P, P's rows fall back to the CPU reference and P's
candidate rows say why (provider truth as everywhere: ``session.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..runtime.session import REFERENCE_LEVEL, create_session, run_session
from .compare import OutputComparison, compare_outputs, compare_sites

if TYPE_CHECKING:  # runner imports report, which imports this module
    from .runner import Prepared, Trial


def provider_references(
    original: Prepared,
    providers: list[str],
    cpu_reference: list[dict[str, Any]],
    trial: Trial,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """``({provider: original runs on it}, {provider: drift})`` for each non-CPU provider.

    A drift entry is ``{"status": "measured", "outputs": {name: OutputComparison}, "sites":
    {...}}`` or ``{"status": "unavailable", "reason": str}``.
    """
    references: dict[str, list[dict[str, Any]]] = {}
    drift: dict[str, dict[str, Any]] = {}
    atol, rtol = trial.tolerance.atol, trial.tolerance.rtol
    for provider in providers:
        attempt = create_session(
            original.with_sites(),
            provider,
            REFERENCE_LEVEL,
            role="original",
            **trial.runtime.session_arguments(provider),
        )
        if attempt.status != "ok" or attempt.session is None:
            drift[provider] = {"status": "unavailable", "reason": attempt.reason}
            continue
        try:
            runs = [run_session(attempt.session, feeds) for feeds in trial.input_sets]
        except Exception as exc:  # noqa: BLE001 - the provider failing the original is drift news
            drift[provider] = {
                "status": "unavailable",
                "reason": f"the original raised on {provider}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}",
            }
            continue
        references[provider] = runs
        outputs: dict[str, OutputComparison] = {}
        sites: dict[str, OutputComparison] = {}
        for cpu_run, run in zip(cpu_reference, runs, strict=True):
            cpu_outputs = {n: v for n, v in cpu_run.items() if n in trial.output_names}
            cpu_sites = {n: v for n, v in cpu_run.items() if n not in trial.output_names}
            for target, compared in (
                (outputs, compare_outputs(cpu_outputs, run, atol=atol, rtol=rtol)),
                (sites, compare_sites(cpu_sites, run, atol=atol, rtol=rtol)),
            ):
                for name, comparison in compared.items():
                    target[name] = target[name].merge(comparison) if name in target else comparison
        drift[provider] = {"status": "measured", "outputs": outputs, "sites": sites}
    return references, drift

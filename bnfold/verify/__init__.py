"""Prove a candidate model computes what the original computes, under onnxruntime.

``verify(original, candidate)``:

1. Loads both (paths or ``onnx.ModelProto``) and checks the candidate's structure: the ONNX
   checker with ``full_check=True``, the same graph inputs/outputs (names, element types,
   shapes), IR version and opsets (``StructureMismatch``, exit 3).
2. Builds input sets from the original's graph inputs (``inputs.py``), or reads ``inputs``.
3. Runs the *original* on CPU with ``ORT_DISABLE_ALL``: the reference. Any optimized session
   would fold BatchNormalization itself (onnxruntime fuses Conv+BN at BASIC) and compare a
   fold with a fold.
   The original runs with its fold sites exposed (``sites.py``): the tensors both models
   produce under the same name, above all each folded BatchNormalization's output.
4. Runs the candidate on every requested provider at every requested optimization level,
   checking that onnxruntime really used that provider (``session.py``), as it is and with
   the same sites exposed (``runner.py``).
5. Compares every output and site by name (``compare.py``), names the first divergence in
   topological order, flags outputs that are weak evidence (``evidence.py``) and returns a
   ``VerifyReport``.

The function returns a report and never exits; ``report.raise_for_status()`` raises
``VerificationFailed`` (exit 1) or ``ProviderUnavailable`` (exit 4).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx

from ..errors import OutputWriteError
from ..runtime.generate import alternating
from ..runtime.inputs import (
    InputSpec,
    check_inputs,
    generate_inputs,
    input_specs,
    load_inputs,
    save_inputs,
)
from ..runtime.session import brief_reason, cuda_available, onnxruntime_version, set_verbose
from ..runtime.settings import DEFAULT_RUNS, DEFAULT_SEED, InputPlan, RuntimeChoice
from ..storage.dtypes import is_float_dtype
from ..storage.load import LoadedModel, load_model
from ..storage.outputs import Outputs
from .drift import provider_references
from .evidence import weak_outputs
from .local import LocalJudge, plan_local
from .quantized import level_effect, quant_grids
from .report import ProviderResult, VerifyReport
from .runner import Trial, original_at, prepare, reference_runs, run_candidate, split
from .settings import DEFAULT_LEVELS, Tolerance, VerifySettings
from .sites import DEFAULT_BUDGET_BYTES, DEFAULT_SITE_MODE, SiteChoice, plan_sites
from .structure import StructureMismatch
from .structure import check_structure as _check_structure
from .truth import Float64Truth

ModelSource = Union[str, "os.PathLike[str]", onnx.ModelProto]
InputsArg = Union[str, "os.PathLike[str]", Mapping[str, Any], Sequence[Any], None]

__all__ = [
    "ProviderResult",
    "StructureMismatch",
    "Tolerance",
    "VerifyReport",
    "VerifySettings",
    "verify",
    "verify_with",
]


def verify(
    original: ModelSource,
    candidate: ModelSource,
    *,
    providers: str | Sequence[str] | None = None,
    levels: str | Sequence[str] = DEFAULT_LEVELS,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    default_dim: int | None = None,
    seed: int = DEFAULT_SEED,
    runs: int = DEFAULT_RUNS,
    inputs: InputsArg = None,
    atol: float | None = None,
    rtol: float | None = None,
    threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    save_failing: str | os.PathLike[str] | bool | None = None,
    check_structure: bool = True,
    sites: str = DEFAULT_SITE_MODE,
    site_budget_bytes: int = DEFAULT_BUDGET_BYTES,
    verbose: bool = False,
) -> VerifyReport:
    """Compare ``candidate`` with ``original`` on every requested provider and level.

    - ``providers``: ``"cpu,cuda"`` or a list of short/full names; None = CPU plus CUDA
      when CUDA really works (an unavailable default CUDA is only noted).
    - ``levels``: onnxruntime optimization levels for the candidate (``disable``, ``basic``,
      ``extended``, ``all``); default ``all``, what deployments use.
    - ``shapes`` / ``dims`` / ``ranges`` / ``default_dim``: see ``bnfold.runtime.inputs``;
      ``default_dim=None`` sizes free dims from the graph (docs/inputs.md: the batch 1, the
      size the layers were built for, else 224 for an image input).
    - ``seed`` and ``runs``: input set ``i`` is generated with seed ``seed + i``.
    - ``inputs``: real data instead: an ``.npz`` path, a ``{name: array}`` mapping, or a list
      of either (one input set each); ``runs`` and ``seed`` are then unused.
    - ``atol`` / ``rtol``: override the per-dtype defaults of ``bnfold.verify.compare``.
    - ``provider_options``: ``{"cuda": {"device_id": 1}}``, merged over the defaults.
    - ``save_failing``: folder for the failing input set (``.npz``); None = beside the
      candidate when it is a file; False = never save.
    - ``check_structure``: False skips the checker/interface checks (numbers only).
    - ``sites``: ``folds`` (default) compares each folded BN's output tensor in both models,
      ``all`` every tensor both produce under one name, ``none`` only the graph outputs;
      ``site_budget_bytes`` caps the site tensors kept for all input sets.
    - ``verbose``: let onnxruntime's own log lines through to stderr.
    """
    settings = VerifySettings(
        runtime=RuntimeChoice.of(
            providers=providers,
            levels=levels,
            threads=threads,
            provider_options=provider_options,
            verbose=verbose,
        ),
        inputs=InputPlan.of(
            shapes=shapes,
            dims=dims,
            ranges=ranges,
            default_dim=default_dim,
            seed=seed,
            runs=runs,
            inputs=inputs,
        ),
        tolerance=Tolerance.of(atol, rtol),
        sites=SiteChoice.of(sites, site_budget_bytes),
        save_failing=save_failing,
        check_structure=check_structure,
    )
    return verify_with(original, candidate, settings)


def verify_with(
    original: ModelSource, candidate: ModelSource, settings: VerifySettings
) -> VerifyReport:
    """``verify`` with its settings already built (the command line builds them from its
    option groups)."""
    started = time.perf_counter()
    old_verbose = set_verbose(settings.runtime.verbose)
    try:
        report = _verify(original, candidate, settings)
    finally:
        set_verbose(old_verbose)
    report.duration_s = time.perf_counter() - started
    return report


def _verify(
    original: ModelSource, candidate: ModelSource, settings: VerifySettings
) -> VerifyReport:
    original_model = load_model(original, role="original")
    candidate_model = load_model(candidate, role="candidate")
    structure_notes: list[str] = []
    if settings.check_structure:
        structure_notes = _check_structure(
            original_model.model, candidate_model.model, candidate_model.path, original_model.path
        )

    specs, notes = input_specs(original_model.model, **settings.inputs.spec_arguments())
    input_plan = settings.inputs
    flags = [spec.name for spec in specs if alternating(spec)]
    if flags and not input_plan.inputs and input_plan.runs < 2:
        # A one-element bool takes one value per input set: two sets give it both.
        input_plan = dataclasses.replace(input_plan, runs=2)
        notes.append(
            f"2 input sets instead of {settings.inputs.runs}: one-element boolean input(s)"
            f" {', '.join(repr(n) for n in flags)} take True in one and False in the other"
        )
    input_sets, seeds, sources = _input_sets(specs, input_plan)

    plan = plan_sites(
        original_model.model,
        candidate_model.model,
        settings.sites.mode,
        {spec.name: spec.shape for spec in specs},
        len(input_sets),
        settings.sites.budget_bytes,
        (original_model.base_dir, candidate_model.base_dir),
    )
    original_run = prepare(original_model, plan, probes=True)
    candidate_run = prepare(candidate_model, plan)
    output_names = [vi.name for vi in original_model.model.graph.output]
    # Tolerance from the numbers (``compare.py``), with the default tolerances only.
    tolerance = settings.tolerance
    truth = (
        Float64Truth(original_model.model, original_model.base_dir, input_sets)
        if tolerance.atol is None and tolerance.rtol is None
        else None
    )
    grids = quant_grids(original_model.model, output_names + plan.names, original_model.base_dir)
    local = (
        LocalJudge.build(
            plan_local(
                original_model.model,
                candidate_model.model,
                output_names + plan.names,
                original_model.base_dir,
            ),
            (original_model.model, candidate_model.model),
            (original_model.base_dir, candidate_model.base_dir),
            input_sets,
            settings.runtime.session_arguments(None),
            (tolerance.atol, tolerance.rtol),
        )
        if grids and "cpu" in (settings.runtime.providers or ["cpu"])
        else None
    )
    trial = Trial(
        input_sets, plan, output_names, settings.tolerance, settings.runtime, truth, grids, local
    )
    reference = reference_runs(original_run, trial)
    if truth is not None:
        truth.reference = reference
    branches = plan.branches(reference, input_sets)
    for run in reference:  # the If conditions were read; they are not compared
        for probe in plan.probes:
            run.pop(probe, None)
    weak = weak_outputs(
        original_model.model,
        [split(run, output_names)[0] for run in reference],
        settings.tolerance.atol,
        input_sets,
    )
    # A quantized integer output with a known scale is judged in steps: not weak evidence.
    weak = {
        name: w
        for name, w in weak.items()
        if not (name in grids and grids[name].kind == "quantized" and w.kind == "integer")
    }
    # A weak output some difference reaches unchecked: with the sites, and without them
    # (when no site could be compared on any configuration).
    graded = [w.output for w in weak.values() if w.kind != "same-argmax"]
    strong = [n for n in output_names if n not in weak]
    uncovered = (plan.uncovered(graded, strong, True), plan.uncovered(graded, strong, False))

    requested = settings.runtime.providers
    skipped_notes: list[str] = []
    if requested is None:
        use = ["cpu"]
        cuda_ok, cuda_reason = cuda_available()
        if cuda_ok:
            use.append("cuda")
        else:
            skipped_notes.append(f"CUDA unavailable: {brief_reason(cuda_reason)}")
    else:
        use = list(requested)

    # Like with like: on provider P the candidate is compared with the original on P (same
    # kernels, same precision); how far P's original is from the CPU reference is drift,
    # reported on its own line (``drift.py``).
    same_provider, drift = provider_references(
        original_run, [p for p in use if p != "cpu"], reference, trial
    )
    # Quantized tensors: the candidate at level L against the original at L (``quantized.py``);
    # how far L alone moves the original is reported as the kernel choice's effect.
    at_level: dict[str, list[dict[str, Any]]] = {}
    kernel_choice: dict[str, dict[str, Any]] = {}
    for level in settings.runtime.levels if grids and "cpu" in use else ():
        if level == "disable":
            continue
        runs = original_at(original_run, level, trial)
        if runs is None:
            notes.append(
                f"the original does not run on cpu/{level}: quantized tensors at {level} are"
                " judged against the original at disable"
            )
            continue
        at_level[level] = [
            {**ref, **{n: run[n] for n in grids if n in run and n in ref}}
            for ref, run in zip(reference, runs, strict=True)
        ]
        kernel_choice[level] = level_effect(reference, runs, grids)
    results = [
        run_candidate(
            candidate_run,
            provider,
            level,
            at_level.get(level, reference)
            if provider == "cpu"
            else same_provider.get(provider, reference),
            trial,
        )
        for provider in use
        for level in settings.runtime.levels
    ]
    for result in results:
        if local is not None and result.provider == "cpu" and result.status != "unavailable":
            judged = local.at(result.level)
            result.local = {name: j.to_dict() for name, j in judged.items()}
            result.moves_start = local.first_moves(result.level)
    for result in results:
        # Only a provider the caller named can make the run fail for being unavailable.
        result.requested = requested is not None

    report = VerifyReport(
        original=_label(original_model),
        candidate=_label(candidate_model),
        providers=results,
        seeds=seeds,
        runs=len(input_sets),
        inputs=_describe_specs(specs, input_sets[0] if input_sets else {}),
        atol=settings.tolerance.atol,
        rtol=settings.tolerance.rtol,
        onnxruntime_version=onnxruntime_version(),
        bnfold_version=_bnfold_version(),
        levels=list(settings.runtime.levels),
        requested_providers=None if requested is None else list(requested),
        input_files=[s for s in sources if s],
        notes=structure_notes + skipped_notes + notes + plan.notes + _branch_notes(branches),
        site_mode=settings.sites.mode,
        site_labels={s.name: {"bn": s.bn, "into": s.into} for s in plan.sites},
        sites_left_out=[s.name for s in plan.left_out],
        weak_outputs=list(weak.values()),
        output_names=output_names,
        drift=drift,
        uncovered=uncovered,
        if_branches=branches,
        float64_unavailable=truth.unavailable if truth is not None else None,
        float64_seconds=truth.seconds if truth is not None else 0.0,
        quantized={name: grid.to_dict() for name, grid in grids.items()},
        kernel_choice=kernel_choice,
    )
    _keep_failing_inputs(
        report,
        candidate_model,
        input_sets,
        sources,
        settings.save_failing,
        reads=[*original_model.files, *candidate_model.files],
    )
    return report


def _branch_notes(branches: list[dict[str, Any]]) -> list[str]:
    """One note per top-level If: which branches the input sets took."""
    notes = []
    for row in branches:
        then, other = row["then_runs"], row["else_runs"]
        if then is None:
            notes.append(f"If `{row['node']}`: which branch ran is unknown")
            continue
        never = [name for name, count in (("then", then), ("else", other)) if count == 0]
        warning = (
            f"; the {never[0]} branch never ran: a difference inside it cannot show"
            " (set its condition with --inputs)"
            if never
            else ""
        )
        notes.append(
            f"If `{row['node']}`: then branch ran on {then}, else branch on {other} input set(s){warning}"
        )
    return notes


def _input_sets(
    specs: list[InputSpec], plan: InputPlan
) -> tuple[list[dict[str, np.ndarray]], list[int], list[str | None]]:
    """(input sets, seeds used, per set the file it came from or None)."""
    if not plan.inputs:
        seeds = [plan.seed + i for i in range(plan.runs)]
        generated = [generate_inputs(specs, s, run) for run, s in enumerate(seeds)]
        return generated, seeds, [None] * plan.runs
    sets: list[dict[str, np.ndarray]] = []
    files: list[str | None] = []
    for index, item in enumerate(plan.inputs):
        if isinstance(item, Mapping):
            sets.append(check_inputs(item, specs, f"input set {index}"))
            files.append(None)
        else:
            sets.append(load_inputs(item, specs))
            files.append(str(item))
    return sets, [], files


def _keep_failing_inputs(
    report: VerifyReport,
    candidate: LoadedModel,
    input_sets: list[dict[str, np.ndarray]],
    sources: list[str | None],
    save_failing: str | os.PathLike[str] | bool | None,
    *,
    reads: Sequence[Path] = (),
) -> None:
    """Save the first failing input set and write the command that reruns exactly it.

    The ``.npz`` is written through ``bnfold.storage.outputs``: never over ``reads`` (the models).
    """
    first = next((r for r in report.failed if r.failing_run is not None), None)
    if first is None or first.failing_run is None:
        return
    index = first.failing_run
    target: Path | None = None
    if sources[index]:
        report.failing_inputs = sources[index]  # already on disk: point at it
    elif save_failing is not False:
        if save_failing not in (None, True):
            folder = Path(save_failing)  # type: ignore[arg-type]
        elif candidate.path is not None:
            folder = candidate.path.parent
        else:
            report.notes.append(
                "failing inputs not saved (in-memory candidate; pass save_failing=DIR)"
            )
            folder = None
        if folder is not None:
            stem = candidate.path.stem if candidate.path is not None else "candidate"
            target = folder / f"{stem}.failing-inputs.npz"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                writer = Outputs([(path, "a model verify reads") for path in reads])
                failing = input_sets[index]
                writer.write_file(target, "failing inputs", lambda p: save_inputs(p, failing))
                report.failing_inputs = str(target)
            except (OSError, OutputWriteError) as exc:
                reason = exc.message if isinstance(exc, OutputWriteError) else exc.strerror
                report.notes.append(f"could not save failing inputs to {target}: {reason or exc}")
    if report.failing_inputs:
        report.rerun_command = _rerun_command(report, first, report.failing_inputs)


def _rerun_command(report: VerifyReport, failed: ProviderResult, inputs_path: str) -> str:
    words = ["bnfold", "verify", report.original, report.candidate, "--inputs", inputs_path]
    words += ["--providers", failed.provider, "--level", failed.level]
    if report.atol is not None:
        words += ["--atol", repr(report.atol)]
    if report.rtol is not None:
        words += ["--rtol", repr(report.rtol)]
    if report.site_mode != "folds":
        words += ["--sites", report.site_mode]
    return " ".join(shlex.quote(w) for w in words)


def _describe_specs(
    specs: list[InputSpec], first_set: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    described = []
    for spec in specs:
        array = first_set.get(spec.name)
        shape = list(array.shape) if array is not None else list(spec.shape)
        if is_float_dtype(spec.dtype):
            source = "normal(0, 1)" if spec.low is None else f"uniform[{spec.low:g}, {spec.high:g})"
        elif spec.dtype.kind in "iu":
            source = f"integers[{spec.low:g}, {spec.high:g}) ({spec.range_source})"
        else:
            source = "random"
        described.append(
            {
                "name": spec.name,
                "dtype": spec.dtype.name,
                "shape": shape,
                "low": spec.low,
                "high": spec.high,
                "source": source,
            }
        )
    return described


def _label(loaded: LoadedModel) -> str:
    return str(loaded.path) if loaded.path is not None else "<in-memory model>"


def _bnfold_version() -> str:
    from ..version import __version__

    return str(__version__)

"""Prove a candidate model computes what the original computes, under onnxruntime.

``verify(original, candidate)``:

1. Loads both (paths or ``onnx.ModelProto``) and checks the candidate's structure: the ONNX
   checker with ``full_check=True``, the same graph inputs/outputs (names, element types,
   shapes), IR version and opsets (``StructureMismatch``, exit 3).
2. Builds input sets from the original's graph inputs (``inputs.py``), or reads ``inputs``.
3. Runs the *original* on CPU with ``ORT_DISABLE_ALL``: the reference. Any optimized session
   would fold BatchNormalization itself (onnxruntime fuses Conv+BN at BASIC) and compare a
   fold with a fold.
4. Runs the candidate on every requested provider at every requested optimization level,
   checking that onnxruntime really used that provider (``session.py``).
5. Compares every output by name (``compare.py``) and returns a ``VerifyReport``.

The function returns a report and never exits; ``report.raise_for_status()`` raises
``VerificationFailed`` (exit 1) or ``ProviderUnavailable`` (exit 4).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx

from ..errors import ModelLoadError, UsageError
from ..modelio import LoadedModel, load_model
from .compare import OutputComparison, compare_outputs
from .inputs import InputSpec, check_inputs, generate_inputs, input_specs, load_inputs, save_inputs
from .report import FAILED, PASSED, UNAVAILABLE, ProviderResult, VerifyReport
from .session import (
    REFERENCE_LEVEL,
    REFERENCE_PROVIDER,
    canonical_provider,
    create_session,
    cuda_available,
    onnxruntime_version,
    parse_levels,
    parse_providers,
    run_session,
)
from .structure import StructureMismatch
from .structure import check_structure as _check_structure

ModelSource = Union[str, "os.PathLike[str]", onnx.ModelProto]
InputsArg = Union[str, "os.PathLike[str]", Mapping[str, Any], Sequence[Any], None]

__all__ = ["ProviderResult", "StructureMismatch", "VerifyReport", "verify"]


def verify(
    original: ModelSource,
    candidate: ModelSource,
    *,
    providers: str | Sequence[str] | None = None,
    levels: str | Sequence[str] = "all",
    shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    default_dim: int = 1,
    seed: int = 0,
    runs: int = 1,
    inputs: InputsArg = None,
    atol: float | None = None,
    rtol: float | None = None,
    threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    save_failing: str | os.PathLike[str] | bool | None = None,
    check_structure: bool = True,
) -> VerifyReport:
    """Compare ``candidate`` with ``original`` on every requested provider and level.

    - ``providers``: ``"cpu,cuda"`` or a list of short/full names; None = CPU plus CUDA
      when CUDA really works (an unavailable default CUDA is only noted).
    - ``levels``: onnxruntime optimization levels for the candidate (``disable``, ``basic``,
      ``extended``, ``all``); default ``all``, what deployments use.
    - ``shapes`` / ``dims`` / ``ranges`` / ``default_dim``: see ``bnfold.verify.inputs``.
    - ``seed`` and ``runs``: input set ``i`` is generated with seed ``seed + i``.
    - ``inputs``: real data instead: an ``.npz`` path, a ``{name: array}`` mapping, or a list
      of either (one input set each); ``runs`` and ``seed`` are then unused.
    - ``atol`` / ``rtol``: override the per-dtype defaults of ``bnfold.verify.compare``.
    - ``provider_options``: ``{"cuda": {"device_id": 1}}``, merged over the defaults.
    - ``save_failing``: folder for the failing input set (``.npz``); None = beside the
      candidate when it is a file; False = never save.
    - ``check_structure``: False skips the checker/interface checks (numbers only).
    """
    started = time.perf_counter()
    requested = _parse_provider_arg(providers)
    level_list = parse_levels(levels if isinstance(levels, str) else list(levels))
    _check_numbers(runs, default_dim, atol, rtol, threads)

    original_model = load_model(original, role="original")
    candidate_model = load_model(candidate, role="candidate")
    structure_notes: list[str] = []
    if check_structure:
        structure_notes = _check_structure(
            original_model.model, candidate_model.model, candidate_model.path, original_model.path
        )

    specs, notes = input_specs(
        original_model.model,
        shapes={k: tuple(int(d) for d in v) for k, v in (shapes or {}).items()},
        dims=dict(dims or {}),
        ranges=dict(ranges or {}),
        default_dim=default_dim,
    )
    input_sets, seeds, sources = _input_sets(specs, inputs, seed, runs)

    reference_outputs = _reference_outputs(original_model, input_sets, threads)

    skipped_notes: list[str] = []
    if requested is None:
        use = ["cpu"]
        cuda_ok, cuda_reason = cuda_available()
        if cuda_ok:
            use.append("cuda")
        else:
            skipped_notes.append(f"cuda not used (default set; not requested): {cuda_reason}")
    else:
        use = requested

    # Keys may be short or full names ("cuda" or "CUDAExecutionProvider").
    options = {canonical_provider(k): dict(v) for k, v in (provider_options or {}).items()}
    results = [
        _run_candidate(
            candidate_model,
            provider,
            level,
            input_sets,
            reference_outputs,
            atol,
            rtol,
            threads,
            options,
        )
        for provider in use
        for level in level_list
    ]
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
        atol=atol,
        rtol=rtol,
        onnxruntime_version=onnxruntime_version(),
        bnfold_version=_bnfold_version(),
        levels=level_list,
        requested_providers=requested,
        input_files=[s for s in sources if s],
        notes=structure_notes + skipped_notes + notes,
    )
    _keep_failing_inputs(report, candidate_model, input_sets, sources, save_failing)
    report.duration_s = time.perf_counter() - started
    return report


def _parse_provider_arg(providers: str | Sequence[str] | None) -> list[str] | None:
    if providers is None or isinstance(providers, str):
        return parse_providers(providers)
    return parse_providers(",".join(providers))


def _check_numbers(
    runs: int, default_dim: int, atol: float | None, rtol: float | None, threads: int | None
) -> None:
    if runs < 1:
        raise UsageError(f"runs must be at least 1, got {runs}")
    if default_dim < 0:
        raise UsageError(f"default dim must be non-negative, got {default_dim}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise UsageError(f"--{name} must be a finite number >= 0, got {value}")
    if threads is not None and threads < 0:
        raise UsageError(f"threads must be >= 0, got {threads}")


def _input_sets(
    specs: list[InputSpec], inputs: InputsArg, seed: int, runs: int
) -> tuple[list[dict[str, np.ndarray]], list[int], list[str | None]]:
    """(input sets, seeds used, per set the file it came from or None)."""
    if inputs is None:
        seeds = [seed + i for i in range(runs)]
        return [generate_inputs(specs, s) for s in seeds], seeds, [None] * runs
    items: list[Any] = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise UsageError("inputs is an empty list", hint="pass at least one .npz file or mapping")
    sets: list[dict[str, np.ndarray]] = []
    files: list[str | None] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            sets.append(check_inputs(item, specs, f"input set {index}"))
            files.append(None)
        else:
            sets.append(load_inputs(item, specs))
            files.append(str(item))
    return sets, [], files


def _model_source(loaded: LoadedModel) -> onnx.ModelProto | Path:
    # A path lets onnxruntime read external data itself and skips a serialization copy.
    return loaded.path if loaded.path is not None else loaded.model


def _reference_outputs(
    original: LoadedModel, input_sets: list[dict[str, np.ndarray]], threads: int | None
) -> list[dict[str, Any]]:
    attempt = create_session(
        _model_source(original),
        REFERENCE_PROVIDER,
        REFERENCE_LEVEL,
        threads=threads,
        role="original",
    )
    if attempt.status != "ok" or attempt.session is None:
        raise ModelLoadError(f"cannot run the original on CPU: {attempt.reason}")
    outputs = []
    for index, feeds in enumerate(input_sets):
        try:
            outputs.append(run_session(attempt.session, feeds))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
            raise UsageError(
                f"the original model fails on input set {index}: {_first_line(exc)}",
                hint="give real data with --inputs, or fix shapes/values with --shape, --dim, --range",
            ) from None
    return outputs


def _run_candidate(
    candidate: LoadedModel,
    provider: str,
    level: str,
    input_sets: list[dict[str, np.ndarray]],
    reference_outputs: list[dict[str, Any]],
    atol: float | None,
    rtol: float | None,
    threads: int | None,
    provider_options: dict[str, dict[str, Any]],
) -> ProviderResult:
    attempt = create_session(
        _model_source(candidate),
        provider,
        level,
        threads=threads,
        provider_options=provider_options.get(provider),
        role="candidate",
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
    merged: dict[str, OutputComparison] = {}
    for index, (feeds, reference) in enumerate(zip(input_sets, reference_outputs, strict=True)):
        try:
            produced = run_session(attempt.session, feeds)
        except Exception as exc:  # noqa: BLE001 - the candidate crashing is a failure, not a bug here
            result.status, result.failing_run = FAILED, index
            result.reason = f"candidate raised on input set {index}: {_first_line(exc)}"
            result.outputs = merged
            return result
        comparisons = compare_outputs(reference, produced, atol=atol, rtol=rtol)
        first_bad = next((c for c in comparisons.values() if not c.passed), None)
        if result.failing_run is None and first_bad is not None:
            result.failing_run = index
            result.reason = f"input set {index}, output {first_bad.name!r}: {first_bad.reason}"
        for name, comparison in comparisons.items():
            merged[name] = merged[name].merge(comparison) if name in merged else comparison
    result.outputs = merged
    result.status = PASSED if all(c.passed for c in merged.values()) else FAILED
    return result


def _keep_failing_inputs(
    report: VerifyReport,
    candidate: LoadedModel,
    input_sets: list[dict[str, np.ndarray]],
    sources: list[str | None],
    save_failing: str | os.PathLike[str] | bool | None,
) -> None:
    """Save the first failing input set and write the command that reruns exactly it."""
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
                save_inputs(target, input_sets[index])
                report.failing_inputs = str(target)
            except OSError as exc:
                report.notes.append(
                    f"could not save failing inputs to {target}: {exc.strerror or exc}"
                )
    if report.failing_inputs:
        report.rerun_command = _rerun_command(report, first, report.failing_inputs)


def _rerun_command(report: VerifyReport, failed: ProviderResult, inputs_path: str) -> str:
    words = ["bnfold", "verify", report.original, report.candidate, "--inputs", inputs_path]
    words += ["--providers", failed.provider, "--level", failed.level]
    if report.atol is not None:
        words += ["--atol", repr(report.atol)]
    if report.rtol is not None:
        words += ["--rtol", repr(report.rtol)]
    return " ".join(shlex.quote(w) for w in words)


def _describe_specs(
    specs: list[InputSpec], first_set: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    described = []
    for spec in specs:
        array = first_set.get(spec.name)
        shape = list(array.shape) if array is not None else list(spec.shape)
        if spec.dtype.kind == "f" or spec.dtype.name == "bfloat16":
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _bnfold_version() -> str:
    from .. import __version__

    return str(__version__)

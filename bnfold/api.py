"""The library's front door: ``optimize`` (fold, then optionally write, verify, bench) and
``check`` (``verify``/``bench`` live in their packages and are imported only when used).

``optimize(..., output=..., verify=..., bench=...)`` is exactly what ``bnfold optimize``
does: fold; write the output through ``bnfold.storage.outputs`` with verification of the staged file
before it is renamed into place (a failed verification writes nothing unless ``force``); then
benchmark the original against what was written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from .engine.driver import FoldOptions, fold_model
from .engine.lowering import LOWERING_FORMS
from .engine.report import FoldReport
from .engine.targets import DEFAULT_TARGET, TARGET_NAMES
from .errors import BnfoldError, UsageError, VerificationFailed
from .patterns import PATTERN_NAMES, default_patterns
from .storage import lazyio
from .storage.load import LoadedModel, load_model
from .storage.outputs import Outputs

if TYPE_CHECKING:
    from .bench import BenchReport
    from .verify import VerifyReport

ModelSource = str | os.PathLike[str] | onnx.ModelProto
# ``True`` runs a step with its defaults; a mapping gives its keyword arguments (e.g.
# ``{"providers": "cpu", "dims": {"batch": 8}}``, see ``bnfold.verify``/``bnfold.bench``).
StepOptions = bool | Mapping[str, Any] | None
# ``on_step(name, value)``: "folded" (FoldReport), "verified" (VerifyReport), "written"
# (list of paths) or "unchanged" (the path ``in_place`` left as it was: nothing to fold),
# "benched" (BenchReport), in that order, as each happens.
StepCallback = Callable[[str, Any], None]


@dataclass
class OptimizeResult:
    """The folded model, its ``report``, and what ``optimize`` verified, wrote and measured.

    A model read from a file keeps its untouched tensors in that file (``folded`` refers to
    them); ``model`` is the same model with every tensor in memory, built on first use.
    ``save`` streams from the files and never needs ``model``.
    """

    folded: onnx.ModelProto
    report: FoldReport
    source: LoadedModel
    verification: VerifyReport | None = None
    benchmark: BenchReport | None = None
    written: list[Path] = field(default_factory=list)
    outputs: Outputs = field(default_factory=Outputs, repr=False)
    _materialized: onnx.ModelProto | None = field(default=None, repr=False)

    @property
    def model(self) -> onnx.ModelProto:
        if self._materialized is None:
            source = LoadedModel(
                self.folded, self.source.path, False, base_dir=self.source.base_dir
            )
            self._materialized = source.materialized()
        return self._materialized

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        external_data: bool | None = None,
        overwrite_input: bool = False,
        before_commit: Callable[[Path], None] | None = None,
    ) -> list[Path]:
        """Write the model; external data by default exactly when the input had it.

        Refuses (``UsageError``) to write over the input model or its data files unless
        ``overwrite_input``. ``before_commit(staged_path)`` may check the complete written
        model before it is renamed into place (raising leaves nothing written).
        """
        target = Path(path)
        use_external = self.source.has_external_data if external_data is None else external_data
        written = self.outputs.save_model(
            self.folded,
            target,
            external_data=use_external,
            base_dir=self.source.base_dir,
            replaces_input=overwrite_input,
            before_commit=before_commit,
        )
        if self.source.path is not None and overwrite_input:
            # The files the lazy model read from are gone or replaced: read what was written.
            self.source = load_model(target)
            self.folded = self.source.model
        self.report.output = str(path)
        self.written = written
        return written

    def raise_for_status(self) -> None:
        """Raise ``VerificationFailed`` (exit 1) when verification ran and failed."""
        if self.verification is not None and not self.verification.passed:
            raise VerificationFailed(
                "the folded model does not match the original"
                + (
                    "; written anyway because of force" if self.written else "; nothing was written"
                ),
                hint="rerun `bnfold verify` for details",
            )


def optimize(
    source: ModelSource,
    *,
    disable: Iterable[str] = (),
    lower_standalone: bool | str = False,
    target: str = DEFAULT_TARGET,
    output: str | os.PathLike[str] | None = None,
    in_place: bool = False,
    external_data: bool | None = None,
    verify: StepOptions = None,
    bench: StepOptions = None,
    force: bool = False,
    outputs: Outputs | None = None,
    progress: Callable[[int], None] | None = None,
    on_step: StepCallback | None = None,
) -> OptimizeResult:
    """Fold every BatchNormalization that can be folded exactly; report the rest with reasons.

    ``source`` is a path or a ModelProto (which is not modified: a copy is folded).
    ``disable`` names patterns to leave out (``bnfold.patterns.PATTERN_NAMES``);
    ``lower_standalone`` rewrites BatchNormalization that stays as Mul + Add (True or
    ``"mul-add"``) or as a 1×1 depthwise Conv (``"dwconv"``). ``target`` names the
    deployment profile whose rules apply (``bnfold.engine.targets``: ``"default"``, onnxruntime
    float; ``"quantize"``, before int8 quantization: every exact fold including the splits,
    what stays lowered, weight ranges reported; ``"npu"``: no standalone BatchNormalization).

    With ``output`` (or ``in_place``) the result is written there (``OptimizeResult.save``);
    ``in_place`` with nothing to fold (``report.changed`` false) rewrites nothing.
    ``verify``: verify the staged output file before it lands (without an output, the
    in-memory result); on a mismatch nothing is written unless ``force``, and
    ``result.raise_for_status()`` raises. ``bench``: benchmark the original against what was
    written (or the in-memory result). ``outputs`` carries the files a caller (the CLI) has
    already planned, so that no output overwrites another or an input.
    """
    disabled = frozenset(disable)
    unknown = sorted(disabled - set(PATTERN_NAMES))
    if unknown:
        raise UsageError(
            f"unknown pattern(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(PATTERN_NAMES)}",
        )
    if isinstance(lower_standalone, str) and lower_standalone not in LOWERING_FORMS:
        raise UsageError(
            f"unknown --lower-standalone form {lower_standalone!r}",
            hint=f"choose from {', '.join(LOWERING_FORMS)}",
        )
    if target not in TARGET_NAMES:
        raise UsageError(
            f"unknown target {target!r}", hint=f"choose from {', '.join(TARGET_NAMES)}"
        )
    outputs = outputs if outputs is not None else Outputs()
    destination = _destination(source, output, in_place)
    if not isinstance(source, onnx.ModelProto):
        outputs.read_model(source)
    if destination is not None:
        # Checked before the (possibly long) fold: a refusal leaves nothing written.
        outputs.plan(destination, "output", replaces_input=in_place)
    result = _fold(source, disabled, FoldOptions(lower_standalone, target), progress, outputs)
    _notify(on_step, "folded", result.report)
    verify_options = _step_options(verify)
    if destination is None:
        if verify_options is not None:
            result.verification = _verify(source, result.model, verify_options, on_step)
    elif in_place and not result.report.changed:
        # Nothing to fold: the file (and its data file) stay as they are, bytes and times.
        result.report.output = str(destination)
        _notify(on_step, "unchanged", destination)
    else:
        _save_verified(result, destination, in_place, external_data, verify_options, force, on_step)
    bench_options = _step_options(bench)
    verified = result.verification is None or result.verification.passed
    if bench_options is not None and verified:
        candidate: ModelSource = destination if destination is not None else result.model
        result.benchmark = _bench(source, candidate, bench_options, destination)
        _notify(on_step, "benched", result.benchmark)
    return result


def _destination(
    source: ModelSource, output: str | os.PathLike[str] | None, in_place: bool
) -> Path | None:
    if not in_place:
        return Path(output) if output is not None else None
    if output is not None:
        raise UsageError("--in-place and -o cannot be used together", hint="drop one of them")
    if isinstance(source, onnx.ModelProto):
        raise UsageError("in_place needs a model path, not an in-memory model")
    return Path(source)


def _fold(
    source: ModelSource,
    disabled: frozenset[str],
    options: FoldOptions,
    progress: Callable[[int], None] | None,
    outputs: Outputs,
) -> OptimizeResult:
    loaded = load_model(source)
    for data in loaded.external_files:
        outputs.read(data, f"the input's external data file {data.name!r}")
    model = loaded.model
    if loaded.path is None:
        model = onnx.ModelProto()
        model.CopyFrom(loaded.model)

    def reload() -> onnx.ModelProto:
        """The input again, for the engine's safety net (it may refold without a fold)."""
        if loaded.path is not None:
            return load_model(loaded.path).model
        return loaded.model

    started = time.perf_counter()
    outcome = fold_model(
        model,
        default_patterns(disabled),
        options,
        progress=progress,
        base_dir=loaded.base_dir,
        reload=reload,
    )
    # Tensors the writer does not stream must not keep references into the input's folder.
    lazyio.inline_nested_external_data(model, loaded.base_dir)
    report = FoldReport(
        model=str(loaded.path) if loaded.path else "<in-memory model>",
        folds=outcome.folds,
        skipped=outcome.skipped,
        counts=outcome.counts,
        seconds=time.perf_counter() - started,
        functions=outcome.functions,
        target=options.target,
    )
    return OptimizeResult(model, report, loaded, outputs=outputs)


def _save_verified(
    result: OptimizeResult,
    target: Path,
    in_place: bool,
    external_data: bool | None,
    verify_options: dict[str, Any] | None,
    force: bool,
    on_step: StepCallback | None,
) -> None:
    """Write ``result`` to ``target``; with ``verify_options``, verify the staged file first."""
    original = result.source.path if result.source.path is not None else result.source.model

    def verify_staged(staged: Path) -> None:
        assert verify_options is not None
        # Named by the file it becomes: the staging folder is gone once it lands.
        result.verification = _verify(original, staged, verify_options, on_step, str(target))
        if not result.verification.passed and not force:
            raise _NotCommitted

    try:
        written = result.save(
            target,
            external_data=external_data,
            overwrite_input=in_place,
            before_commit=verify_staged if verify_options is not None else None,
        )
    except _NotCommitted:
        return
    _notify(on_step, "written", written)


class _NotCommitted(Exception):
    """Verification of the staged output failed: leave it unwritten (not a user error)."""


def _step_options(options: StepOptions) -> dict[str, Any] | None:
    if options is None or options is False:
        return None
    return {} if options is True else dict(options)


def _verify(
    original: ModelSource,
    candidate: ModelSource,
    options: dict[str, Any],
    on_step: Any,
    label: str | None = None,
) -> VerifyReport:
    from .verify import verify

    report = verify(original, candidate, **options)
    if label is not None:
        report.candidate = label
    _notify(on_step, "verified", report)
    return report


def _bench(
    original: ModelSource, candidate: ModelSource, options: dict[str, Any], written: Path | None
) -> BenchReport:
    from .bench import bench

    try:
        return bench(original, candidate, **options)
    except BnfoldError as err:
        if written is None:
            raise
        # The output is in place; say so, so that the exit code is not read as "nothing written".
        wrapped = BnfoldError(
            f"{written} was written, but benchmarking it failed: {err.message}", hint=err.hint
        )
        wrapped.exit_code = err.exit_code
        raise wrapped from None


def _notify(on_step: StepCallback | None, name: str, value: Any) -> None:
    if on_step is not None:
        on_step(name, value)


def check(
    source: ModelSource, *, disable: Iterable[str] = (), target: str = DEFAULT_TARGET
) -> FoldReport:
    """What ``optimize`` would fold (``report.folds``) and what stays (``report.skipped``).

    ``report.must_fold`` lists the BatchNormalization nodes and BN-equivalent Mul/Add chains
    (``bnfold check`` fails on those); ``report.optional_folds`` the other foldable affines.
    Under ``target`` ``quantize`` or ``npu`` the splits and lowerings that profile makes are
    folds too, and ``check`` also fails on a BatchNormalization kept (``CheckReport``).
    """
    return optimize(source, disable=disable, target=target).report

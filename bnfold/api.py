"""The library's front door: ``optimize`` and ``check`` (``verify``/``bench`` live in their packages)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .errors import UsageError
from .modelio import (
    LoadedModel,
    check_inputs_survive,
    external_data_path,
    load_model,
    same_file,
    save_model,
)
from .passes import FoldOptions, fold_model
from .patterns import PATTERN_NAMES
from .report import FoldReport

ModelSource = str | os.PathLike[str] | onnx.ModelProto


@dataclass
class OptimizeResult:
    """The folded model and its ``report``; ``save`` writes it atomically.

    A model read from a file keeps its untouched tensors in that file (``folded`` refers to
    them); ``model`` is the same model with every tensor in memory, built on first use.
    ``save`` streams from the files and never needs ``model``.
    """

    folded: onnx.ModelProto
    report: FoldReport
    source: LoadedModel
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
        writes = [(target, "output"), (external_data_path(target), "output data")]
        check_inputs_survive(self.source, writes, in_place=overwrite_input)
        model, base_dir = self.folded, self.source.base_dir
        if self.source.path is not None and any(
            same_file(written, source)
            for written, _ in writes
            for source in [self.source.path, *self.source.external_files]
        ):
            # The files the tensors are read from are about to be replaced: read them first.
            model, base_dir = self.model, None
        written = save_model(
            model,
            target,
            external_data=use_external,
            base_dir=base_dir,
            before_commit=before_commit,
        )
        self.report.output = str(path)
        return written


def optimize(
    source: ModelSource,
    *,
    disable: Iterable[str] = (),
    lower_standalone: bool = False,
    progress: Callable[[int], None] | None = None,
) -> OptimizeResult:
    """Fold every BatchNormalization that can be folded exactly; report the rest with reasons.

    ``source`` is a path or a ModelProto (which is not modified: a copy is folded).
    ``disable`` names patterns to leave out (``bnfold.patterns.PATTERN_NAMES``);
    ``lower_standalone`` rewrites BatchNormalization that stays as Mul + Add.
    """
    disabled = frozenset(disable)
    unknown = sorted(disabled - set(PATTERN_NAMES))
    if unknown:
        raise UsageError(
            f"unknown pattern(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(PATTERN_NAMES)}",
        )
    loaded = load_model(source)
    model = loaded.model
    if loaded.path is None:
        model = onnx.ModelProto()
        model.CopyFrom(loaded.model)
    started = time.perf_counter()
    outcome = fold_model(
        model,
        FoldOptions(disabled=disabled, lower_standalone=lower_standalone),
        progress=progress,
        base_dir=loaded.base_dir,
    )
    report = FoldReport(
        model=str(loaded.path) if loaded.path else "<in-memory model>",
        folds=outcome.folds,
        skipped=outcome.skipped,
        counts=outcome.counts,
        seconds=time.perf_counter() - started,
    )
    return OptimizeResult(model, report, loaded)


def check(source: ModelSource, *, disable: Iterable[str] = ()) -> FoldReport:
    """What ``optimize`` would fold (``report.folds``) and what stays (``report.skipped``)."""
    return optimize(source, disable=disable).report

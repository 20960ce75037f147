"""The library's front door: ``optimize`` and ``check`` (``verify``/``bench`` live in their packages)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx

from .errors import UsageError
from .modelio import LoadedModel, load_model, save_model
from .passes import FoldOptions, fold_model
from .patterns import PATTERN_NAMES
from .report import FoldReport

ModelSource = str | os.PathLike[str] | onnx.ModelProto


@dataclass
class OptimizeResult:
    """The folded ``model`` and its ``report``; ``save`` writes it atomically."""

    model: onnx.ModelProto
    report: FoldReport
    source: LoadedModel

    def save(
        self, path: str | os.PathLike[str], *, external_data: bool | None = None
    ) -> list[Path]:
        """Write the model; external data by default exactly when the input had it."""
        use_external = self.source.has_external_data if external_data is None else external_data
        written = save_model(self.model, Path(path), external_data=use_external)
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
        model, FoldOptions(disabled=disabled, lower_standalone=lower_standalone), progress=progress
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

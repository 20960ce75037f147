"""Latency distributions as a PNG: one panel per setting, original beside candidate.

matplotlib is the optional ``plot`` extra. It is imported only here, and only through its
object-oriented API with the Agg canvas, so no global backend is switched and no display is
needed (``matplotlib.use`` would change the caller's process-wide state).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..storage.outputs import Outputs
from .formatting import format_speedup
from .records import CANDIDATE, ORIGINAL, ModelResult
from .report import BenchReport
from .stats import thin

MISSING_MATPLOTLIB = "--plot needs matplotlib, which is not installed (pip install 'bnfold[plot]')"
PLOT_MAX_SAMPLES = 20_000
_COLOURS = {ORIGINAL: "#4c72b0", CANDIDATE: "#dd8452"}


def require_matplotlib() -> None:
    """Raise a one-line UsageError when matplotlib is missing (call before measuring)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(MISSING_MATPLOTLIB)


def write_plot(report: BenchReport, path: str | Path, outputs: Outputs | None = None) -> Path:
    """Draw violin plots of per-run latency for each measured setting and save a PNG.

    Written through ``outputs`` (``bnfold.storage.outputs``: atomic, never over a model the command
    read); by default one that protects nothing.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(report)
    if not panels:
        raise UsageError("--plot: nothing was measured, so there is nothing to plot")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (title, pair) in zip(axes.flat, panels, strict=False):
        _draw_panel(axis, title, pair)
    figure.suptitle(f"Latency per run: {report.original} vs {report.candidate}", fontsize="medium")
    writer = outputs if outputs is not None else Outputs()
    return writer.write_file(
        path, "--plot file", lambda staged: figure.savefig(staged, format="png", dpi=110)
    )


def _panels(report: BenchReport) -> list[tuple[str, tuple[ModelResult, ModelResult]]]:
    by_setting: dict[tuple[str, str, int | None], dict[str, ModelResult]] = {}
    for result in report.results:
        if result.samples_ms is not None and result.samples_ms.size:
            key = (result.provider, result.level, result.batch)
            by_setting.setdefault(key, {})[result.model] = result
    panels = []
    for comparison in report.comparisons:
        pair = by_setting.get((comparison.provider, comparison.level, comparison.batch), {})
        if ORIGINAL in pair and CANDIDATE in pair:
            estimate = comparison.estimate
            title = f"{comparison.setting_label()}\n{format_speedup(estimate)} {estimate.verdict}"
            panels.append((title, (pair[ORIGINAL], pair[CANDIDATE])))
    return panels


def _draw_panel(axis: Any, title: str, pair: tuple[ModelResult, ModelResult]) -> None:
    # Any: matplotlib's Axes type is only importable once matplotlib is known to be present.
    # Thinned like the bootstrap: the violin's shape is the same, the KDE stays fast.
    samples = [
        thin(result.samples_ms, PLOT_MAX_SAMPLES)
        for result in pair
        if result.samples_ms is not None
    ]
    # Scheduler hiccups put a few runs 100x above the rest; drawn to scale they flatten
    # both violins into lines. A sub-millisecond model's p99 can itself be such a hiccup
    # (p50 0.1 ms, p99 8 ms on the bundled model), so the body is shown up to the lower of
    # p99 and Tukey's far fence (p75 + 3 IQR), and the runs above it are counted.
    ceiling = 1.15 * max(_body_top(sample) for sample in samples)
    clipped = [np.minimum(sample, ceiling) for sample in samples]
    above = sum(int(np.count_nonzero(sample > ceiling)) for sample in samples)
    parts = axis.violinplot(clipped, positions=[1, 2], showmedians=True, showextrema=False)
    for body, result in zip(parts["bodies"], pair, strict=True):
        body.set_facecolor(_COLOURS[result.model])
        body.set_alpha(0.6)
    axis.set_xticks([1, 2], [result.model for result in pair])
    axis.set_ylabel("ms per run")
    if above:
        axis.text(
            0.5,
            0.98,
            f"{above} runs above {ceiling:.3g} ms drawn at the top",
            transform=axis.transAxes,
            ha="center",
            va="top",
            fontsize="x-small",
        )
    axis.set_ylim(bottom=0)
    axis.set_title(title, fontsize="small")
    axis.grid(axis="y", alpha=0.3)


def _body_top(sample: np.ndarray) -> float:
    """Where a sample's body ends: the lower of its p99 and Tukey's far fence p75 + 3 IQR."""
    p25, p75, p99 = np.percentile(sample, [25, 75, 99])
    return float(min(p99, p75 + 3.0 * (p75 - p25)))

"""FoldReport: what optimize folded and refused, as a terminal table, JSON and Markdown.

Each fold has a ``kind`` (the engine's: ``BatchNormalization`` or the ops of an elementwise
chain such as ``Mul+Add``); counts group them into three categories:

- ``BatchNormalization``: a BatchNormalization node;
- ``Mul/Add chain``: a BN-equivalent chain with a per-channel scale (BN exported as Mul + Add,
  or Div), the form tf2onnx writes;
- ``bias Add``: a chain of ``Add``/``Sub`` only, a per-channel shift such as a layer's bias
  that could move into the next layer: foldable, but nothing a BN left behind.

``bnfold check`` fails on the first two (``must_fold``) and lists the third as optional
(``checks``). Under a profile that asks (``targets``), each fold also reports the range of the
weights it rewrote (``weight_stats``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..storage.results import to_json
from ..version import __version__
from .driver import SkippedBatchNorm
from .functions import FunctionAction
from .merges import into_text, resolve_merges
from .outcomes import Fold
from .targets import DEFAULT_TARGET

LOW_PRECISION = {"float16", "bfloat16"}
BATCHNORM, SCALE_CHAIN, BIAS_ADD = "BatchNormalization", "Mul/Add chain", "bias Add"
CATEGORIES = (BATCHNORM, SCALE_CHAIN, BIAS_ADD)


def fold_category(kind: str) -> str:
    """``BatchNormalization``, ``Mul/Add chain`` (has a scale) or ``bias Add`` (shift only)."""
    if kind == BATCHNORM:
        return BATCHNORM
    ops = set(kind.split("+"))
    return SCALE_CHAIN if ops & {"Mul", "Div"} else BIAS_ADD


def count_line(counts: dict[str, int]) -> str:
    """``3 BatchNormalization, 1 Mul/Add chain`` (categories with a count only)."""
    return ", ".join(f"{n} {category}" for category, n in counts.items() if n) or "nothing"


def _fold_dict(fold: Fold) -> dict[str, Any]:
    """A fold as JSON: ``via`` only where a merge folded on, never the internal label."""
    found = asdict(fold)
    del found["merge_labels"]
    if not fold.via:
        del found["via"]
    if fold.quantization_steps is None:
        del found["quantization_steps"]
    if not fold.weight_ranges:
        del found["weight_ranges"]
    return found


@dataclass
class FoldReport:
    """``folds`` ({bn, into, pattern, ...}), ``skipped`` ({bn, reason, detail}) and ``counts``."""

    model: str
    folds: list[Fold] = field(default_factory=list)
    skipped: list[SkippedBatchNorm] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    output: str | None = None
    seconds: float = 0.0
    # Model-local functions changed so their BNs fold per call site (inlined, and why).
    functions: list[FunctionAction] = field(default_factory=list)
    target: str = DEFAULT_TARGET  # the deployment profile folded for (``targets``)

    def __post_init__(self) -> None:
        resolve_merges(self.folds)  # every ``into`` names a node of the written model

    def folds_by_kind(self) -> dict[str, int]:
        """How many folds of each category (see the module doc), every category present."""
        counts = dict.fromkeys(CATEGORIES, 0)
        for fold in self.folds:
            counts[fold_category(fold.kind)] += 1
        return counts

    @property
    def changed(self) -> bool:
        """Whether folding changed the model at all: a fold or lowering, a no-op Cast removed,
        a function inlined, a node count that moved. False: nothing to fold."""
        c = self.counts
        return bool(
            self.folds
            or self.functions
            or c.get("noop_casts_removed")
            or c.get("nodes_before") != c.get("nodes_after")
        )

    @property
    def must_fold(self) -> list[Fold]:
        """Folds of BatchNormalization nodes and BN-equivalent Mul/Add chains."""
        return [f for f in self.folds if fold_category(f.kind) != BIAS_ADD]

    @property
    def optional_folds(self) -> list[Fold]:
        """Other foldable affines (bias Adds): listed by ``check``, never a failure."""
        return [f for f in self.folds if fold_category(f.kind) == BIAS_ADD]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bnfold_version": __version__,
            "model": self.model,
            "target": self.target,
            "output": self.output,
            "folds": [_fold_dict(fold) for fold in self.folds],
            "skipped": [asdict(skip) for skip in self.skipped],
            "counts": dict(self.counts),
            "functions": [asdict(action) for action in self.functions],
            "folds_by_kind": self.folds_by_kind(),
            "seconds": round(self.seconds, 4),
        }

    def to_json(self) -> str:
        """Strict JSON, keys sorted, non-finite numbers ``null`` with the reason (``storage.results``)."""
        return to_json(self.to_dict()) + "\n"

    def to_markdown(self) -> str:
        c = self.counts
        profile = "" if self.target == DEFAULT_TARGET else f" (--target {self.target})"
        head = [
            f"### bnfold optimize: `{self.model}`{profile}",
            "",
            f"BatchNormalization {c.get('batchnorm_before', 0)} → {c.get('batchnorm_after', 0)}, "
            f"nodes {c.get('nodes_before', 0)} → {c.get('nodes_after', 0)}",
            "",
        ]
        return "\n".join(head + self._markdown_tables("Folded") + self._markdown_ranges())

    def _markdown_ranges(self) -> list[str]:
        """Per fold into a float weight, its range and int8 error (``weight_stats``)."""
        columns = self._range_columns()
        if not columns:
            return []
        lines = ["", self._ranges_title(), ""]
        lines += ["| " + " | ".join(_cell(name) for name in columns) + " |"]
        lines += ["|" + "---|" * len(columns)]
        rows = zip(*columns.values(), strict=True)
        lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
        return lines

    def _ranges_title(self) -> str:
        return f"Weight ranges (--target {self.target}): symmetric int8 rounding error"

    def _range_columns(self, separator: str = ", ") -> dict[str, list[str]]:
        """The weight-range table's columns, one row per weight a fold rewrote; {} if none.
        ``separator``: between the worst channels' entries (``worst_text``)."""
        rows = [(fold, change) for fold in self.folds for change in fold.weight_ranges]
        if not rows:
            return {}
        return {
            "node": [fold.bn for fold, _ in rows],
            "weight": [change.weight for _, change in rows],
            "max|w|": [change.range_text() for _, change in rows],
            "median|w|": [change.median_text() for _, change in rows],
            "per-tensor": [change.worst_text(separator) for _, change in rows],
            "per-channel": [change.per_channel_text() for _, change in rows],
        }

    def _markdown_tables(self, verb: str) -> list[str]:
        """The folds (headed ``verb: counts``), the kept nodes and the function actions."""
        lines: list[str] = []
        if self.folds:
            lines += [
                f"{verb}: {count_line(self.folds_by_kind())}",
                "",
                "| node | kind | folded into | pattern | through | dtype |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| `{f.bn}` | {fold_category(f.kind)} | `{into_text(f)}` | {f.pattern} | "
                f"{' → '.join(f.through) or '-'} | {f.dtype} |"
                for f in self.folds
            ]
            lines.append("")
        if self.skipped:
            lines += ["| kept | kind | reason | detail |", "|---|---|---|---|"]
            lines += [
                f"| `{s.bn}` | {fold_category(s.kind)} | {s.reason} | {s.detail} |"
                for s in self.skipped
            ]
            lines.append("")
        lines += [
            f"Function `{a.function}` {a.action} at {a.calls} call site(s): {a.reason}"
            for a in self.functions
        ]
        return lines

    def render(self, console: Any) -> None:
        """Print the report with a rich ``Console``."""
        self.render_tables(console, "Folded")
        if not self.changed:
            console.print(
                f"nothing to fold in {self.model}", markup=False, highlight=False, soft_wrap=True
            )
        c = self.counts
        console.print(
            f"BatchNormalization: {c.get('batchnorm_before', 0)} → {c.get('batchnorm_after', 0)}   "
            f"nodes: {c.get('nodes_before', 0)} → {c.get('nodes_after', 0)}   "
            f"({self.seconds:.2f} s)"
        )
        if c.get("noop_casts_removed"):
            console.print(
                f"Removed {c['noop_casts_removed']} no-op Cast (input already of its type)"
            )
        self.render_ranges(console)

    def render_ranges(self, console: Any) -> None:
        """One row per weight a fold rewrote: its range and int8 error, worst channels named."""
        from ..storage.textfit import print_table

        columns = self._range_columns(separator="\n")  # one worst channel per line
        if columns:
            width = getattr(console, "width", 80)
            table = _fitted_table(self._ranges_title(), columns, ("node", "weight"), width)
            print_table(console, table)

    def render_tables(self, console: Any, verb: str) -> None:
        """The folds (titled ``verb: counts``), the kept nodes and the function actions.

        Designed for 80 columns: ``kind`` only when the rows differ in it (the title counts
        them), ``through`` only when some fold goes through a node, names wrapped whole at
        ``/`` (see ``storage.textfit``).
        """
        from ..storage.textfit import print_table

        width = getattr(console, "width", 80)
        if self.folds:
            title = f"{verb}: {count_line(self.folds_by_kind())}"
            low = any(f.dtype in LOW_PRECISION for f in self.folds)
            columns: dict[str, list[str]] = {
                "node": [fold.bn for fold in self.folds],
                "kind": [fold_category(fold.kind) for fold in self.folds],
                "folded into": [into_text(fold) for fold in self.folds],
                "pattern": [fold.pattern for fold in self.folds],
                "through": [" → ".join(fold.through) or "-" for fold in self.folds],
            }
            if low:
                columns["rounding (rel.)"] = [
                    f"{fold.rounding_error:.2e} ({fold.dtype})"
                    if fold.dtype in LOW_PRECISION
                    else "-"
                    for fold in self.folds
                ]
            print_table(console, _fitted_table(title, columns, ("node", "folded into"), width))
        if self.skipped:
            # BatchNormalization nodes and BN-equivalent Mul/Add chains (never a bias Add).
            kept = dict.fromkeys(CATEGORIES, 0)
            for skip in self.skipped:
                kept[fold_category(skip.kind)] += 1
            columns = {
                "node": [skip.bn for skip in self.skipped],
                "kind": [fold_category(skip.kind) for skip in self.skipped],
                "reason": [skip.reason for skip in self.skipped],
                "detail": [skip.detail for skip in self.skipped],
            }
            table = _fitted_table(f"Kept: {count_line(kept)}", columns, ("node",), width)
            print_table(console, table)
        for action in self.functions:
            console.print(
                f"Function {action.function} {action.action} at {action.calls} call site(s): "
                f"{action.reason}"
            )


def _cell(text: str) -> str:
    """``text`` inside a Markdown table cell, where a bare ``|`` (``max|w|``) would end it."""
    return text.replace("|", "\\|")


def _fitted_table(
    title: str, columns: dict[str, list[str]], names: tuple[str, ...], width: int
) -> Any:
    """A table for ``width`` columns: codes and numbers whole, ``names`` wrapped at ``/``.

    ``kind`` is left out when every row has the same one (the title counts the kinds),
    ``through`` when no row goes through anything; ``detail`` (prose) wraps at spaces.
    """
    from rich import box
    from rich.table import Table

    from ..storage.textfit import cell_width, name_widths, wrap_name

    columns = dict(columns)
    if "kind" in columns and len(set(columns["kind"])) == 1:
        del columns["kind"]
    if "through" in columns and set(columns["through"]) == {"-"}:
        del columns["through"]
    prose = [c for c in columns if c == "detail"]
    fixed = [cell_width(c, cells) for c, cells in columns.items() if c not in names + tuple(prose)]
    # Prose gets what is left after the names, but at least 20 columns.
    reserve = [20] if prose else []
    fits = name_widths(width, fixed + reserve, [columns[c] + [c] for c in names])
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in columns:
        if column in names:
            fit = fits[names.index(column)]
            table.add_column(column, no_wrap=True, width=fit)
        elif column in prose:
            table.add_column(column, overflow="fold", min_width=min(20, width // 4))
        else:
            numeric = column.startswith("rounding")
            table.add_column(
                column,
                no_wrap=True,
                justify="right" if numeric else "left",
                width=cell_width(column, columns[column]),
            )
    for row in zip(*columns.values(), strict=True):
        cells = [
            wrap_name(cell, fits[names.index(column)]) if column in names else cell
            for column, cell in zip(columns, row, strict=True)
        ]
        table.add_row(*cells)
    return table

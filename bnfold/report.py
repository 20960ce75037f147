"""FoldReport: what optimize folded and refused, as a terminal table, JSON and Markdown."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .outcomes import Fold
from .passes import SkippedBatchNorm

LOW_PRECISION = {"float16", "bfloat16"}


@dataclass
class FoldReport:
    """``folds`` ({bn, into, pattern, ...}), ``skipped`` ({bn, reason, detail}) and ``counts``."""

    model: str
    folds: list[Fold] = field(default_factory=list)
    skipped: list[SkippedBatchNorm] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    output: str | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.folds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bnfold_version": __version__,
            "model": self.model,
            "output": self.output,
            "folds": [asdict(fold) for fold in self.folds],
            "skipped": [asdict(skip) for skip in self.skipped],
            "counts": dict(self.counts),
            "seconds": round(self.seconds, 4),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_markdown(self) -> str:
        c = self.counts
        lines = [
            f"### bnfold optimize: `{self.model}`",
            "",
            f"BatchNormalization {c.get('batchnorm_before', 0)} → {c.get('batchnorm_after', 0)}, "
            f"nodes {c.get('nodes_before', 0)} → {c.get('nodes_after', 0)}",
            "",
        ]
        if self.folds:
            lines += [
                "| BatchNormalization | folded into | pattern | through | dtype |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| `{f.bn}` | `{f.into}` | {f.pattern} | {' → '.join(f.through) or '-'} | {f.dtype} |"
                for f in self.folds
            ]
            lines.append("")
        if self.skipped:
            lines += ["| BatchNormalization kept | reason | detail |", "|---|---|---|"]
            lines += [f"| `{s.bn}` | {s.reason} | {s.detail} |" for s in self.skipped]
            lines.append("")
        return "\n".join(lines)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON report atomically."""
        from .modelio import write_text_atomic

        write_text_atomic(Path(path), self.to_json())

    def render(self, console: Any) -> None:
        """Print the report with a rich ``Console``."""
        from rich.table import Table

        if self.folds:
            table = Table(title=f"Folded ({len(self.folds)})", title_justify="left")
            for column in ("BatchNormalization", "folded into", "pattern", "through"):
                table.add_column(column)
            low = any(f.dtype in LOW_PRECISION for f in self.folds)
            if low:
                table.add_column("rounding (rel.)", justify="right")
            for fold in self.folds:
                row = [fold.bn, fold.into, fold.pattern, " → ".join(fold.through) or "-"]
                if low:
                    row.append(
                        f"{fold.rounding_error:.2e} ({fold.dtype})"
                        if fold.dtype in LOW_PRECISION
                        else "-"
                    )
                table.add_row(*row)
            console.print(table)
        if self.skipped:
            table = Table(title=f"Kept ({len(self.skipped)})", title_justify="left")
            for column in ("BatchNormalization", "reason", "detail"):
                table.add_column(column)
            for skip in self.skipped:
                table.add_row(skip.bn, skip.reason, skip.detail)
            console.print(table)
        c = self.counts
        console.print(
            f"BatchNormalization: {c.get('batchnorm_before', 0)} → {c.get('batchnorm_after', 0)}   "
            f"nodes: {c.get('nodes_before', 0)} → {c.get('nodes_after', 0)}   "
            f"({self.seconds:.2f} s)"
        )

"""``bnfold check``'s verdict on a ``FoldReport``: what fails, per profile, and how it reads.

A model fails while a BatchNormalization or a BN-equivalent Mul/Add chain can be folded (a
foldable bias Add is optional and never fails). Under a profile whose rules reject a kept
BatchNormalization (``targets.Profile.kept_batchnorm_fails``: ``quantize``, ``npu``) it also
fails on each one kept; the verdict names the pattern of each fold left and the reason of
each BN kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..storage.results import to_json
from ..version import __version__
from .driver import SkippedBatchNorm
from .report import BATCHNORM, BIAS_ADD, FoldReport, fold_category
from .targets import DEFAULT_TARGET, profile


def remaining_line(counts: dict[str, int]) -> str:
    """``6 foldable BatchNormalization remain``, ``no foldable BatchNormalization left``."""
    parts = [f"{n} foldable {category}" for category, n in counts.items() if n]
    if not parts:
        return "no foldable BatchNormalization left"
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return joined + (" remains" if sum(counts.values()) == 1 else " remain")


@dataclass
class CheckReport:
    """``bnfold check``'s verdict on one model: its ``FoldReport`` read as a check.

    It fails (``exit_code`` 1) while a BatchNormalization or a BN-equivalent Mul/Add chain can
    be folded (``remaining``); a foldable bias Add is optional and never fails.
    """

    report: FoldReport

    @property
    def remaining(self) -> dict[str, int]:
        """Foldable BatchNormalization and Mul/Add chains per category (what fails)."""
        counts = self.report.folds_by_kind()
        del counts[BIAS_ADD]
        return counts

    @property
    def kept_batchnorms(self) -> list[SkippedBatchNorm]:
        """BatchNormalization nodes that stay, under a profile that fails on them."""
        if not profile(self.report.target).kept_batchnorm_fails:
            return []
        return [skip for skip in self.report.skipped if fold_category(skip.kind) == BATCHNORM]

    @property
    def passed(self) -> bool:
        return not self.report.must_fold and not self.kept_batchnorms

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def line(self) -> str:
        """One line naming the model: ``ok: a.onnx: no foldable …`` or ``FAIL: b.onnx: 6 …``."""
        notes = []
        if self.report.skipped:
            notes.append(f"{len(self.report.skipped)} kept with a reason")
        optional = len(self.report.optional_folds)
        if optional:
            notes.append(f"{optional} optional bias Add fold(s) listed")
        note = f" ({'; '.join(notes)})" if notes else ""
        verdict = "ok" if self.passed else "FAIL"
        target = self.target_reasons()
        rejects = f"; --target {self.report.target} rejects: {target}" if target else ""
        return f"{verdict}: {self.report.model}: {remaining_line(self.remaining)}{rejects}{note}"

    def target_reasons(self) -> str:
        """Under a profile other than ``default``, why the model fails it: the pattern of
        each fold left to do and the reason of each BN kept, counted
        (``conv-bn-split ×4, not-lowerable``); empty when it passes or under ``default``."""
        if self.report.target == DEFAULT_TARGET:
            return ""
        codes = [fold.pattern for fold in self.report.must_fold]
        codes += [skip.reason for skip in self.kept_batchnorms]
        counted = {code: codes.count(code) for code in codes}
        return ", ".join(f"{code} ×{n}" if n > 1 else code for code, n in counted.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "passed": self.passed,
            "exit_code": self.exit_code,
            "remaining": self.remaining,
            "remaining_total": sum(self.remaining.values()),
            "kept_rejected": [asdict(skip) for skip in self.kept_batchnorms],
        }

    def to_markdown(self) -> str:
        c = self.report.counts
        verdict = "passed" if self.passed else "failed"
        lines = [
            f"### bnfold check: `{self.report.model}` {verdict}",
            "",
            f"**{remaining_line(self.remaining)}** "
            f"(BatchNormalization nodes: {c.get('batchnorm_before', 0)}, "
            f"kept with a reason: {len(self.report.skipped)})",
            "",
        ]
        if self.target_reasons():
            lines += [f"--target {self.report.target} rejects: {self.target_reasons()}", ""]
        return "\n".join(lines + self.report._markdown_tables("Foldable"))

    def render(self, console: Any) -> None:
        """The foldable and kept tables, then the model's counts (the verdict line is apart)."""
        self.report.render_tables(console, "Foldable")
        c = self.report.counts
        console.print(
            f"{self.report.model}: BatchNormalization nodes: {c.get('batchnorm_before', 0)}   "
            f"foldable: {sum(self.remaining.values())}   kept: {len(self.report.skipped)}   "
            f"({self.report.seconds:.2f} s)",
            markup=False,
        )


def check_json(checks: list[CheckReport]) -> str:
    """One model: its check as before plus the verdict; several: ``{passed, exit_code, models}``."""
    if len(checks) == 1:
        return to_json(checks[0].to_dict()) + "\n"
    passed = all(check.passed for check in checks)
    return (
        to_json(
            {
                "bnfold_version": __version__,
                "passed": passed,
                "exit_code": 0 if passed else 1,
                "models": [check.to_dict() for check in checks],
            }
        )
        + "\n"
    )

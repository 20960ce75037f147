"""VerifyReport: the result of ``verify()``, rendered as a terminal table, JSON and Markdown.

JSON schema (``to_dict``), stable keys::

    passed: bool                      every provider that ran passed, none requested is missing
    exit_code: 0 | 1 | 4
    original, candidate: str          paths, or "<in-memory model>"
    reference: {provider, level, graph_optimization_level}
    providers: [{provider, provider_name, level, status: passed|failed|unavailable, reason,
                 requested, actual_providers, failing_run, outputs: {name: {max_abs_error,
                 max_rel_error, p99_abs_error, cosine_similarity, mismatched, total, passed,
                 reason, dtype, shape, atol, rtol, ...}}}]
    seeds: [int], runs: int, input_files: [str], inputs: [{name, dtype, shape, low, high, source}]
    tolerances: {defaults: {dtype: {atol, rtol}}, atol_override, rtol_override}
    notes: [str], failing_inputs: str | null, rerun_command: str | null
    onnxruntime_version, bnfold_version, duration_s
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProviderUnavailable, VerificationFailed
from .compare import DEFAULT_TOLERANCES, OutputComparison
from .session import LEVELS, provider_full_name

PASSED, FAILED, UNAVAILABLE = "passed", "failed", "unavailable"


@dataclass
class ProviderResult:
    """The candidate on one provider at one optimization level, worst case over all runs."""

    provider: str
    level: str
    status: str  # passed | failed | unavailable
    reason: str | None = None
    requested: bool = True  # named by the caller (False: part of the default set)
    actual_providers: list[str] = field(default_factory=list)
    outputs: dict[str, OutputComparison] = field(default_factory=dict)
    failing_run: int | None = None
    session_create_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "provider_name": provider_full_name(self.provider),
            "level": self.level,
            "status": self.status,
            "reason": self.reason,
            "requested": self.requested,
            "actual_providers": list(self.actual_providers),
            "failing_run": self.failing_run,
            "session_create_ms": self.session_create_ms,
            "outputs": {name: comparison.to_dict() for name, comparison in self.outputs.items()},
        }


@dataclass
class VerifyReport:
    """Everything ``bnfold verify`` found; ``passed`` is the verdict."""

    original: str
    candidate: str
    providers: list[ProviderResult]
    seeds: list[int]
    runs: int
    inputs: list[dict[str, Any]]
    atol: float | None
    rtol: float | None
    onnxruntime_version: str
    bnfold_version: str
    levels: list[str] = field(default_factory=list)
    requested_providers: list[str] | None = None
    input_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failing_inputs: str | None = None
    rerun_command: str | None = None
    duration_s: float = 0.0

    # -- verdict -------------------------------------------------------------------------

    @property
    def ran(self) -> list[ProviderResult]:
        return [r for r in self.providers if r.status != UNAVAILABLE]

    @property
    def failed(self) -> list[ProviderResult]:
        return [r for r in self.providers if r.status == FAILED]

    @property
    def missing(self) -> list[ProviderResult]:
        """Explicitly requested providers that could not run."""
        return [r for r in self.providers if r.status == UNAVAILABLE and r.requested]

    @property
    def passed(self) -> bool:
        """True only if something ran, nothing failed, and nothing requested was missing."""
        return bool(self.ran) and not self.failed and not self.missing

    @property
    def exit_code(self) -> int:
        """0 pass, 1 mismatch (wins: the model is wrong), 4 a requested provider is missing."""
        if self.failed or not self.ran and not self.missing:
            return VerificationFailed.exit_code
        if self.missing:
            return ProviderUnavailable.exit_code
        return 0

    def failed_outputs(self) -> list[str]:
        names: list[str] = []
        for result in self.failed:
            names.extend(n for n, c in result.outputs.items() if not c.passed and n not in names)
        return names

    def summary_line(self) -> str:
        """One line for logs and error messages."""
        if self.passed:
            configs = ", ".join(f"{r.provider}/{r.level}" for r in self.ran)
            return f"candidate matches the original on {configs} ({self.runs} input set(s))"
        if self.failed:
            parts = []
            for result in self.failed:
                bad = [n for n, c in result.outputs.items() if not c.passed]
                detail = (
                    f"outputs {', '.join(repr(n) for n in bad)}"
                    if bad
                    else (result.reason or "failed")
                )
                parts.append(f"{result.provider}/{result.level}: {detail}")
            return "candidate differs from the original: " + "; ".join(parts)
        if self.missing:
            return "requested provider unavailable: " + "; ".join(
                f"{r.provider}/{r.level}: {r.reason}" for r in self.missing
            )
        return "no execution provider could run the candidate"

    def raise_for_status(self) -> None:
        """Raise ``VerificationFailed`` (exit 1) or ``ProviderUnavailable`` (exit 4) unless passed."""
        code = self.exit_code
        if code == 0:
            return
        hint = None
        if self.failing_inputs:
            hint = f"failing inputs saved to {self.failing_inputs}; rerun: {self.rerun_command}"
        if code == ProviderUnavailable.exit_code:
            raise ProviderUnavailable(
                self.summary_line(),
                hint="install the provider's libraries, or drop it from --providers",
            )
        raise VerificationFailed(self.summary_line(), hint=hint)

    # -- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "summary": self.summary_line(),
            "original": self.original,
            "candidate": self.candidate,
            "reference": {
                "provider": "cpu",
                "level": "disable",
                "graph_optimization_level": LEVELS["disable"],
            },
            "requested_providers": self.requested_providers,
            "levels": list(self.levels),
            "providers": [r.to_dict() for r in self.providers],
            "seeds": list(self.seeds),
            "runs": self.runs,
            "input_files": list(self.input_files),
            "inputs": list(self.inputs),
            "tolerances": {
                "defaults": {
                    dtype: {"atol": a, "rtol": r} for dtype, (a, r) in DEFAULT_TOLERANCES.items()
                },
                "non_float": "exact",
                "atol_override": self.atol,
                "rtol_override": self.rtol,
            },
            "notes": list(self.notes),
            "failing_inputs": self.failing_inputs,
            "rerun_command": self.rerun_command,
            "onnxruntime_version": self.onnxruntime_version,
            "bnfold_version": self.bnfold_version,
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False, default=_json_default)

    # -- Markdown ------------------------------------------------------------------------

    def _title(self) -> str:
        if self.passed:
            return "✅ equivalent"
        if self.exit_code == ProviderUnavailable.exit_code:
            return "⚠️ requested provider unavailable"
        return "❌ outputs differ"

    def to_markdown(self) -> str:
        lines = [
            f"### bnfold verify: {self._title()}",
            "",
            f"`{self.original}` (reference: CPU, `ORT_DISABLE_ALL`) vs `{self.candidate}` — "
            f"onnxruntime {self.onnxruntime_version}, bnfold {self.bnfold_version}",
            "",
            "| provider/level | status | output | max abs err | max rel err | p99 abs err | cosine | mismatched |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in self._rows():
            lines.append("| " + " | ".join(_md_cell(cell) for cell in row) + " |")
        lines.append("")
        inputs = ", ".join(
            f"`{i['name']}` {i['dtype']} {'x'.join(str(d) for d in i['shape']) or 'scalar'}"
            for i in self.inputs
        )
        source = (
            f"from {', '.join(self.input_files)}"
            if self.input_files
            else f"seeds {_seed_text(self.seeds)}"
        )
        lines.append(f"**Inputs** ({self.runs} set(s), {source}): {inputs or 'none'}")
        lines.append("")
        lines.append(
            f"**Tolerances**: {_tolerance_text(self.atol, self.rtol, self._output_dtypes())}"
        )
        details = [r for r in self.providers if r.reason]
        if details or self.notes:
            lines.append("")
            for result in details:
                lines.append(f"- {result.provider}/{result.level} {result.status}: {result.reason}")
            for note in self.notes:
                lines.append(f"- {note}")
        if self.failing_inputs:
            lines += [
                "",
                f"Failing inputs saved to `{self.failing_inputs}`. Rerun:",
                "",
                "```",
                str(self.rerun_command),
                "```",
            ]
        return "\n".join(lines) + "\n"

    def _output_dtypes(self) -> list[str] | None:
        dtypes = sorted({c.dtype for r in self.providers for c in r.outputs.values()})
        return dtypes or None

    def _rows(self) -> list[list[str]]:
        """[provider/level, status, output, max abs, max rel, p99 abs, cosine, bad/total] per output."""
        rows: list[list[str]] = []
        for result in self.providers:
            config = f"{result.provider}/{result.level}"
            skipped = result.status == UNAVAILABLE and not result.requested
            status = result.status + (" (not requested)" if skipped else "")
            if not result.outputs:
                rows.append([config, status, "—", "", "", "", "", ""])
                continue
            for name, c in result.outputs.items():
                rows.append(
                    [
                        config,
                        status,
                        name + ("" if c.passed else " ✗"),
                        _num(c.max_abs_error),
                        _num(c.max_rel_error),
                        _num(c.p99_abs_error),
                        _cosine(c.cosine_similarity),
                        f"{c.mismatched}/{c.total}",
                    ]
                )
        return rows

    # -- terminal ------------------------------------------------------------------------

    def render(self, console: Any | None = None, *, verdict: bool = True) -> None:
        """Print the report as a rich table, then reasons, notes, and (``verdict``) the verdict."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        style = {PASSED: "green", FAILED: "bold red", UNAVAILABLE: "yellow"}
        table = Table(
            title=f"bnfold verify: {self.original} vs {self.candidate}",
            title_justify="left",
            box=box.SIMPLE_HEAD,  # no vertical rules: fits 80 columns
            pad_edge=False,
            collapse_padding=True,
        )
        table.add_column("provider/level", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("output", overflow="fold", min_width=6)
        for column in ("max abs", "max rel", "p99 abs", "cosine", "bad"):
            table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        statuses = [r.status for r in self.providers for _ in (r.outputs or [None])]
        for row, status in zip(self._rows(), statuses, strict=True):
            row[1] = f"[{style.get(status, '')}]{row[1]}[/]"
            table.add_row(*row)
        console.print(table)
        console.print(
            f"reference: CPU, ORT_DISABLE_ALL; onnxruntime {self.onnxruntime_version};"
            f" {_tolerance_text(self.atol, self.rtol, self._output_dtypes())}",
            markup=False,
            highlight=False,
        )
        for result in self.providers:
            if result.reason:
                console.print(
                    f"[{style.get(result.status, '')}]{result.provider}/{result.level} {result.status}:[/]",
                    _escape(result.reason),
                    highlight=False,
                    soft_wrap=True,
                )
        for note in self.notes:
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        if self.failing_inputs:
            console.print(
                f"failing inputs saved to {self.failing_inputs}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            console.print(
                f"rerun: {self.rerun_command}", highlight=False, markup=False, soft_wrap=True
            )
        if verdict:
            mark = "[green]PASSED[/]" if self.passed else "[bold red]FAILED[/]"
            console.print(f"{mark}:", _escape(self.summary_line()), highlight=False, soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}"


def _cosine(value: float | None) -> str:
    """Cosine near 1 as ``1-3.2e-09``: the distance from 1 is the informative part."""
    if value is None:
        return "—"
    if value == 1.0:
        return "1"
    if 0.999 < value < 1.0:
        return f"1-{1.0 - value:.1e}"
    return f"{value:.4f}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(str(s) for s in seeds) or "none"


def _tolerance_text(atol: float | None, rtol: float | None, dtypes: list[str] | None = None) -> str:
    """The rule and the (atol, rtol) in force for ``dtypes`` (all float dtypes when None)."""
    floats = [d for d in (dtypes or DEFAULT_TOLERANCES) if d in DEFAULT_TOLERANCES]
    exact = dtypes is None or any(d not in DEFAULT_TOLERANCES for d in dtypes)
    parts = [
        f"{dtype} atol={atol if atol is not None else a:g} rtol={rtol if rtol is not None else r:g}"
        for dtype, (a, r) in DEFAULT_TOLERANCES.items()
        if dtype in floats
    ]
    if exact:
        parts.append("non-float exact")
    return "|cand-ref| <= atol + rtol*|ref|: " + ", ".join(parts)


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)

"""VerifyReport: the result of ``verify()``, rendered as a terminal table, JSON and Markdown.

JSON schema (``to_dict``), stable keys::

    passed: bool                      every provider that ran passed, none requested is missing
    exit_code: 0 | 1 | 4
    original, candidate: str          paths, or "<in-memory model>"
    reference: {provider, level, graph_optimization_level}
    providers: [{provider, provider_name, level, status: passed|failed|unavailable, reason,
                 requested, actual_providers, failing_run, outputs: {name: {max_abs_error,
                 max_rel_error, p99_abs_error, cosine_similarity, mismatched, total, passed,
                 reason, dtype, shape, atol, rtol, tolerance_used, ...}},
                 sites: {name: <same as outputs>}, site_error, first_divergence,
                 local: {name: {passed, failing_run, kind, max_steps, moved, ...}},
                 moves_start: str | null}]   local: quantized tensors judged layer by layer
                                      on the original's quantized inputs (``local.py``, cpu);
                                      kind float: {max_abs_error, tolerance_used, atol, ...}
    sites: {mode, compared: [{name, bn, into}], left_out: [name], notes: [str]}
    weak_outputs: [{output, kind: saturated|constant|nonfinite|integer|bool|same-argmax,
                    message, share}]
    uncovered_outputs: [str]          weak outputs a difference reaches past no compared site
    if_branches: [{node, condition, then_runs, else_runs}]   top-level Ifs (null: unknown)
    float64_judge: {factor, seconds, unavailable: str | null, judged: [{provider, level, name,
                    passed, candidate_error, original_error, allowed, allowance_used}]}
                                      tensors beyond atol+rtol*|ref| judged against a float64
                                      run of the original (``compare.py``); per comparison
                                      also ``float64`` in outputs/sites
    provider_drift: {provider: {status, outputs, sites, summary} | {status, reason}}
    quantized: {max_steps, share_bound, tensors: {name: {kind, node, qtype, axis, channels,
                scale_min, scale_max}}, kernel_choice: {level: {name: {max_steps, moved,
                total, share, ...}}}}   quantized outputs/sites judged in steps
                                      (``quantized.py``); per comparison also ``steps``
    inconclusive: bool               a weak output is uncovered: not a pass
    seeds: [int], runs: int, input_files: [str], inputs: [{name, dtype, shape, low, high, source}]
    tolerances: {defaults: {dtype: {atol, rtol}}, atol_override, rtol_override}
    input_notes: [str] (how each input's shape was chosen), notes: [str],
    failing_inputs: str | null, rerun_command: str | null
    onnxruntime_version, bnfold_version, duration_s

Written by ``storage.results.to_json``: keys sorted, and a non-finite number (an infinite
``tolerance_used``, a NaN ``worst_candidate``) is ``null`` with ``<key>_nonfinite`` beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProviderUnavailable, VerificationFailed
from ..runtime.dims import ShapeNote
from ..runtime.session import LEVELS, provider_full_name
from ..storage.results import to_json
from .compare import DEFAULT_TOLERANCES, FLOAT64_FACTOR, OutputComparison, StepJudgement
from .evidence import Weakness
from .quantized import MAX_STEPS, SHARE_BOUND, effect_line

PASSED, FAILED, UNAVAILABLE = "passed", "failed", "unavailable"
# Site rows shown per configuration in the terminal/Markdown table (all are in the JSON).
_SITE_ROWS = 5


# Narrower than this, verify leaves p99 and cosine to the reports.
_WIDE = 100


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
    sites: dict[str, OutputComparison] = field(default_factory=dict)
    site_error: str | None = None
    first_divergence: str | None = None
    # Quantized tensors judged locally ({name: LocalResult.to_dict()}; ``local.py``) and the
    # first one (original order) whose local judgement moved any element.
    local: dict[str, dict[str, Any]] = field(default_factory=dict)
    moves_start: str | None = None

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
            "sites": {name: comparison.to_dict() for name, comparison in self.sites.items()},
            "site_error": self.site_error,
            "first_divergence": self.first_divergence,
            "local": self.local,
            "moves_start": self.moves_start,
        }

    def failure_summary(self) -> str:
        """``outputs 'y', 2 site(s); first divergence at `t` (BN `b` folded into `c`)``."""
        bad = [n for n, c in self.outputs.items() if not c.passed]
        bad_sites = [n for n, c in self.sites.items() if not c.passed]
        parts = []
        if bad:
            parts.append(f"outputs {', '.join(repr(n) for n in bad)}")
        if bad_sites:
            parts.append(f"{len(bad_sites)} site(s)")
        if not parts:
            return self.reason or "failed"
        where = ""
        if self.reason and "first divergence at " in self.reason:
            where = "; first divergence at " + self.reason.split("first divergence at ", 1)[1]
            where = where.split(": ", 1)[0]
        return ", ".join(parts) + where

    def tolerance_used(self) -> float | None:
        """The worst observed/allowed ratio over outputs and sites (None: nothing compared)."""
        values = [
            c.tolerance_used
            for c in [*self.outputs.values(), *self.sites.values()]
            if c.tolerance_used is not None
        ]
        return max(values) if values else None


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
    site_mode: str = "none"
    site_labels: dict[str, dict[str, str | None]] = field(default_factory=dict)
    sites_left_out: list[str] = field(default_factory=list)
    weak_outputs: list[Weakness] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Weak outputs a difference between the models reaches past no compared tensor: with the
    # planned sites compared, and without them (``sites.SitePlan.uncovered``).
    uncovered: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))
    if_branches: list[dict[str, Any]] = field(default_factory=list)
    # The float64 judge: why it could not run (None: it ran or was never needed), its time.
    float64_unavailable: str | None = None
    float64_seconds: float = 0.0
    # Quantized outputs/sites judged in steps ({name: grid}) and, per level, how far
    # onnxruntime's kernel choice alone moves the original there ({level: {name: steps}}).
    quantized: dict[str, dict[str, Any]] = field(default_factory=dict)
    kernel_choice: dict[str, dict[str, StepJudgement]] = field(default_factory=dict)

    # -- notes ---------------------------------------------------------------------------

    @property
    def shape_notes(self) -> list[str]:
        """How each input's shape was chosen: shown before the tables, where a reader looks
        first (a number measured at 2x2 pixels means nothing without it)."""
        return [note for note in self.notes if isinstance(note, ShapeNote)]

    @property
    def other_notes(self) -> list[str]:
        """The notes shown after the tables."""
        return [note for note in self.notes if not isinstance(note, ShapeNote)]

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
    def uncovered_outputs(self) -> list[str]:
        """Weak outputs (``evidence.py``) that some difference between the models reaches
        without passing a compared site or a strong output: a wrong fold there would pass."""
        sites_compared = any(r.sites for r in self.ran)
        return list(self.uncovered[0] if sites_compared else self.uncovered[1])

    @property
    def inconclusive(self) -> bool:
        """A weak output is uncovered: nothing proves the candidate right there."""
        return bool(self.uncovered_outputs)

    @property
    def passed(self) -> bool:
        """True only if something ran, nothing failed, nothing requested was missing, and the
        evidence was not all weak."""
        return bool(self.ran) and not self.failed and not self.missing and not self.inconclusive

    @property
    def exit_code(self) -> int:
        """0 pass, 1 mismatch (wins: the model is wrong) or inconclusive, 4 a requested
        provider is missing."""
        if self.failed or not self.ran and not self.missing or self.inconclusive:
            return VerificationFailed.exit_code
        if self.missing:
            return ProviderUnavailable.exit_code
        return 0

    def float64_judged(self) -> list[dict[str, Any]]:
        """Every output/site judged against the float64 original, per configuration."""
        rows = []
        for result in self.providers:
            for name, c in [*result.outputs.items(), *result.sites.items()]:
                if c.float64 is not None:
                    rows.append(
                        {
                            "provider": result.provider,
                            "level": result.level,
                            "name": name,
                            "passed": c.passed,
                            **c.float64.to_dict(),
                        }
                    )
        return rows

    def float64_lines(self) -> list[str]:
        """One line per tensor the float64 judge decided, and why it could not run."""
        lines = [
            f"float64 judge, {row['provider']}/{row['level']} `{row['name']}`:"
            f" {row['allowance_used']:.3g} x atol+rtol*|ref|, so judged against a float64 run"
            f" of the original: candidate {row['candidate_error']:.3g} from float64, original"
            f" {row['original_error']:.3g}, allowed {row['allowed']:.3g}"
            f" ({row['factor']:g} x the original's error in the channel + atol+rtol*|ref|):"
            f" {'passes' if row['passed'] else 'fails'}"
            for row in self.float64_judged()
        ]
        if self.float64_unavailable:
            lines.append(
                f"float64 judge not run ({self.float64_unavailable}): tensors beyond"
                " atol+rtol*|ref| fail as they are"
            )
        return lines

    def quantized_lines(self) -> list[str]:
        """Per quantized tensor and configuration its moves in steps, then the kernel choice's."""
        if not self.quantized:
            return []
        lines = [
            f"quantized tensors judged in quantization steps (pass: no element moved over"
            f" {MAX_STEPS} step, at most {SHARE_BOUND:.0%} moved; on cpu the reference is the"
            f" original at the candidate's level): "
            + ", ".join(f"`{n}` ({g['kind']} of `{g['node']}`)" for n, g in self.quantized.items())
        ]
        for result in self.ran:
            for name, c in [*result.outputs.items(), *result.sites.items()]:
                if c.steps is None:
                    continue
                j = c.steps
                lines.append(
                    f"{result.provider}/{result.level} `{name}`: {j.moved} of {j.total} elements"
                    f" moved ({j.share:.2%}), at most {j.max_steps} step(s):"
                    f" {'passes' if c.passed else 'fails'}"
                )
            if result.local:
                parts = [
                    (
                        f"`{n}` float, max error {j['max_abs_error']:.3g}, tolerance used"
                        f" {j['tolerance_used']:.3g}"
                        if j.get("kind") == "float"
                        else f"`{n}` {j['moved']} of {j['total']} moved ({j['share']:.2%}),"
                        f" at most {j['max_steps']} step(s)"
                    )
                    + ("" if j["passed"] else " FAILS")
                    for n, j in result.local.items()
                ]
                lines.append(
                    f"{result.provider}/{result.level} judged locally (each layer on the"
                    f" original's quantized inputs; decides every covered quantized tensor"
                    f" and float tensor it bounds):"
                    f" {'; '.join(parts)}; moves start at "
                    + (f"`{result.moves_start}`" if result.moves_start else "no tensor")
                )
        lines += [effect_line(level, effect) for level, effect in self.kernel_choice.items()]
        return lines

    def failed_outputs(self) -> list[str]:
        names: list[str] = []
        for result in self.failed:
            names.extend(n for n, c in result.outputs.items() if not c.passed and n not in names)
        return names

    def _site_text(self) -> str:
        """``, 6 fold site(s)``; with ``--sites all`` the other tensors are counted apart
        (``, 0 fold site(s) and 105 other tensor(s)``): a model with no fold has no fold site."""
        names = {name for r in self.ran for name in r.sites}
        if not names:
            return ""
        folds = sum(1 for name in names if (self.site_labels.get(name) or {}).get("bn"))
        others = len(names) - folds
        if not others:
            return f", {folds} fold site(s)"
        return f", {folds} fold site(s) and {others} other tensor(s)"

    def summary_line(self) -> str:
        """One line for logs and error messages."""
        if self.passed:
            configs = ", ".join(f"{r.provider}/{r.level}" for r in self.ran)
            site_text = self._site_text()
            used = max((r.tolerance_used() or 0.0 for r in self.ran), default=0.0)
            return (
                f"candidate matches the original on {configs} ({self.runs} input set(s){site_text};"
                f" worst error {used:.2g} of tolerance)"
            )
        if self.failed:
            return "candidate differs from the original: " + "; ".join(
                f"{r.provider}/{r.level}: {r.failure_summary()}" for r in self.failed
            )
        if self.inconclusive and not self.missing:
            kinds = {w.output: w.kind for w in self.weak_outputs}
            weak = ", ".join(f"`{n}` ({kinds.get(n, 'weak')})" for n in self.uncovered_outputs)
            return (
                f"inconclusive: output(s) {weak} are weak evidence and no compared fold site"
                " lies between them and what the candidate changed, so a wrong fold could pass;"
                " compare sites (--sites folds|all) or pass real data with --inputs"
            )
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
            "sites": {
                "mode": self.site_mode,
                "compared": [{"name": n, **labels} for n, labels in self.site_labels.items()],
                "left_out": list(self.sites_left_out),
            },
            "weak_outputs": [w.to_dict() for w in self.weak_outputs],
            "uncovered_outputs": self.uncovered_outputs,
            "if_branches": [dict(row) for row in self.if_branches],
            "float64_judge": {
                "factor": FLOAT64_FACTOR,
                "seconds": round(self.float64_seconds, 3),
                "unavailable": self.float64_unavailable,
                "judged": self.float64_judged(),
            },
            "provider_drift": drift_to_dict(self.drift),
            "quantized": {
                "max_steps": MAX_STEPS,
                "share_bound": SHARE_BOUND,
                "tensors": {n: dict(g) for n, g in self.quantized.items()},
                "kernel_choice": {
                    level: {n: j.to_dict() for n, j in effect.items()}
                    for level, effect in self.kernel_choice.items()
                },
            },
            "inconclusive": self.inconclusive,
            "input_notes": list(self.shape_notes),
            "notes": list(self.other_notes),
            "failing_inputs": self.failing_inputs,
            "rerun_command": self.rerun_command,
            "onnxruntime_version": self.onnxruntime_version,
            "bnfold_version": self.bnfold_version,
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> str:
        """Strict JSON (``storage.results``): an infinite ``tolerance_used`` is ``null`` with
        ``"tolerance_used_nonfinite": "inf"`` beside it."""
        return to_json(self.to_dict())

    # -- Markdown ------------------------------------------------------------------------

    def _title(self) -> str:
        if self.passed:
            return "✅ equivalent"
        if self.inconclusive and not self.failed:
            return "⚠️ inconclusive (weak evidence)"
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
            *[f"- {note}" for note in self.shape_notes],
            *([""] if self.shape_notes else []),
            "| provider/level | status | output / site | max abs err | max rel err | p99 abs err | cosine | mismatched | tol used |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self._rows()[0]:
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
        details = [r for r in self.providers if r.reason or r.site_error]
        judged = self.float64_lines() + self.quantized_lines()
        if details or self.other_notes or self.weak_outputs or self.drift or judged:
            lines.append("")
            for result in details:
                if result.reason:
                    lines.append(
                        f"- {result.provider}/{result.level} {result.status}: {result.reason}"
                    )
                if result.site_error:
                    lines.append(
                        f"- {result.provider}/{result.level} sites not compared: {result.site_error}"
                    )
            for weak in self.weak_outputs:
                lines.append(f"- weak evidence: {weak.message}")
            for provider, entry in self.drift.items():
                lines.append(f"- {drift_line(provider, entry)}")
            for line in judged:
                lines.append(f"- {line}")
            for note in self.other_notes:
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

    def _rows(self) -> tuple[list[list[str]], list[str]]:
        """Rows [provider/level, status, output, max abs, max rel, p99 abs, cosine, bad/total,
        tol used] per output, then per configuration its failing sites (first few) and one
        summary row of the others; and the status of each row's configuration."""
        rows: list[list[str]] = []
        statuses: list[str] = []
        for result in self.providers:
            config = f"{result.provider}/{result.level}"
            skipped = result.status == UNAVAILABLE and not result.requested
            status = result.status + (" (not requested)" if skipped else "")
            if not result.outputs:
                rows.append([config, status, "—", "", "", "", "", "", ""])
                statuses.append(result.status)
                continue
            for name, c in result.outputs.items():
                rows.append(_row(config, status, name, c))
                statuses.append(result.status)
            bad = [(n, c) for n, c in result.sites.items() if not c.passed]
            for name, c in bad[:_SITE_ROWS]:
                rows.append(_row(config, status, f"site {name}", c))
                statuses.append(result.status)
            rest = [c for n, c in result.sites.items() if c.passed]
            if rest or len(bad) > _SITE_ROWS:
                worst = max(rest, key=lambda c: c.tolerance_used or 0.0, default=None)
                label = f"{len(rest)} site(s) pass" + (
                    f", {len(bad) - _SITE_ROWS} more fail" if len(bad) > _SITE_ROWS else ""
                )
                cells = [config, status, label, "", "", "", "", ""]
                cells.append(_used(worst.tolerance_used) if worst is not None else "")
                rows.append(cells)
                statuses.append(result.status)
        return rows, statuses

    # -- terminal ------------------------------------------------------------------------

    def render(self, console: Any | None = None, *, verdict: bool = True) -> None:
        """Print the report as a rich table, then reasons, notes, and (``verdict``) the verdict."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        from ..storage.textfit import cell_width, name_widths, print_table, wrap_name

        console = console or Console()
        style = {PASSED: "green", FAILED: "bold red", UNAVAILABLE: "yellow"}
        headers = ["provider/level", "status", "output"]
        headers += ["max abs", "max rel", "p99 abs", "cosine", "bad", "tol used"]
        rows, statuses = self._rows()
        # Narrower than 100 columns, p99 and cosine stay in the JSON and Markdown reports:
        # every number shown is shown whole, and the output names keep room.
        narrow = console.width < _WIDE
        keep = [i for i, h in enumerate(headers) if not (narrow and h in ("p99 abs", "cosine"))]
        headers = [headers[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
        widths = [cell_width(h, [r[i] for r in rows]) for i, h in enumerate(headers)]
        fixed = [w for i, w in enumerate(widths) if i != 2]
        (fit,) = name_widths(console.width, fixed, [[r[2] for r in rows] + ["output"]], 8)
        table = Table(
            title=f"bnfold verify: {self.original} vs {self.candidate}",
            title_justify="left",
            box=box.SIMPLE_HEAD,  # no vertical rules: fits 80 columns
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for i, header in enumerate(headers):
            if i == 2:
                table.add_column(header, no_wrap=True, width=fit)
            else:
                table.add_column(
                    header, justify="left" if i < 2 else "right", no_wrap=True, width=widths[i]
                )
        if narrow:
            table.caption = "p99 abs, cosine: wider terminal, --report or --markdown"
            table.caption_justify = "left"
        for row, status in zip(rows, statuses, strict=True):
            row[1] = f"[{style.get(status, '')}]{row[1]}[/]"
            row[2] = _escape(wrap_name(row[2], fit))
            table.add_row(*row)
        for note in self.shape_notes:
            console.print(note, highlight=False, markup=False, soft_wrap=False)
        print_table(console, table)
        console.print(
            f"reference: CPU, ORT_DISABLE_ALL; onnxruntime {self.onnxruntime_version};"
            f" {_tolerance_text(self.atol, self.rtol, self._output_dtypes())}",
            markup=False,
            highlight=False,
            soft_wrap=False,
        )
        for result in self.providers:
            if result.reason:
                console.print(
                    f"[{style.get(result.status, '')}]{result.provider}/{result.level} {result.status}:[/]",
                    _escape(result.reason),
                    highlight=False,
                    soft_wrap=False,
                )
            if result.site_error:
                console.print(
                    f"[yellow]{result.provider}/{result.level} sites not compared:[/]",
                    _escape(result.site_error),
                    highlight=False,
                    soft_wrap=False,
                )
        for weak in self.weak_outputs:
            console.print(
                f"[yellow]weak evidence:[/] {_escape(weak.message)}",
                highlight=False,
                soft_wrap=False,
            )
        for line in self.float64_lines() + self.quantized_lines():
            console.print(line, highlight=False, markup=False, soft_wrap=False)
        for note in self.other_notes:
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=False)
        if self.failing_inputs:
            console.print(
                f"failing inputs saved to {self.failing_inputs}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            # One line, whole: a command to copy.
            console.print(
                f"rerun: {self.rerun_command}", highlight=False, markup=False, soft_wrap=True
            )
        if verdict:
            mark = "[green]PASSED[/]" if self.passed else "[bold red]FAILED[/]"
            if self.inconclusive and not self.failed and not self.missing:
                mark = "[bold yellow]INCONCLUSIVE[/]"
            console.print(
                f"{mark}:", _escape(self.summary_line()), highlight=False, soft_wrap=False
            )


# -- provider drift (measured by drift.py) ---------------------------------------------


def drift_line(provider: str, entry: dict[str, Any]) -> str:
    """``openvino differs from CPU on the original by max rel 4.5e-03 (output `y`; 12 x tolerance)``."""
    if entry["status"] != "measured":
        return f"provider drift {provider}: not measured ({entry.get('reason')})"
    compared = [*entry["outputs"].values(), *entry["sites"].values()]
    if not compared:
        return f"provider drift {provider}: nothing compared"
    worst = max(compared, key=lambda c: c.tolerance_used or 0.0)
    rel = (
        max((c.max_rel_error or 0.0) for c in entry["outputs"].values())
        if entry["outputs"]
        else 0.0
    )
    return (
        f"provider drift {provider} vs cpu (original model, both unoptimized): outputs max rel"
        f" {rel:.2g}; worst {worst.tolerance_used or 0.0:.2g} x tolerance at `{worst.name}`"
        " (not a fold failure: the verdict compares both models on the same provider)"
    )


def drift_to_dict(drift: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for provider, entry in drift.items():
        if entry["status"] != "measured":
            result[provider] = dict(entry)
            continue
        result[provider] = {
            "status": "measured",
            "outputs": {n: c.to_dict() for n, c in entry["outputs"].items()},
            "sites": {n: c.to_dict() for n, c in entry["sites"].items()},
            "summary": drift_line(provider, entry),
        }
    return result


def _row(config: str, status: str, name: str, c: OutputComparison) -> list[str]:
    return [
        config,
        status,
        name + ("" if c.passed else " ✗"),
        _num(c.max_abs_error),
        _num(c.max_rel_error),
        _num(c.p99_abs_error),
        _cosine(c.cosine_similarity),
        f"{c.mismatched}/{c.total}",
        _used(c.tolerance_used),
    ]


def _used(value: float | None) -> str:
    """observed/allowed: ``0.03`` is 3% of the tolerance used, ``>1`` fails."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "inf"
    return f"{value:.2g}"


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

"""Render ``benchmarks/work/results.json`` as ``docs/benchmarks.md``.

``python benchmarks/report.py [results.json] [out.md]`` re-renders without re-running.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TOOL_LABELS = {
    "onnx-io": "onnx.load + onnx.save (baseline)",
    "bnfold": "**bnfold** (`optimize` + `save`)",
    "bnfold-cli": "bnfold CLI (`bnfold optimize -q`)",
    "bnfold-nofsync": "bnfold with fsync off",
    "bnfold-io": "bnfold I/O alone (no fold)",
    "onnx-ir-io": "onnx-ir I/O alone (`ir.load` + `ir.save`)",
    "cp": "cp (the files, byte for byte)",
    "onnxruntime": "onnxruntime BASIC (`optimized_model_filepath`)",
    "onnxscript-rules": "onnxscript fuse_batchnorm rules",
    "onnxscript-optimize": "onnxscript `optimizer.optimize`",
    "onnxoptimizer": "onnxoptimizer `fuse_bn_into_conv`",
    "onnxslim": "onnxslim `slim`",
    "onnxsim": "onnxsim `simplify`",
}
TOOL_HOW = {
    "onnx-io": "`onnx.load(path)` then `onnx.save` (external data when the input has it)",
    "bnfold": "`bnfold.optimize(path)` then `result.save(out)`",
    "bnfold-cli": "`bnfold optimize MODEL -o OUT -q` through the click entry point (in process, after imports)",
    "bnfold-nofsync": "as **bnfold**, with `bnfold.storage.outputs`'s `fsync`/`fsync_folder` replaced by no-ops: the difference is what the durable commit costs",
    "bnfold-io": "`bnfold.storage.load.load_model(path)` then `Outputs().save_model(...)`: bnfold's reading and atomic, durable writing with no fold",
    "onnx-ir-io": "`onnx_ir.load(path)` then `onnx_ir.save(model, out)` (external data when the input has it): the I/O onnxscript builds on, with no rewrite",
    "cp": "`shutil.copyfile` of the model and each data file (in the kernel): no tool writes these bytes faster",
    "onnxruntime": "`InferenceSession(path, level=ORT_ENABLE_BASIC, optimized_model_filepath=out)`, CPU provider; external initializers file when the input has external data",
    "onnxscript-rules": "`onnx_ir.load`, `onnxscript.rewriter.rewrite(model, [fuse_batchnorm_into_conv_rule, ..._conv_transpose_rule, ..._gemm_rule])`, `onnx_ir.save`",
    "onnxscript-optimize": "`onnx_ir.load`, `onnxscript.optimizer.optimize(model)` (constant folding + the default rewrite rules, which include the BN fusions), `onnx_ir.save`",
    "onnxoptimizer": "`onnxoptimizer.optimize(onnx.load(path), ['fuse_bn_into_conv'])` + `onnx.save`; for external data its `optimize_from_path`",
    "onnxslim": "`onnxslim.slim(path, out)` with defaults",
    "onnxsim": "`onnxsim.simplify(path, output_path=out)` with defaults (no numerical check)",
}


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def _mb(value: Any) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def node_changes(ops_in: dict[str, int], ops_out: dict[str, int]) -> str:
    deltas = {
        op: ops_out.get(op, 0) - ops_in.get(op, 0)
        for op in set(ops_in) | set(ops_out)
        if op != "BatchNormalization"
    }
    parts = [
        f"{'+' if d > 0 else '−'}{abs(d)} {op}"
        for op, d in sorted(deltas.items(), key=lambda kv: (-kv[1], kv[0]))
        if d
    ]
    if not parts:
        return "none"
    if len(parts) > 6:
        parts = parts[:5] + [f"… ({len(parts) - 5} more op types)"]
    return ", ".join(parts)


def verify_cell(row: dict[str, Any]) -> str:
    v = row.get("verify")
    if not row.get("ok"):
        return "—"
    if not v:
        return "not run"
    seconds = v.get("total_s", v.get("process_s"))
    if v["status"] == "pass":
        return f"pass ({_num(seconds, 1)} s)"
    if v["status"] == "structure":
        numeric = v.get("numeric") or {}
        verdict = {True: "pass", False: "**FAIL**"}.get(numeric.get("passed"), "error")
        if numeric.get("passed") is not True:
            verdict += f" ({_cell(numeric.get('summary', ''))[:160]}…)"
        return f"numbers {verdict}; structure check fails: {_cell(v.get('detail', '').split(';')[0])[:160]}"
    return f"**{v['status']}**: {_cell(v.get('detail', ''))[:220]}"


def model_table(entry: dict[str, Any], since: str | None = None) -> list[str]:
    """The tools' rows; with ``since`` (the last run's start), older rows are marked †."""
    ops_in = entry.get("ops_in") or {}
    bn_in = ops_in.get("BatchNormalization", 0)
    lines = [
        "| tool | time s | process s | peak MiB | peak − start MiB | BN left | other node changes | verify |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for tool in TOOL_LABELS:
        row = entry["tools"].get(tool)
        if row is None:
            continue
        label = TOOL_LABELS[tool]
        if since and str(row.get("when", ""))[:19] < since[:19]:
            label += " †"
        if not row.get("ok"):
            reason = _cell(row.get("error") or "failed")[:250]
            took = _num(row.get("process_s"), 1) if row.get("process_s") else "—"
            peak = _mb(row.get("poll_peak_mb")) if row.get("poll_peak_mb") else "—"
            lines.append(f"| {label} | failed | {took} | {peak} | — | — | {reason} | — |")
            continue
        ops_out = row.get("ops_out") or {}
        bn_left = ops_out.get("BatchNormalization", 0)
        time_cell = _num(row.get("work_s"))
        if row.get("rounds", 1) > 1:
            time_cell += f" (median of {row['rounds']})"
        base = row.get("rss_base_mb")
        peak = row.get("rss_peak_mb")
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    time_cell,
                    _num(row.get("process_s")),
                    _mb(peak),
                    _mb(peak - base) if peak is not None and base is not None else "—",
                    f"{bn_left} of {bn_in}" if bn_in else "0",
                    node_changes(ops_in, ops_out),
                    verify_cell(row),
                ]
            )
            + " |"
        )
    return lines


def targets(entry: dict[str, Any]) -> list[str]:
    tools = entry["tools"]
    base, ours = tools.get("onnx-io"), tools.get("bnfold")
    size_mb = entry["bytes"] / 2**20
    lines = []
    if base and ours and base.get("ok") and ours.get("ok"):
        ratio = ours["work_s"] / base["work_s"]
        lines.append(
            f"- **time**: bnfold {ours['work_s']:.2f} s vs onnx.load + onnx.save "
            f"{base['work_s']:.2f} s = **{ratio:.2f}×** (target ≤ 1.2×)"
            + (
                f"; rounds: bnfold {ours.get('work_runs_s')}, baseline {base.get('work_runs_s')}"
                if ours.get("rounds", 1) > 1
                else ""
            )
        )
    other = tools.get("onnxscript-rules")
    if ours and other and ours.get("ok") and other.get("ok"):
        lines.append(
            f"- **vs onnxscript**: bnfold {ours['work_s']:.2f} s, {ours['rss_peak_mb']:,.0f} MiB "
            f"peak; onnxscript's rules {other['work_s']:.2f} s, {other['rss_peak_mb']:,.0f} MiB "
            f"(bnfold/onnxscript time = **{ours['work_s'] / other['work_s']:.2f}×**)"
            + (
                f"; rounds: onnxscript {other.get('work_runs_s')}"
                if other.get("rounds", 1) > 1
                else ""
            )
        )
    durable, loose = tools.get("bnfold"), tools.get("bnfold-nofsync")
    if durable and loose and durable.get("ok") and loose.get("ok"):
        lines.append(
            f"- **fsync**: bnfold {durable['work_s']:.2f} s, with fsync off "
            f"{loose['work_s']:.2f} s: the durable commit costs "
            f"{durable['work_s'] - loose['work_s']:+.2f} s"
        )
    if ours and ours.get("ok"):
        peak = ours["rss_peak_mb"]
        above = peak - ours.get("rss_base_mb", 0.0)
        lines.append(
            f"- **memory**: bnfold peak {peak:,.0f} MiB = **{peak / size_mb:.2f}×** the model's "
            f"{size_mb:,.0f} MiB ({above / size_mb:.2f}× counting only what it added after "
            f"imports; target ≤ 1.5×)"
            + (
                f"; baseline peak {base['rss_peak_mb']:,.0f} MiB = {base['rss_peak_mb'] / size_mb:.2f}×"
                if base and base.get("ok")
                else ""
            )
        )
    elif ours:
        lines.append(f"- **bnfold failed**: {ours.get('error')}")
    return lines


def profile_lines(entry: dict[str, Any]) -> list[str]:
    prof = entry.get("profile")
    if not prof:
        return []
    if prof.get("error"):
        return [f"bnfold phase profile failed: {prof['error']}", ""]
    lines = [
        "bnfold by phase (`benchmarks/profile_bnfold.py`, a fresh process; peak = the kernel's "
        f"VmHWM reset before each phase; {prof.get('rss_start_mb', 0):,.0f} MiB after imports):",
        "",
        "| phase | s | resident at end MiB | peak during phase MiB |",
        "|---|---:|---:|---:|",
    ]
    for phase in prof.get("phases", []):
        lines.append(
            f"| {phase['phase']} | {phase['seconds']:.2f} | {phase['rss_end_mb']:,.0f} | "
            f"{phase['rss_peak_mb']:,.0f} |"
        )
    lines.append("")
    return lines


def overhead_lines(store: dict[str, Any]) -> list[str]:
    rows_v, rows_b = [], []
    for name in _model_order(store):
        entry = store["models"][name]
        v = (entry["tools"].get("bnfold") or {}).get("verify")
        if v and v.get("total_s") is not None:
            ort = v.get("ort_create_s", 0.0) + v.get("ort_run_s", 0.0)
            extra = v["total_s"] - ort
            rows_v.append(
                f"| {name} | {v['total_s']:.2f} | {v.get('ort_create_s', 0):.2f} + "
                f"{v.get('ort_run_s', 0):.2f} ({v.get('ort_sessions', 0)} sessions, "
                f"{v.get('ort_runs', 0)} runs) | {extra:.2f} | {100 * extra / v['total_s']:.0f}% |"
            )
        b = entry.get("bench")
        if b and b.get("total_s") is not None:
            ort = b.get("ort_create_s", 0.0) + b.get("ort_run_s", 0.0)
            extra = b["total_s"] - ort
            state = "" if b.get("ok") else f" (failed: {_cell(b.get('error', ''))[:100]})"
            rows_b.append(
                f"| {name}{state} | {b['total_s']:.2f} | {b.get('ort_create_s', 0):.2f} + "
                f"{b.get('ort_run_s', 0):.2f} ({b.get('ort_sessions', 0)} sessions, "
                f"{b.get('ort_runs', 0)} runs) | {extra:.2f} | {100 * extra / b['total_s']:.0f}% | "
                f"{b.get('iters')} / {b.get('warmup')} / {b.get('levels')} |"
            )
    lines = [
        "## Overhead of `bnfold verify` and `bnfold bench`",
        "",
        "Time of the whole call against the time spent inside onnxruntime, measured in the same "
        "process by wrapping `InferenceSession.__init__`, `run` and `run_with_iobinding`. "
        "The rest (loading and checking both models, generating inputs, comparing, statistics, "
        "rendering) is what bnfold adds.",
        "",
    ]
    if rows_v:
        lines += [
            "`bnfold verify ORIGINAL BNFOLD_OUTPUT "
            + " ".join(store.get("settings", {}).get("verify", "").split())
            + " -q` "
            "(click entry point, in process, after imports):",
            "",
            "| model | total s | inside onnxruntime s (create + run) | added by bnfold s | share |",
            "|---|---:|---:|---:|---:|",
            *rows_v,
            "",
        ]
    if rows_b:
        lines += [
            "`bnfold.bench(ORIGINAL, BNFOLD_OUTPUT, providers='cpu', ...)`:",
            "",
            "| model | total s | inside onnxruntime s (create + run) | added by bnfold s | share | iters / warmup / levels |",
            "|---|---:|---:|---:|---:|---|",
            *rows_b,
            "",
        ]
    return lines


def _run_lines(store: dict[str, Any]) -> list[str]:
    runs = store.get("runs") or [
        {
            "command": store.get("command", ""),
            "date": store.get("date", ""),
            "seconds": store.get("seconds"),
        }
    ]
    if len(runs) == 1:
        run = runs[0]
        took = f"; it took {run['seconds'] / 60:.1f} min" if run.get("seconds") else ""
        return [
            f"- **command**: `{run['command']}` ({store.get('mode', '')} mode)",
            f"- **date**: {run['date']}{took}",
        ]
    lines = [
        f"- **commands** ({store.get('mode', '')} mode; a later run re-measured the models and "
        "tools it names, the rest are from the first):"
    ]
    for run in runs:
        took = f", {run['seconds'] / 60:.1f} min" if run.get("seconds") else ""
        lines.append(f"  - `{run['command']}` ({run['date']}{took})")
    return lines


def _model_order(store: dict[str, Any]) -> list[str]:
    order = [m for m in store.get("model_order", []) if m in store["models"]]
    return order + [m for m in store["models"] if m not in order]


def markdown(store: dict[str, Any]) -> str:
    machine = store.get("machine", {})
    versions = store.get("versions", {})
    settings = store.get("settings", {})
    lines = [
        "# Benchmarks",
        "",
        "bnfold against the other tools that fold BatchNormalization, on generated, exported and "
        "onnx-backend models. Generated by `benchmarks/run.py`; do not edit by hand.",
        "",
        *_run_lines(store),
        f"- **machine**: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gib', '?')} GiB RAM, {machine.get('os', '')}, Python {machine.get('python', '')}; no GPU used",
        "- **versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- **limits per run**: {settings.get('timeout_s', 0):.0f} s, "
        f"{settings.get('mem_limit_gib', 0):.0f} GiB resident memory",
        "- **load average** (1 min) when each model started: "
        + ", ".join(
            f"{name} {store['models'][name].get('loadavg', [0])[0]:.1f}"
            for name in _model_order(store)
            if store["models"][name].get("loadavg")
        )
        + ". Above ~0.2 something else was running on this 2-core machine and the times are "
        "noisier; peak memory is unaffected.",
        "",
        "## How it is measured",
        "",
        "- Every tool runs on every model in its **own fresh process** (`benchmarks/child.py`), one "
        "at a time. **time s** is from reading the input to the output being on disk (load + "
        "transform + save), after the tool's modules were imported; **process s** is the whole "
        "process (interpreter start and imports included) as the parent saw it.",
        "- **peak MiB** is the process's peak resident memory (`VmHWM`; memory-mapped file pages "
        "count too); **peak − start MiB** "
        "subtracts what the process held after its imports (interpreter, numpy, onnx, the tool).",
        "- **BN left**: BatchNormalization nodes in the output. **other node changes**: node count "
        "per op type, output minus input (subgraphs included), BN excluded.",
        "- **verify**: `bnfold verify ORIGINAL OUTPUT "
        + settings.get("verify", "")
        + "`: the original runs with onnxruntime at ORT_DISABLE_ALL (the reference), the output at "
        "ORT_DISABLE_ALL and ORT_ENABLE_ALL, random inputs, per-dtype tolerances "
        "(float32: atol = rtol = 1e-4). A tool's output that still has every BN passes trivially.",
        "- onnx.load + onnx.save, bnfold, onnxscript's rules, bnfold with fsync off, the two I/O "
        "layers alone and cp are timed side by side in interleaved rounds where a model asks for "
        "it (the median is shown); every other tool runs once. Outputs are deleted after "
        "verification. Before each run the parent calls `sync`, so that no tool pays for the "
        "writeback of the previous one's output (only bnfold fsyncs its own).",
        "",
        "Tools:",
        "",
        *[f"- {TOOL_LABELS[t]}: {TOOL_HOW[t]}" for t in TOOL_LABELS],
        "",
        "## Results",
        "",
    ]
    runs = store.get("runs") or []
    since = runs[-1]["date"] if len(runs) > 1 else None
    for name in _model_order(store):
        entry = store["models"][name]
        ops_in = entry.get("ops_in") or {}
        whens = [str(row.get("when", ""))[:19] for row in entry["tools"].values()]
        mixed = bool(since) and min(whens) < since[:19] <= max(whens)  # type: ignore[index]
        lines += [
            f"### {name}",
            "",
            f"{entry.get('description', '')}. {entry['bytes'] / 1e6:,.1f} MB "
            f"({entry['bytes'] / 2**20:,.1f} MiB) on disk"
            f"{' (external data)' if entry.get('external_data') else ''}, "
            f"{sum(ops_in.values())} nodes, {ops_in.get('BatchNormalization', 0)} BatchNormalization.",
            "",
            *model_table(entry, since if mixed else None),
            "",
        ]
        if mixed:
            lines += [
                "† measured by the first run, the other rows by the later one (load average "
                "and engine version may differ).",
                "",
            ]
        if entry["bytes"] > 100e6:
            lines += [*targets(entry), ""]
        lines += profile_lines(entry)
    lines += overhead_lines(store)
    lines += [
        "## Re-running",
        "",
        "```bash",
        "bash benchmarks/run.sh --quick                               # small models, about 2 min",
        "bash benchmarks/run.sh                                       # everything (about an hour)",
        "bash benchmarks/run.sh --models chain-512x50 --tools onnx-io,bnfold   # one pair again",
        "```",
        "",
        "Generated models are kept in `benchmarks/work/models/` (git-ignored) and reused; "
        "`benchmarks/work/results.json` holds every number shown here and more (per-round times, "
        "polled memory, verify details); `benchmarks/work/profile-*.txt` the cProfile listings.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    here = Path(__file__).resolve().parent
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "work" / "results.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here.parent / "docs" / "benchmarks.md"
    out.write_text(markdown(json.loads(results.read_text())))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

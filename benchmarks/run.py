"""Benchmark bnfold against the other tools that fold BatchNormalization; write docs/benchmarks.md.

Run it through ``bash benchmarks/run.sh [--quick]`` (which makes the benchmark venv). Every
tool runs on every model in a fresh process (``child.py``), one at a time, with a time limit
and a memory limit; each output is checked with ``bnfold verify ORIGINAL OUTPUT`` (CPU, levels
disable and all) and deleted afterwards unless ``--keep-outputs``. Results accumulate in
``benchmarks/work/results.json``: ``--models``/``--tools`` re-run a part and keep the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:  # in the benchmark venv (requirements.txt); without it, memory is polled from /proc
    import psutil
except ImportError:
    psutil = None

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_models
import report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
OUT = WORK / "out"
RESULTS = WORK / "results.json"
DOC = REPO / "docs" / "benchmarks.md"
CHILD = HERE / "child.py"

TOOLS = [
    "onnx-io",
    "bnfold",
    "bnfold-cli",
    "bnfold-nofsync",
    "bnfold-io",
    "onnx-ir-io",
    "cp",
    "onnxruntime",
    "onnxscript-rules",
    "onnxscript-optimize",
    "onnxoptimizer",
    "onnxslim",
    "onnxsim",
]
# Timed side by side in `repeat` interleaved rounds (the others run once): bnfold against the
# baseline, the fastest other folder, bnfold without fsync, the two I/O layers alone, and cp.
PAIR = ("onnx-io", "bnfold", "onnxscript-rules", "bnfold-nofsync", "bnfold-io", "onnx-ir-io", "cp")
TOOL_MODULES = {
    "bnfold": "bnfold",
    "bnfold-cli": "bnfold",
    "bnfold-nofsync": "bnfold",
    "bnfold-io": "bnfold",
    "onnx-ir-io": "onnx_ir",
    "onnxruntime": "onnxruntime",
    "onnxscript-rules": "onnxscript",
    "onnxscript-optimize": "onnxscript",
    "onnxoptimizer": "onnxoptimizer",
    "onnxslim": "onnxslim",
    "onnxsim": "onnxsim",
}
VERIFY_OPTIONS = ["--providers", "cpu", "--level", "disable,all"]
# bench overhead: model -> (iters, warmup, levels)
BENCH_MODELS = {
    "torch-resnet": (50, 5, "disable,all"),
    "chain-64x50": (50, 5, "disable,all"),
    "chain-512x50": (20, 3, "disable,all"),
    "tiny-8x2": (3, 1, "all"),  # the smoke test's: every code path, no meaningful number
}
QUICK_BENCH = (20, 3, "all")
PROFILE_MODELS = ("chain-512x50", "chain-1024x64-ext", "tiny-8x2")


def use_work(folder: Path) -> None:
    """Put models, outputs and results under ``folder`` instead of ``benchmarks/work``."""
    global WORK, OUT, RESULTS
    WORK, OUT, RESULTS = folder, folder / "out", folder / "results.json"
    _STATE["results"] = RESULTS
    make_models.use_work(folder)


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (psutil, else Linux's /proc)."""
    if psutil is not None:
        rss = 0
        with contextlib.suppress(psutil.Error):
            ps = psutil.Process(pid)
            rss = ps.memory_info().rss
            for kid in ps.children(recursive=True):
                rss += kid.memory_info().rss
        return rss
    page = os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# one child process, with limits


def run_child(
    args: list[str], log_path: Path, timeout: float, mem_limit_mb: float
) -> dict[str, Any]:
    """Run ``child.py ARGS`` alone; return rc, wall time, polled peak and why it was stopped."""
    cmd = [sys.executable, str(CHILD), *args]
    started = time.perf_counter()
    stopped = None
    peak = 0.0
    with open(log_path, "wb") as handle:
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(WORK)
        )
        while proc.poll() is None:
            rss = _tree_rss_bytes(proc.pid)
            peak = max(peak, rss / 2**20)
            elapsed = time.perf_counter() - started
            if stopped is None and elapsed > timeout:
                stopped = f"stopped: over the {timeout:.0f} s time limit"
            if stopped is None and rss / 2**20 > mem_limit_mb:
                stopped = f"stopped: resident memory over the {mem_limit_mb / 1024:.0f} GiB limit"
            if stopped is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)
    wall = time.perf_counter() - started
    rc = proc.returncode
    if stopped is None and rc is not None and rc < 0:
        stopped = f"killed by signal {signal.Signals(-rc).name}"
    return {"rc": rc, "process_s": wall, "poll_peak_mb": peak, "stopped": stopped}


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    text = [t for t in text if t.strip()]
    return " | ".join(text[-lines:])[:300]


def _error_line(path: Path) -> str:
    """The CLI's one-line ``error: ...`` message in a log, else its last line."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors[-1][len("error:") :].strip() if errors else _tail(path))[:300]


def _remove_outputs(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".data")):
        if candidate.exists():
            candidate.unlink()


# --------------------------------------------------------------------------------------------
# per model


def run_tool(
    spec: make_models.ModelSpec, tool: str, out_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    out = out_dir / f"{tool}.onnx"
    _remove_outputs(out)
    if not args.keep_outputs:
        # Whatever an earlier run left (cp's copies keep their data file's original name).
        for leftover in out_dir.iterdir():
            if leftover.is_file() and leftover.suffix not in (".log", ".json", ".txt"):
                leftover.unlink()
    result_path = out_dir / f"{tool}.result.json"
    result_path.unlink(missing_ok=True)
    log_path = out_dir / f"{tool}.log"
    before = set(out_dir.iterdir())
    # Start every tool with no dirty pages left by the previous one: a tool that does not
    # fsync (most) would otherwise hand its writeback to whichever tool runs next.
    os.sync()
    limits = run_child(
        [tool, str(spec.path), str(out), str(result_path)],
        log_path,
        args.timeout,
        args.mem_limit_mb,
    )
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {"tool": tool, "ok": False}
    result.update(limits)
    if limits["stopped"]:
        result["ok"] = False
        result["error"] = limits["stopped"]
    elif not result.get("ok") and not result.get("error"):
        result["error"] = _tail(log_path) or f"exit code {limits['rc']}"
    # Every new file is output: some tools name their external data file themselves.
    new_files = sorted(
        p for p in set(out_dir.iterdir()) - before if p.suffix not in (".log", ".json")
    )
    result["output_files"] = [p.name for p in new_files]
    result["output_bytes"] = sum(p.stat().st_size for p in new_files if p.is_file())
    return result


def verify_output(
    spec: make_models.ModelSpec, out: Path, out_dir: Path, tool: str, args: argparse.Namespace
) -> dict[str, Any]:
    result_path = out_dir / f"{tool}.verify.json"
    result_path.unlink(missing_ok=True)
    extra = [*VERIFY_OPTIONS, "--save-failing", str(WORK / "failing" / f"{spec.name}-{tool}")]
    limits = run_child(
        ["--verify", str(spec.path), str(out), str(result_path), *extra],
        out_dir / f"{tool}.verify.log",
        args.timeout,
        args.mem_limit_mb,
    )
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {}
    result.update(limits)
    rep = result.get("report") or {}
    exit_code = result.get("exit")
    if limits["stopped"]:
        status, detail = "error", limits["stopped"]
    elif exit_code == 0:
        status, detail = "pass", rep.get("summary", "")
    elif exit_code == 1:
        status, detail = "FAIL", _fail_detail(rep) or _tail(out_dir / f"{tool}.verify.log")
    elif exit_code == 3 and result.get("numeric"):
        status = "structure"
        detail = _error_line(out_dir / f"{tool}.verify.log")
        numeric = result["numeric"]
        detail += f"; numbers without the structure checks: {'pass' if numeric['passed'] else 'FAIL'} ({numeric['summary']})"
    else:
        status = "error"
        detail = f"exit {exit_code}: {_error_line(out_dir / f'{tool}.verify.log')}"
    result["status"] = status
    result["detail"] = detail
    result["command"] = "bnfold verify " + " ".join(
        shlex.quote(a) for a in [str(spec.path), str(out), *VERIFY_OPTIONS]
    )
    # the per-output table is long; keep what the docs use
    result["report"] = (
        {k: rep.get(k) for k in ("summary", "providers", "duration_s", "failing_inputs")}
        if rep
        else None
    )
    return result


def _fail_detail(rep: dict[str, Any]) -> str:
    parts = []
    for prov in rep.get("providers") or []:
        if prov.get("status") == "passed":
            continue
        worst = None
        for out in (prov.get("outputs") or {}).values():
            if not out.get("passed") and out.get("max_abs_error") is not None:
                worst = max(worst or 0.0, out["max_abs_error"])
        text = f"{prov.get('provider')}/{prov.get('level')}: {prov.get('status')}"
        if worst is not None:
            text += f", max abs error {worst:.3g}"
        elif prov.get("reason"):
            text += f" ({prov['reason'][:150]})"
        parts.append(text)
    return "; ".join(parts) or rep.get("summary", "")


def bench_overhead(
    spec: make_models.ModelSpec, out: Path, out_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    iters, warmup, levels = QUICK_BENCH if args.quick else BENCH_MODELS[spec.name]
    result_path = out_dir / "bench.json"
    result_path.unlink(missing_ok=True)
    limits = run_child(
        ["--bench", str(spec.path), str(out), str(result_path), str(iters), str(warmup), levels],
        out_dir / "bench.log",
        args.timeout,
        args.mem_limit_mb,
    )
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {"ok": False, "error": _tail(out_dir / "bench.log")}
    result.pop("report", None)
    result.update(limits)
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one tool: median times, highest peak."""
    last = dict(runs[-1])
    ok_runs = [r for r in runs if r.get("ok")]
    if ok_runs:
        last["work_s"] = statistics.median(r["work_s"] for r in ok_runs)
        last["process_s"] = statistics.median(r["process_s"] for r in ok_runs)
        last["work_runs_s"] = [round(r["work_s"], 3) for r in ok_runs]
        last["process_runs_s"] = [round(r["process_s"], 3) for r in ok_runs]
        last["rss_peak_mb"] = max(r.get("rss_peak_mb", 0.0) for r in ok_runs)
    last["poll_peak_mb"] = max(r.get("poll_peak_mb", 0.0) for r in runs)
    last["rounds"] = len(runs)
    return last


def run_model(
    spec: make_models.ModelSpec, tools: list[str], args: argparse.Namespace, store: dict[str, Any]
) -> None:
    started = time.perf_counter()
    path = make_models.ensure(spec, log=log)
    size = sum(f.stat().st_size for f in make_models.model_files(spec))
    entry = store["models"].setdefault(spec.name, {"tools": {}})
    entry.update(
        loadavg=[round(v, 2) for v in os.getloadavg()],
        name=spec.name,
        kind=spec.kind,
        description=spec.description or spec.params.get("file", ""),
        bytes=size,
        external_data=path.with_name(path.name + ".data").exists(),
        repeat=spec.repeat,
    )
    out_dir = OUT / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"{spec.name}: {size / 1e6:.1f} MB")

    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    pair = [t for t in PAIR if t in tools]
    rounds = max(1, args.repeat if args.repeat is not None else spec.repeat)
    order = [(t, r) for r in range(rounds) for t in pair]
    order += [(t, 0) for t in tools if t not in pair]
    for tool, round_index in order:
        module = TOOL_MODULES.get(tool)
        if module and not _importable(module):
            runs[tool].append({"tool": tool, "ok": False, "error": f"{module} is not installed"})
            log(f"  {tool}: skipped, {module} is not installed")
            continue
        result = run_tool(spec, tool, out_dir, args)
        runs[tool].append(result)
        state = (
            f"{result['work_s']:.2f} s, peak {result.get('rss_peak_mb', 0):.0f} MB"
            if result.get("ok")
            else f"failed: {result.get('error')}"
        )
        log(
            f"  {tool}{f' (round {round_index + 1})' if len(pair) and rounds > 1 and tool in pair else ''}: {state}"
        )
        if tool in pair and round_index < rounds - 1:
            continue  # verify the last round's output only
        row = summarize(runs[tool])
        out = out_dir / f"{tool}.onnx"
        if row.get("ok") and not args.no_verify:
            row["verify"] = verify_output(spec, out, out_dir, tool, args)
            v = row["verify"]
            log(
                f"    verify: {v['status']} ({v.get('total_s', v['process_s']):.1f} s) {v['detail'][:120]}"
            )
        if tool == "bnfold" and row.get("ok") and spec.name in BENCH_MODELS and not args.no_bench:
            entry["bench"] = bench_overhead(spec, out, out_dir, args)
            b = entry["bench"]
            log(
                f"    bench: {b.get('total_s', 0):.1f} s, onnxruntime {b.get('ort_create_s', 0) + b.get('ort_run_s', 0):.1f} s"
            )
        row["when"] = dt.datetime.now().isoformat(timespec="seconds")
        entry["tools"][tool] = row
        entry["ops_in"] = row.get("ops_in", entry.get("ops_in"))
        if not args.keep_outputs:
            _remove_outputs(out)
            for name in row.get("output_files", []):
                (out_dir / name).unlink(missing_ok=True)
        _save(store)
    if spec.name in PROFILE_MODELS and not args.no_profile:
        entry["profile"] = profile(spec, out_dir, args)
        _save(store)
    entry["seconds"] = time.perf_counter() - started


def profile(spec: make_models.ModelSpec, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Phase times and memory of bnfold (profile_bnfold.py) in a fresh process."""
    result_path = out_dir / "profile.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(HERE / "profile_bnfold.py"),
        str(spec.path),
        "--out",
        str(out_dir / "profile.onnx"),
        "--json",
        str(result_path),
        "--cprofile",
        str(WORK / f"profile-{spec.name}.txt"),
    ]
    log(f"  profiling bnfold on {spec.name}")
    with open(out_dir / "profile.log", "wb") as handle:
        try:
            subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=args.timeout * 2)
        except subprocess.TimeoutExpired:
            return {"error": "timed out"}
    for written in out_dir.glob("profile.onnx*"):  # its second save may pick a new data name
        written.unlink()
    try:
        return json.loads(result_path.read_text())
    except (OSError, ValueError):
        return {"error": _tail(out_dir / "profile.log")}


_IMPORTABLE: dict[str, bool] = {}


def _importable(module: str) -> bool:
    if module not in _IMPORTABLE:
        import importlib.util

        _IMPORTABLE[module] = importlib.util.find_spec(module) is not None
    return _IMPORTABLE[module]


# --------------------------------------------------------------------------------------------
# environment


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(
            (
                psutil.virtual_memory().total
                if psutil is not None
                else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            )
            / 2**30,
            1,
        ),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    names = [
        "bnfold",
        "onnx",
        "onnxruntime-gpu",
        "onnxruntime",
        "onnxscript",
        "onnx-ir",
        "onnxoptimizer",
        "onnxslim",
        "onnxsim",
        "numpy",
        "protobuf",
        "torch",
        "psutil",
    ]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "bnfold"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        found["bnfold"] += f" (git {rev}{', with uncommitted changes in bnfold/' if dirty else ''})"
    except (OSError, subprocess.CalledProcessError, KeyError):
        pass
    return found


_STATE: dict[str, Path] = {"results": RESULTS}


def _load() -> dict[str, Any]:
    try:
        return json.loads(_STATE["results"].read_text())
    except (OSError, ValueError):
        return {"models": {}}


def _save(store: dict[str, Any]) -> None:
    tmp = _STATE["results"].with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1, default=str))
    os.replace(tmp, _STATE["results"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models only (about 2 min)")
    parser.add_argument("--models", help="comma list of models to (re)run; others are kept")
    parser.add_argument("--tools", help=f"comma list of tools to (re)run: {','.join(TOOLS)}")
    parser.add_argument(
        "--repeat", type=int, help=f"interleaved rounds of {','.join(PAIR)} (default per model)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run (600)")
    parser.add_argument("--mem-limit-gb", type=float, default=20.0, help="GiB per run (20)")
    parser.add_argument("--no-verify", action="store_true", help="skip bnfold verify")
    parser.add_argument("--no-bench", action="store_true", help="skip the bench-overhead runs")
    parser.add_argument("--no-profile", action="store_true", help="skip the bnfold profile")
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="only (re)run the bnfold phase profile of the chosen models; keep their timings",
    )
    parser.add_argument("--keep-outputs", action="store_true", help="keep tool outputs")
    parser.add_argument("--doc", default=str(DOC), help="Markdown file to write")
    parser.add_argument(
        "--results", default=None, help="the results JSON to update (default WORK/results.json)"
    )
    parser.add_argument(
        "--work",
        default=None,
        help="folder for models, outputs and results (default benchmarks/work)",
    )
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.work:
        use_work(Path(args.work).resolve())
    _STATE["results"] = Path(args.results) if args.results else RESULTS
    args.mem_limit_mb = args.mem_limit_gb * 1024

    specs = [s for s in make_models.MODELS if s.quick or not args.quick]
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in make_models.BY_NAME]
        if unknown:
            parser.error(
                f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(make_models.BY_NAME)}"
            )
        specs = [make_models.BY_NAME[m] for m in wanted]
    tools = TOOLS
    if args.tools:
        tools = args.tools.split(",")
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            parser.error(f"unknown tool(s): {', '.join(unknown)}; choose from {', '.join(TOOLS)}")

    WORK.mkdir(parents=True, exist_ok=True)
    partial = bool(args.models or args.tools or args.profile_only)
    store = _load() if partial else {"models": {}}
    if not partial:
        store["mode"] = "quick" if args.quick else "full"
    store["machine"] = machine_info()
    store["versions"] = versions()
    store["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    store["command"] = args.command or "python benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    this_run = {"command": store["command"], "date": store["date"], "seconds": None}
    store.setdefault("runs", []).append(this_run)
    store["model_order"] = [s.name for s in make_models.MODELS]
    store["settings"] = {
        "timeout_s": args.timeout,
        "mem_limit_gib": args.mem_limit_gb,
        "verify": " ".join(VERIFY_OPTIONS),
    }
    started = time.perf_counter()
    disk = shutil.disk_usage(str(WORK))
    log(f"disk free under {WORK}: {disk.free / 2**30:.1f} GiB")
    for spec in specs:
        if args.profile_only:
            if spec.name in store["models"] and spec.name in PROFILE_MODELS:
                make_models.ensure(spec, log=log)
                out_dir = OUT / spec.name
                out_dir.mkdir(parents=True, exist_ok=True)
                store["models"][spec.name]["profile"] = profile(spec, out_dir, args)
                _save(store)
            continue
        run_model(spec, tools, args, store)
    store["seconds"] = this_run["seconds"] = round(time.perf_counter() - started, 1)
    _save(store)
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    Path(args.doc).write_text(report.markdown(store))
    log(f"wrote {args.doc} and {_STATE['results']} in {store['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

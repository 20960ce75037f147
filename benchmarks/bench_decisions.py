"""Does ``bnfold bench`` decide right and fast at its defaults? Issue 26's "Done when", measured.

    .venv/bin/python benchmarks/bench_decisions.py --label after            # the record (N=40)
    .venv/bin/python benchmarks/bench_decisions.py --label before --aa-runs 10
    .venv/bin/python benchmarks/bench_decisions.py --parts wall --label after   # one part again
    .venv/bin/python benchmarks/bench_decisions.py --parts power --calibrated-from WORK/after.json

Every number comes from the real CLI (``bnfold bench ORIGINAL CANDIDATE --report R.json``, a
subprocess at bench's defaults): verdicts from the JSON report, wall time from the clock around
the process (start-up, session creation, warm-up and timing: what a user waits for). Three parts:

1. ``aa`` (false verdicts): the bundled ``models/resnet_tiny.onnx`` against a copy that differs
   only in ``doc_string`` (byte-different, the same graph), ``--aa-runs`` times. Any ``faster``
   or ``slower`` is a false verdict; counted per setting (bench times the levels ``disable`` and
   ``all`` by default) and per run (a run is wrong when any of its settings is).
2. ``power``: a chain of n 3x3 Conv+Relu layers (the candidate) against the same chain with 2
   more layers (the original). onnxruntime cannot remove a layer at any level (each has its
   own weights and feeds the next), but the time ratio is not the work ratio (a per-run
   overhead dilutes it, caches and threads bend it), so n is calibrated per level and gain
   (``calibrated_pair``) until onnxruntime's own ratio is the gain: ``--true-pairs`` fresh
   session pairs of ``--true-rounds`` interleaved rounds give one ratio each; the median pair
   (a load spike cannot move it) with its distribution-free 95 % interval is the true ratio,
   printed beside the verdicts of ``--power-runs`` default benches of that pair at that level.
   ``--calibrated-from`` reuses the chains of an earlier run (calibration takes minutes).
3. ``wall``: a default bench of a model against its fold (``bnfold optimize``) for the bundled
   model, onnx's ``light_resnet50.onnx`` and a generated Gemm+BatchNormalization net of
   ``--large-mb`` MB of float32 weights (written under ``--work``, never committed); a bench
   still running after ``--timeout`` seconds is stopped and recorded as such.

Results go to ``WORK/LABEL.json`` and to the section ``LABEL`` of ``--out`` (default
``benchmarks/bench_decisions.md``; other sections are kept), with the machine: CPU model,
cores, ``nproc``, load average before and after each part, date, bnfold commit. ``--bench-args``
adds options to every bench (``tests/benchmarks/test_bench_decisions.py`` makes them tiny: it
checks that the harness runs, not the speed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUNDLED = REPO / "models" / "resnet_tiny.onnx"
LIGHT_RESNET50 = Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"
IR_VERSION, OPSET = 9, 17
FALSE_VERDICTS = ("faster", "slower")
GAINS = (1.05, 1.10)
POWER_LEVELS = ("disable", "all")  # bench's default levels: a pair is sized for each
# issue 26: at most 1 false verdict in 40; a 10 % gain faster 5/5, 5 % at least 4/5
POWER_GOAL = {1.05: 0.8, 1.10: 1.0}
WALL_GOAL_S = {"bundled resnet_tiny": 10.0, "light_resnet50": 60.0, "large": 90.0}
ORT_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


# --- the machine -----------------------------------------------------------------------------


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, object]:
    """What the numbers were measured on: the CPU model, cores, nproc and date."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


# --- one bench, through the real CLI ---------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()


# ``python -c LAUNCHER SOURCE ARGS...``: bnfold from SOURCE. The editable install's import hook
# (a sys.meta_path finder) would win over PYTHONPATH and load the working tree again.
LAUNCHER = """
import runpy, sys
sys.meta_path = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
sys.argv = ["bnfold", *sys.argv[2:]]
runpy.run_module("bnfold", run_name="__main__", alter_sys=True)
"""


def cli_at(rev: str | None, work: Path) -> tuple[tuple[str, ...], str]:
    """The command that runs bnfold, and what it runs.

    Without ``rev``: the ``bnfold`` beside this Python, i.e. this checkout's working tree, work
    in progress included. With ``rev``: that commit's ``bnfold/`` unpacked under
    ``WORK/src-COMMIT`` (``git archive``) and run by ``LAUNCHER``, so others' uncommitted
    edits in a shared tree cannot change the numbers.
    """
    if rev is None:
        here = shutil.which("bnfold", path=str(Path(sys.executable).parent)) or "bnfold"
        return (here,), f"{_git('rev-parse', '--short', 'HEAD')} + working tree"
    commit = _git("rev-parse", "--short", rev)
    if not commit:
        sys.exit(f"--rev {rev}: not a commit of {REPO}; give a hash or branch name")
    source = work / f"src-{commit}"
    if not (source / "bnfold").is_dir():
        source.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "bnfold"], capture_output=True, check=True, cwd=REPO
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return (sys.executable, "-c", LAUNCHER, str(source)), f"{commit} (committed)"


@dataclass
class BenchRun:
    """One ``bnfold bench`` process: its wall time, exit code and verdict per setting."""

    wall_s: float
    exit_code: int | None  # None: stopped at the timeout
    verdicts: dict[str, str] = field(default_factory=dict)  # "cpu/all/batch 1" -> verdict
    speedups: dict[str, float | None] = field(default_factory=dict)
    pairs: dict[str, int | None] = field(default_factory=dict)  # the session pairs timed
    stopped_by: dict[str, str | None] = field(default_factory=dict)  # a sequential bench's
    reported_s: float | None = None  # the report's own duration
    error: str = ""


@dataclass(frozen=True)
class Bench:
    """How to call the CLI: the executable, extra options, the time limit, the scratch folder."""

    bnfold: tuple[str, ...]  # the command that runs the CLI
    extra: tuple[str, ...]
    timeout_s: float
    work: Path

    def run(self, original: Path, candidate: Path, tag: str) -> BenchRun:
        report = self.work / "reports" / f"{tag}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.unlink(missing_ok=True)
        command = [
            *self.bnfold,
            "bench",
            str(original),
            str(candidate),
            "--report",
            str(report),
            "--quiet",
            *self.extra,
        ]
        start = time.monotonic()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, cwd=REPO, timeout=self.timeout_s
            )
        except subprocess.TimeoutExpired:
            return BenchRun(
                time.monotonic() - start, None, error=f"stopped at {self.timeout_s:g} s"
            )
        wall = time.monotonic() - start
        if not report.exists():
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            return BenchRun(wall, done.returncode, error=last)
        return parse_report(json.loads(report.read_text()), wall, done.returncode)


def setting_name(comparison: dict) -> str:
    """``cpu/all`` or, for a model whose batch bench sets, ``cpu/all/batch 1``."""
    name = f"{comparison.get('provider')}/{comparison.get('level')}"
    return name if comparison.get("batch") is None else f"{name}/batch {comparison['batch']}"


def parse_report(report: dict, wall_s: float, exit_code: int) -> BenchRun:
    """The verdicts of a bench JSON report, one per compared setting."""
    run = BenchRun(wall_s, exit_code, reported_s=report.get("settings", {}).get("duration_s"))
    for comparison in report.get("comparisons", []):
        name = setting_name(comparison)
        run.verdicts[name] = str(comparison.get("verdict"))
        run.speedups[name] = comparison.get("speedup")
        run.pairs[name] = comparison.get("pairs")
        run.stopped_by[name] = comparison.get("stopped_by")
    return run


# --- models ----------------------------------------------------------------------------------


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, path)
    return path


def doc_string_copy(source: Path, target: Path) -> Path:
    """``source`` with another ``doc_string``: other bytes, the same graph."""
    model = onnx.load_model(source)
    model.doc_string = f"A/A copy of {source.name}: only this doc_string differs"
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, target)  # ir_version kept: the copy must be the same model
    return target


def _model(
    nodes: list, inits: list, x_shape: list[int], y: str, y_shape: list[int]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "bench_decisions",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


@dataclass(frozen=True)
class ConvChain:
    """``layers`` 3x3 Conv+Relu on a ``channels`` x ``hw`` x ``hw`` map, batch 1.

    Each layer has its own random weights and feeds the next, so onnxruntime can neither drop
    nor merge one at any level: a chain with ``k`` more layers does ``k`` layers more work.
    """

    layers: int
    channels: int = 32
    hw: int = 32

    def model(self) -> onnx.ModelProto:
        rng = np.random.default_rng(0)
        c, nodes, inits, x = self.channels, [], [], "x"
        for i in range(self.layers):
            weight = rng.standard_normal((c, c, 3, 3)).astype(np.float32) / math.sqrt(9 * c)
            inits.append(numpy_helper.from_array(weight, f"w{i}"))
            nodes += [
                helper.make_node("Conv", [x, f"w{i}"], [f"conv{i}"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]),
            ]
            x = f"relu{i}"
        shape = [1, c, self.hw, self.hw]
        return _model(nodes, inits, shape, x, shape)


def gemm_width(megabytes: float, layers: int) -> int:
    """width = sqrt(megabytes * 1e6 / (4 * layers)), rounded to 16 (at least 16).

    ``layers`` float32 width x width weights then total ``4 * layers * width**2`` bytes:
    472 MB in 8 layers -> width 3840, 471.9 MB.
    """
    return max(16, round(math.sqrt(megabytes * 1e6 / (4 * layers)) / 16) * 16)


def large_gemm_bn(megabytes: float, layers: int = 8) -> onnx.ModelProto:
    """``layers`` x (Gemm -> BatchNormalization -> Relu) on a [1, width] input, ~``megabytes``."""
    width = gemm_width(megabytes, layers)
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        weight = rng.standard_normal((width, width), dtype=np.float32) / np.float32(
            math.sqrt(width)
        )
        bn = {
            "scale": rng.uniform(0.5, 1.5, width),
            "bias": rng.standard_normal(width) * 0.1,
            "mean": rng.standard_normal(width) * 0.1,
            "var": rng.uniform(0.5, 1.5, width),
        }
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        inits += [numpy_helper.from_array(v.astype(np.float32), f"{k}{i}") for k, v in bn.items()]
        nodes += [
            helper.make_node("Gemm", [x, f"w{i}"], [f"gemm{i}"], transB=1),
            helper.make_node(
                "BatchNormalization", [f"gemm{i}", *(f"{k}{i}" for k in bn)], [f"bn{i}"]
            ),
            helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"]),
        ]
        x = f"relu{i}"
    return _model(nodes, inits, [1, width], x, [1, width])


def fold(bnfold: Sequence[str], source: Path, target: Path) -> Path:
    """``bnfold optimize SOURCE -o TARGET`` (the fold a user would bench)."""
    target.unlink(missing_ok=True)
    done = subprocess.run(
        [*bnfold, "optimize", str(source), "-o", str(target)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if done.returncode != 0 or not target.exists():
        sys.exit(
            f"bnfold optimize {source} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-300:]}"
        )
    return target


# --- the true ratio, by onnxruntime directly -------------------------------------------------


def pair_medians(paths: Sequence[Path], level: str, pairs: int, rounds: int) -> list[list[float]]:
    """Per fresh session set, the median latency (s) of each model over interleaved rounds.

    Each pair makes new sessions (default threads, as bench), warms each up ``max(3, rounds
    // 10)`` runs, then runs them in turn, the order reversed every round so neither always
    runs first.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel(ORT_LEVELS[level])
    medians = []
    for _ in range(pairs):
        sessions = [
            ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths
        ]
        feeds = [_feed(s) for s in sessions]
        for session, feed in zip(sessions, feeds, strict=True):
            for _ in range(max(3, rounds // 10)):
                session.run(None, feed)
        times: list[list[float]] = [[] for _ in paths]
        for r in range(rounds):
            order = range(len(paths)) if r % 2 == 0 else reversed(range(len(paths)))
            for i in order:
                start = time.perf_counter()
                sessions[i].run(None, feeds[i])
                times[i].append(time.perf_counter() - start)
        medians.append([statistics.median(t) for t in times])
    return medians


def _feed(session: object) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}  # type: ignore[attr-defined]


@dataclass
class TrueRatio:
    """original/candidate at ``level`` by onnxruntime directly, one ratio per fresh session
    pair; the chains compared: ``layers`` + ``EXTRA_LAYERS`` against ``layers``."""

    level: str
    layers: int
    ratio: float  # the median pair: a pair that a load spike hit cannot move it
    low: float  # the median's 95 % distribution-free interval (median_interval)
    high: float
    pair_ratios: list[float]


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The order statistics ``(x_(j), x_(n+1-j))`` that hold the median with ``confidence``.

    ``j`` is the largest with ``P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2``: no shape
    is assumed, so a load-spiked pair widens the interval by one rank at most. Below 6
    values no ``j >= 1`` qualifies and the interval is the whole range.
    """
    ordered, n = sorted(values), len(values)
    below, j = 0.0, 0
    while j < n // 2:
        below += math.comb(n, j) / 2**n  # P(Binomial < j + 1)
        if below > (1 - confidence) / 2:
            break
        j += 1
    return ordered[max(j, 1) - 1], ordered[n - max(j, 1)]


def chain_pair(folder: Path, layers: int) -> tuple[Path, Path]:
    """The original (``layers + EXTRA_LAYERS`` layers) and the candidate (``layers``)."""
    return tuple(  # type: ignore[return-value]
        save(ConvChain(n).model(), folder / f"chain-{n}.onnx")
        for n in (layers + EXTRA_LAYERS, layers)
    )


def true_ratio(folder: Path, layers: int, level: str, timing: TrueTiming) -> TrueRatio:
    """Per pair r = median_original / median_candidate; the median r and its interval."""
    medians = pair_medians(chain_pair(folder, layers), level, timing.pairs, timing.rounds)
    ratios = [o / c for o, c in medians]
    low, high = median_interval(ratios)
    return TrueRatio(level, layers, statistics.median(ratios), low, high, ratios)


EXTRA_LAYERS = 2  # what the original adds to the candidate's chain
CALIBRATION_STEPS = 3  # chain lengths tried per gain and level, at most
CALIBRATION_TOLERANCE = 0.005  # a measured ratio this close to the gain ends the search


@dataclass(frozen=True)
class TrueTiming:
    """How the true ratio is timed: ``pairs`` fresh session pairs of ``rounds`` rounds."""

    pairs: int
    rounds: int


def next_layers(gain: float, layers: int, ratio: float) -> int:
    """The chain length whose 2 extra layers should cost ``gain``, from one measured pair.

    A run of n layers takes ``(n + c) b`` (``b`` a layer, ``c`` the per-run overhead in
    layers), so ``r = 1 + k / (n + c)``: one pair gives ``c = k / (r - 1) - n`` and the
    length for the gain is ``n' = k / (gain - 1) - c``, kept within ``[n / 2, 2 n]`` so that
    one noisy ratio cannot throw the search far. A ratio at or below 1 (noise, or a chain too
    long to see) halves the chain.
    """
    if ratio <= 1.0:
        return max(1, layers // 2)
    overhead = EXTRA_LAYERS / (ratio - 1.0) - layers
    wanted = round(EXTRA_LAYERS / (gain - 1.0) - overhead)
    return max(1, layers // 2, min(2 * layers, wanted))


def calibrated_pair(
    gain: float, level: str, measure: Callable[[int], TrueRatio]
) -> tuple[TrueRatio, list[TrueRatio]]:
    """The chain whose ``EXTRA_LAYERS`` more layers run ``gain`` times slower at ``level``.

    Starts at the work ratio ``n = k / (gain - 1)`` and moves by ``next_layers`` until a
    measured ratio lies within ``CALIBRATION_TOLERANCE`` of the gain, a length repeats, or
    ``CALIBRATION_STEPS`` lengths were measured (``measure(n)``: the true ratio of n + k
    against n layers). Returns the one closest to the gain, and every one tried.
    """
    layers, tried = round(EXTRA_LAYERS / (gain - 1.0)), []
    while len(tried) < CALIBRATION_STEPS:
        tried.append(measure(layers))
        print(f"  gain {gain} at {level}: {layers} layers -> {tried[-1].ratio:.4f}", flush=True)
        if abs(tried[-1].ratio - gain) <= CALIBRATION_TOLERANCE:
            break
        layers = next_layers(gain, layers, tried[-1].ratio)
        if layers in {t.layers for t in tried}:
            break
    return min(tried, key=lambda t: abs(t.ratio - gain)), tried


# --- the three parts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a run measures: the parts, run counts, the true ratio's timing, the large model."""

    parts: tuple[str, ...]
    aa_runs: int
    power_runs: int
    truth: TrueTiming
    large_mb: float
    calibrated: dict[tuple[float, str], dict] = field(default_factory=dict)  # --calibrated-from


def calibrated_rows(saved: Path) -> dict[tuple[float, str], dict]:
    """The power rows of an earlier run (``WORK/LABEL.json``), by gain and level: their
    calibrated chains are reused, true ratios and tried lengths included."""
    power = json.loads(saved.read_text()).get("power", {})
    if "rows" not in power:
        sys.exit(f"--calibrated-from {saved}: no calibrated power part in it; run --parts power")
    return {(row["gain"], row["level"]): row for row in power["rows"]}


def _logged(name: str, measure: Callable[[], dict]) -> dict:
    """``measure()`` with the load average before and after it and its duration."""
    before, start = load_average(), time.monotonic()
    at = datetime.now(UTC).strftime("%H:%M UTC")
    print(f"[{name}] start, load {before}", flush=True)
    result = measure()
    result.update(
        at=at,
        load_before=before,
        load_after=load_average(),
        minutes=round((time.monotonic() - start) / 60, 1),
    )
    print(f"[{name}] done in {result['minutes']} min, load {result['load_after']}", flush=True)
    return result


def measure_aa(bench: Bench, runs: int) -> dict:
    copy = doc_string_copy(BUNDLED, bench.work / "aa" / "resnet_tiny.copy.onnx")
    results = []
    for i in range(runs):
        run = bench.run(BUNDLED, copy, f"aa-{i}")
        print(f"  A/A {i + 1}/{runs}: {run.verdicts or run.error} ({run.wall_s:.1f} s)", flush=True)
        results.append(asdict(run))
    return {"model": str(BUNDLED.relative_to(REPO)), "runs": results}


def measure_power(bench: Bench, plan: Plan) -> dict:
    """Per gain and level: the calibrated chain pair, then ``power_runs`` default benches of it
    (both levels are timed, as by default; the verdict that counts is the sized level's)."""
    folder, rows = bench.work / "power", []
    for gain in GAINS:
        for level in POWER_LEVELS:
            if (gain, level) in plan.calibrated:
                known = plan.calibrated[gain, level]
                truth, tried = TrueRatio(**known["true"]), [TrueRatio(**t) for t in known["tried"]]
            else:
                truth, tried = calibrated_pair(
                    gain, level, lambda n, level=level: true_ratio(folder, n, level, plan.truth)
                )
            runs = []
            for i in range(plan.power_runs):
                run = bench.run(*chain_pair(folder, truth.layers), f"power-{gain:.2f}-{level}-{i}")
                print(
                    f"  gain {gain} ({level}) run {i + 1}: {run.verdicts or run.error}", flush=True
                )
                runs.append(asdict(run))
            rows.append(
                {"gain": gain, "level": level, "true": asdict(truth),
                 "tried": [asdict(t) for t in tried], "runs": runs}
            )  # fmt: skip
    return {"chain": asdict(ConvChain(0)), "truth": asdict(plan.truth), "rows": rows}


def measure_wall(bench: Bench, large_mb: float) -> dict:
    folder = bench.work / "wall"
    large = save(large_gemm_bn(large_mb), folder / "large.onnx")
    models = {"bundled resnet_tiny": BUNDLED, "light_resnet50": LIGHT_RESNET50, "large": large}
    rows = []
    for name, path in models.items():
        folded = fold(bench.bnfold, path, folder / f"{path.stem}.folded.onnx")
        run = bench.run(path, folded, f"wall-{path.stem}")
        print(f"  {name}: {run.wall_s:.1f} s {run.verdicts or run.error}", flush=True)
        rows.append(
            {
                "name": name,
                "megabytes": round(path.stat().st_size / 1e6, 1),
                "goal_s": WALL_GOAL_S[name],
                "run": asdict(run),
            }
        )
    return {"rows": rows}


# --- Markdown --------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _load(part: dict) -> str:
    return (
        f"started {part['at']}, {part['minutes']} min; load average (1/5/15 min) "
        f"{part['load_before']} before, {part['load_after']} after"
    )


def render_aa(part: dict) -> list[str]:
    runs = part["runs"]
    counts: dict[str, Counter[str]] = {}
    pairs: dict[str, list[int]] = {}
    for run in runs:
        for setting, verdict in run["verdicts"].items():
            counts.setdefault(setting, Counter())[verdict] += 1
            timed = run.get("pairs", {}).get(setting)
            pairs.setdefault(setting, []).extend([timed] if timed else [])
    kinds = ("faster", "slower", "equivalent", "inconclusive")
    rows = [
        [
            s, *(c[k] for k in kinds), f"**{c['faster'] + c['slower']} / {sum(c.values())}**",
            f"{statistics.median(pairs[s]):g} ({min(pairs[s])}-{max(pairs[s])})" if pairs[s] else "-",
        ]
        for s, c in sorted(counts.items())
    ]  # fmt: skip
    wrong = sum(any(v in FALSE_VERDICTS for v in r["verdicts"].values()) for r in runs)
    failed = [r["error"] for r in runs if r["error"]]
    walls = [r["wall_s"] for r in runs]
    lines = [
        f"### A/A: false verdicts ({len(runs)} runs, goal at most 1 in 40)",
        "",
        f"`{part['model']}` against a copy with another `doc_string`; {_load(part)}.",
        "",
    ]
    lines += _table(["setting", *kinds, "false verdicts", "pairs: median (range)"], rows)
    lines += [
        "",
        f"Runs with a false verdict in any setting: **{wrong} / {len(runs)}**. "
        f"Wall time per run: median {statistics.median(walls):.1f} s, "
        f"max {max(walls):.1f} s.",
    ]
    if failed:
        lines.append(f"{len(failed)} run(s) gave no report: {failed[0]}")
    return lines


def _level_setting(verdicts: dict[str, str], level: str) -> str | None:
    """The setting name of ``level`` among a run's (``cpu/all`` or ``cpu/all/batch 1``)."""
    return next((s for s in verdicts if s.split("/")[1] == level), None)


def render_power(part: dict) -> list[str]:
    chain, timing = part["chain"], part["truth"]
    lines = [
        "### Power: real gains",
        "",
        f"Candidate: n 3x3 Conv+Relu layers ({chain['channels']} channels, "
        f"{chain['hw']}x{chain['hw']}), original: n + {EXTRA_LAYERS} layers, n calibrated per "
        f"level until onnxruntime's own ratio is the gain (`calibrated_pair`; the lengths tried "
        f"in brackets). True ratio: by onnxruntime directly, the median over "
        f"{timing['pairs']} fresh session pairs ({timing['rounds']} interleaved rounds each) of "
        f"median(original)/median(candidate), with the median's 95 % interval. Only the verdict "
        f"at the level the pair was sized for counts. {_load(part)}.",
        "",
    ]
    rows = []
    for row in part["rows"]:
        truth, runs, level = row["true"], row["runs"], row["level"]
        settings = [_level_setting(r["verdicts"], level) for r in runs]
        verdicts = [
            r["verdicts"].get(s, "-") if s else "-" for r, s in zip(runs, settings, strict=True)
        ]
        speedups = [
            r["speedups"].get(s) if s else None for r, s in zip(runs, settings, strict=True)
        ]
        tried = ", ".join(f"{t['layers']}: {t['ratio']:.3f}" for t in row["tried"])
        goal = math.ceil(POWER_GOAL[row["gain"]] * len(runs))
        rows.append(
            [
                f"{(row['gain'] - 1) * 100:.0f} %", level,
                f"{truth['layers'] + EXTRA_LAYERS} vs {truth['layers']} ({tried})",
                f"{truth['ratio']:.3f} [{truth['low']:.3f}, {truth['high']:.3f}]",
                ", ".join(verdicts), ", ".join(f"{s:.3f}" if s else "-" for s in speedups),
                f"**{verdicts.count('faster')} / {len(runs)}** (goal {goal})",
            ]
        )  # fmt: skip
    header = ["gain", "level", "layers (tried: ratio)", "true ratio [95 %]", "bench verdicts",
              "bench speedups", "faster"]  # fmt: skip
    return lines + _table(header, rows)


def _verdict_text(run: dict, setting: str) -> str:
    """``all: equivalent (12 pairs, stopped by decided)``; what the report says of its stop."""
    level, verdict = setting.split("/")[1], run["verdicts"][setting]
    said = [f"{run[key][setting]}{unit}" for key, unit in (("pairs", " pairs"), ("stopped_by", ""))
            if run.get(key, {}).get(setting)]  # fmt: skip
    return f"{level}: {verdict}" + (f" ({', stopped by '.join(said)})" if said else "")


def render_wall(part: dict) -> list[str]:
    rows = []
    for row in part["rows"]:
        run = row["run"]
        verdicts = ", ".join(_verdict_text(run, s) for s in run["verdicts"])
        wall = f"{run['wall_s']:.1f}" if run["exit_code"] is not None else f"> {run['wall_s']:.0f}"
        met = not run["error"] and run["wall_s"] <= row["goal_s"]
        reported = run["reported_s"]
        rows.append(
            [
                row["name"],
                f"{row['megabytes']:g} MB",
                f"**{wall}**",
                f"{reported:.1f}" if reported is not None else "-",
                verdicts or run["error"],
                f"<= {row['goal_s']:g} s: {'met' if met else 'MISSED'}",
            ]
        )
    lines = [
        "### Wall time of a default bench (model against its fold)",
        "",
        f"Seconds by the clock around the process; the report's own `duration_s` beside it. "
        f"{_load(part)}.",
        "",
    ]
    return lines + _table(["model", "file", "wall s", "report s", "verdicts", "goal"], rows)


RENDERERS = {"aa": render_aa, "power": render_power, "wall": render_wall}


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"<!-- section {results['label']} -->",
        f"## {results['label']}: {m['date']}, bnfold {results['bnfold']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, nproc {m['nproc']}; onnxruntime "
        f"{m['onnxruntime']}, Python {m['python']}. Shared with other engineers' test runs "
        f"(the load averages below). Bench options: "
        f"{' '.join(results['bench_args']) or 'the defaults'}.",
    ]
    for name, render_part in RENDERERS.items():
        if name in results:
            lines += ["", *render_part(results[name])]
    return "\n".join(lines) + f"\n<!-- end {results['label']} -->\n"


def write_section(out: Path, label: str, section: str) -> None:
    """Replace section ``label`` of ``out`` (or append it), keeping everything else."""
    text = out.read_text() if out.exists() else "# bench decisions\n"
    start, end = f"<!-- section {label} -->", f"<!-- end {label} -->\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text)


# --- main ------------------------------------------------------------------------------------


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="section name in --out (before/after)")
    parser.add_argument("--parts", default="aa,power,wall", help="comma list of aa, power, wall")
    parser.add_argument("--aa-runs", type=_at_least_one, default=40)
    parser.add_argument("--power-runs", type=_at_least_one, default=5)
    parser.add_argument(
        "--true-pairs", type=_at_least_one, default=20, help="pairs of the true ratio"
    )
    parser.add_argument("--true-rounds", type=_at_least_one, default=100, help="rounds per pair")
    parser.add_argument(
        "--calibrated-from",
        type=Path,
        help="reuse the calibrated chains of an earlier run's JSON (WORK/LABEL.json)",
    )
    parser.add_argument("--large-mb", type=float, default=472.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per bench")
    parser.add_argument("--bench-args", default="", help="extra bench options, one string")
    parser.add_argument("--rev", help="time bnfold as committed at REV (default: working tree)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bnfold_bench_decisions"))
    parser.add_argument("--out", type=Path, default=HERE / "bench_decisions.md")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(RENDERERS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: use {', '.join(RENDERERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(
        tuple(args.parts.split(",")),
        args.aa_runs,
        args.power_runs,
        TrueTiming(args.true_pairs, args.true_rounds),
        args.large_mb,
        calibrated_rows(args.calibrated_from) if args.calibrated_from else {},
    )
    bnfold, version = cli_at(args.rev, args.work)
    bench = Bench(bnfold, tuple(shlex.split(args.bench_args)), args.timeout, args.work)
    saved = args.work / f"{args.label}.json"
    # a run of some parts keeps the label's other parts
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results.update(
        label=args.label, machine=machine(), bnfold=version, bench_args=list(bench.extra)
    )
    measures = {
        "aa": lambda: measure_aa(bench, plan.aa_runs),
        "power": lambda: measure_power(bench, plan),
        "wall": lambda: measure_wall(bench, plan.large_mb),
    }
    for part in plan.parts:
        results[part] = _logged(part, measures[part])
    args.work.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=1))
    write_section(args.out, args.label, render(results))
    print(f"wrote {args.out} (section {args.label}) and {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

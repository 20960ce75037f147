"""benchmarks/bench_decisions.py: its pieces on made-up reports, and one tiny end-to-end run.

The harness measures whether ``bnfold bench`` decides right and fast; here only that it reads
reports, counts verdicts, builds its models and writes its tables. No timing is asserted: the
end-to-end run benches for a moment only.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_decisions.py"
# the smallest bench bnfold accepts: the harness is checked, not the speed
TINY_BENCH = "--pairs 2 --iters 3 --warmup 1"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_decisions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bd = _harness()


def _comparison(level: str, verdict: str, batch: int | None = 1) -> dict:
    return {
        **{"provider": "cpu", "level": level, "batch": batch, "verdict": verdict},
        **{"speedup": 1.01, "pairs": 6, "stopped_by": "decided"},
    }


def test_a_report_gives_one_verdict_per_setting() -> None:
    report = {
        "settings": {"duration_s": 7.5},
        "comparisons": [_comparison("disable", "faster"), _comparison("all", "equivalent", None)],
    }
    run = bd.parse_report(report, wall_s=9.0, exit_code=0)
    assert run.verdicts == {"cpu/disable/batch 1": "faster", "cpu/all": "equivalent"}
    assert (run.wall_s, run.reported_s, run.error) == (9.0, 7.5, "")
    assert (
        bd._verdict_text(bd.asdict(run), "cpu/all")
        == "all: equivalent (6 pairs, stopped by decided)"
    )


def test_aa_counts_false_verdicts_per_setting_and_per_run() -> None:
    runs = [
        bd.parse_report({"comparisons": [_comparison("all", v), _comparison("disable", w)]}, 1, 0)
        for v, w in [("slower", "equivalent"), ("equivalent", "inconclusive")]
    ]
    part = {"model": "m.onnx", "runs": [bd.asdict(r) for r in runs]}
    part.update(at="11:00 UTC", minutes=0.1, load_before="1", load_after="2")
    lines = bd.render_aa(part)
    # setting | faster | slower | equivalent | inconclusive | false verdicts | pairs
    assert "| cpu/all/batch 1 | 0 | 1 | 1 | 0 | **1 / 2** | 6 (6-6) |" in lines
    assert "| cpu/disable/batch 1 | 0 | 0 | 1 | 1 | **0 / 2** | 6 (6-6) |" in lines
    assert any("any setting: **1 / 2**" in line for line in lines)


def test_a_wall_row_is_missed_when_the_bench_failed_or_was_stopped() -> None:
    def row(run: object) -> dict:
        return {"name": "m", "megabytes": 1.0, "goal_s": 10.0, "run": bd.asdict(run)}

    part = {"rows": [row(bd.BenchRun(2.0, 0)), row(bd.BenchRun(2.0, 3, error="bad model"))]}
    part["rows"].append(row(bd.BenchRun(30.0, None, error="stopped at 30 s")))
    part.update(at="11:00 UTC", minutes=0.1, load_before="1", load_after="2")
    goals = [line.rsplit("|", 2)[1].strip() for line in bd.render_wall(part) if "| m |" in line]
    assert goals == ["<= 10 s: met", "<= 10 s: MISSED", "<= 10 s: MISSED"]


def test_a_section_replaces_only_its_own_label(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    out.write_text("# title\n\nintro kept\n")
    for label, body in [("before", "old"), ("after", "A"), ("before", "new")]:
        bd.write_section(out, label, f"<!-- section {label} -->\n{body}\n<!-- end {label} -->\n")
    text = out.read_text()
    assert text.startswith("# title\n\nintro kept\n")
    assert "new" in text and "old" not in text and text.count("<!-- section before -->") == 1
    assert text.index("new") < text.index("\nA\n")  # replaced in place, not appended


def test_the_aa_copy_differs_only_in_its_doc_string(tmp_path: Path) -> None:
    copy = bd.doc_string_copy(bd.BUNDLED, tmp_path / "copy.onnx")
    original, twin = onnx.load(bd.BUNDLED), onnx.load(copy)
    assert copy.read_bytes() != bd.BUNDLED.read_bytes()
    assert original.doc_string != twin.doc_string
    twin.doc_string = original.doc_string
    assert twin.SerializeToString() == original.SerializeToString()


def test_the_large_model_weighs_what_was_asked() -> None:
    assert bd.gemm_width(472, 8) == 3840  # 8 * 3840**2 * 4 bytes = 471.9 MB
    model = bd.large_gemm_bn(1.0, layers=2)
    onnx.checker.check_model(model, full_check=True)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name[0] == "w"]
    assert sum(w.nbytes for w in weights) == 2 * bd.gemm_width(1.0, 2) ** 2 * 4
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 2


def test_a_longer_chain_only_adds_layers() -> None:
    short, long = bd.ConvChain(3).model(), bd.ConvChain(5).model()
    assert [n.op_type for n in long.graph.node].count("Conv") == 5
    # the same weights for the shared layers: the extra work is only the extra layers
    for a, b in zip(short.graph.initializer, long.graph.initializer, strict=False):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_the_median_interval_is_the_binomial_order_statistics() -> None:
    # n = 20: P(Binomial(20, 1/2) <= 5) = 0.021 <= 0.025 < P(<= 6): the 6th and 15th values
    assert bd.median_interval([float(v) for v in range(20, 0, -1)]) == (6.0, 15.0)
    # below 6 values no rank qualifies: the whole range, never an empty interval
    assert bd.median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)


def _linear_chain(overhead_layers: float) -> tuple[list[int], bd.Callable]:
    """A fake onnxruntime: n layers take n + overhead, so 2 more run (n + 2 + c) / (n + c)."""
    asked: list[int] = []

    def measure(layers: int) -> bd.TrueRatio:
        asked.append(layers)
        ratio = (layers + 2 + overhead_layers) / (layers + overhead_layers)
        return bd.TrueRatio("disable", layers, ratio, ratio, ratio, [ratio])

    return asked, measure


def test_calibration_finds_the_chain_whose_two_extra_layers_cost_the_gain() -> None:
    asked, measure = _linear_chain(overhead_layers=17)  # 42 vs 40 layers: only 3.5 %
    truth, tried = bd.calibrated_pair(1.05, "disable", measure)
    assert asked == [40, 23]  # 2 / 0.05 - 17: exact after one step on a linear cost
    assert truth.layers == 23 and truth.ratio == pytest.approx(1.05)
    assert [t.layers for t in tried] == asked


def test_calibration_moves_at_most_a_halving_a_step_and_keeps_the_closest() -> None:
    ratios = {20: 1.04, 10: 1.06, 5: 1.07}  # no length gives 1.10: a large overhead
    asked: list[int] = []

    def measure(layers: int) -> bd.TrueRatio:
        asked.append(layers)
        r = ratios[layers]
        return bd.TrueRatio("all", layers, r, r, r, [r])

    truth, _ = bd.calibrated_pair(1.10, "all", measure)
    # 1.04 at 20 asks for 20 - 30 layers: a halving, the most one step moves
    assert asked == [20, 10, 5]  # then CALIBRATION_STEPS ends the search
    assert truth.layers == 5  # 1.07 is the closest to 1.10
    assert bd.next_layers(1.05, 40, ratio=0.99) == 20  # no visible gain: halve


def test_a_calibrated_run_can_be_reused(tmp_path: Path) -> None:
    true = {"level": "all", "layers": 18, "ratio": 1.1, "low": 1.08, "high": 1.12,
            "pair_ratios": [1.1]}  # fmt: skip
    row = {"gain": 1.1, "level": "all", "true": true, "tried": [true], "runs": []}
    saved = tmp_path / "after.json"
    saved.write_text(json.dumps({"power": {"rows": [row]}}))
    assert bd.calibrated_rows(saved)[1.1, "all"]["true"]["layers"] == 18
    saved.write_text(json.dumps({"aa": {}}))
    with pytest.raises(SystemExit, match="no calibrated power part"):
        bd.calibrated_rows(saved)


def test_the_launcher_runs_bnfold_from_the_given_tree_not_the_installed_one(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "src" / "bnfold"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys\nprint('fake', sys.argv[1:])\n")
    command = [sys.executable, "-c", bd.LAUNCHER, str(fake.parent), "bench", "x"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "fake ['bench', 'x']"


@pytest.mark.slow
def test_a_tiny_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "decisions.md"
    command = [
        sys.executable, str(SCRIPT), "--label", "smoke", "--work", str(tmp_path),
        "--out", str(out), "--aa-runs", "1", "--power-runs", "1", "--true-pairs", "2",
        "--true-rounds", "3", "--large-mb", "0.5", "--bench-args", TINY_BENCH,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    runs = [*results["aa"]["runs"], *(r for g in results["power"]["rows"] for r in g["runs"])]
    runs += [row["run"] for row in results["wall"]["rows"]]
    assert [r["error"] for r in runs] == [""] * 8  # 1 A/A, 2 gains x 2 levels, 3 wall
    verdicts = {v for r in runs for v in r["verdicts"].values()}
    assert all(r["verdicts"] for r in runs)
    assert verdicts <= {"faster", "slower", "equivalent", "inconclusive"}
    text = out.read_text()
    for heading in ("### A/A", "### Power", "### Wall time"):
        assert heading in text
    assert text.count("| bundled resnet_tiny |") == 1

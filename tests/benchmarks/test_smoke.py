"""benchmarks/ end to end on a tiny model, so the scripts run by hand cannot rot unnoticed.

Each script runs as a subprocess, as ``run.sh`` would run it, at its smallest settings and with
every output in a temporary folder: ``run.py`` on ``tiny-8x2`` (two Conv+BN+Relu blocks, 8
channels; it is run only when named) drives ``make_models.py``, ``child.py`` (each tool,
``bnfold verify``, ``bnfold bench``), ``profile_bnfold.py`` and ``report.py``;
``fold_shapes.py --quick --smoke`` benches for a moment only; ``qdq_fold.py`` on two 8-channel
QDQ layers. The numbers mean nothing: only
that every step finishes and writes its results.

The other tools (the ``bench`` extra: onnxscript, onnxoptimizer, onnxslim) are each skipped
when not installed; bnfold's own path always runs (without psutil, ``run.py`` polls memory
from /proc).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
MODEL = "tiny-8x2"
# tool -> the module run.py needs for it
OTHER_TOOLS = {
    "onnxscript-rules": "onnxscript",
    "onnxoptimizer": "onnxoptimizer",
    "onnxslim": "onnxslim",
}


def _script(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCHMARKS / name), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, (
        f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def _run(work: Path, tools: str, *extra: str) -> tuple[dict, str]:
    """``run.py`` on the tiny model; its results.json entry and the Markdown it wrote."""
    doc = work / "benchmarks.md"
    _script(
        "run.py",
        *("--work", work, "--models", MODEL, "--tools", tools, "--doc", doc),
        *("--timeout", "120", "--mem-limit-gb", "4", *extra),
    )
    results = json.loads((work / "results.json").read_text())
    return results, doc.read_text()


@pytest.mark.slow
def test_run_folds_verifies_benches_profiles_and_reports_bnfold(tmp_path: Path) -> None:
    results, doc = _run(tmp_path, "onnx-io,bnfold")
    entry = results["models"][MODEL]
    assert entry["ops_in"]["BatchNormalization"] == 2
    for tool in ("onnx-io", "bnfold"):
        row = entry["tools"][tool]
        assert row["ok"], row.get("error")
        assert row["verify"]["status"] == "pass", row["verify"]["detail"]
    assert "BatchNormalization" not in entry["tools"]["bnfold"]["ops_out"]
    assert entry["bench"]["ok"], entry["bench"].get("error")
    assert [p["phase"] for p in entry["profile"]["phases"]] == ["load", "fold", "save"]
    assert (tmp_path / f"profile-{MODEL}.txt").read_text().startswith("== by cumulative time ==")
    assert f"### {MODEL}" in doc and "| **bnfold** (`optimize` + `save`) |" in doc
    assert "## Overhead of `bnfold verify` and `bnfold bench`" in doc
    # report.py re-renders the same document from results.json alone
    _script("report.py", tmp_path / "results.json", tmp_path / "again.md")
    assert (tmp_path / "again.md").read_text() == doc


@pytest.mark.slow
@pytest.mark.parametrize("tool", OTHER_TOOLS)
def test_run_another_tool(tmp_path: Path, tool: str) -> None:
    module = OTHER_TOOLS[tool]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[bench]')")
    results, doc = _run(tmp_path, tool, "--no-profile")
    row = results["models"][MODEL]["tools"][tool]
    assert row["ok"], row.get("error")
    # a verdict on the tool's output, whichever: "error" would mean the verify step broke
    assert row["verify"]["status"] != "error", row["verify"]["detail"]
    assert f"### {MODEL}" in doc


def test_make_models_writes_the_named_model(tmp_path: Path) -> None:
    done = _script("make_models.py", "--work", tmp_path, MODEL)
    path = Path(done.stdout.splitlines()[-1])  # after a "made ..." line
    assert path == tmp_path / "models" / f"{MODEL}.onnx"
    onnx.checker.check_model(onnx.load(path))


@pytest.mark.slow
def test_fold_shapes_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "fold_shapes.md"
    _script("fold_shapes.py", "--quick", "--smoke", "--work", tmp_path, "--out", out)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {row["shape"] for row in rows} == {"relu-bn-padded-conv", "dense-relu-bn-5-heads"}
    table = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # the header and one line per variant


def test_qdq_fold_counts_the_quantized_kernels_and_times_both_models() -> None:
    done = _script("qdq_fold.py", "--layers", "2", "--channels", "8", "--size", "8", "--runs", "3")
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    table = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[2:]}
    assert table["original"][:2] == ["2", "0"]  # BatchNormalization, QLinearConv
    assert table["folded"][:2] == ["0", "2"]
    assert "speedup:" in done.stdout


def test_run_sh_parses() -> None:
    """run.sh makes a venv and installs packages: only its syntax is checked here."""
    subprocess.run(["bash", "-n", str(BENCHMARKS / "run.sh")], check=True)

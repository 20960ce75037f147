"""`bnfold optimize` and `bnfold check` as a user runs them (click's CliRunner and a real process)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from bnfold.cli import main
from tests.builders.conv_bn import conv_bn_model, conv_then
from tests.builders.graphs import assert_equivalent, batchnorm_count

ROOT = Path(__file__).parents[2]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "net.onnx"
    onnx.save(conv_bn_model(), path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_optimize_writes_default_output_beside_input_and_json_report(
    model_path: Path, tmp_path: Path
) -> None:
    before = _digest(model_path)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--report", str(report)])
    assert result.exit_code == 0, result.output
    output = tmp_path / "net.folded.onnx"
    assert output.exists() and _digest(model_path) == before
    data = json.loads(report.read_text())
    assert data["folds"] == [
        {
            "bn": "bn",
            "into": "conv",
            "pattern": "conv-bn",
            "direction": "producer",
            "through": [],
            "dtype": "float32",
            "rounding_error": data["folds"][0]["rounding_error"],
            "kind": "BatchNormalization",
            "edits": [
                "set conv input 1 to a constant [6, 4, 3, 3] float32",
                "set conv input 2 to a constant [6] float32",
                "remove bn",
                "let conv output 0 be z",
            ],
        }
    ]
    assert data["skipped"] == []
    assert data["counts"] == {
        "batchnorm_before": 1,
        "nodes_before": 2,
        "batchnorm_after": 0,
        "nodes_after": 1,
        "noop_casts_removed": 0,
    }
    assert "conv-bn" in result.output and "wrote" in result.output
    folded = onnx.load(output)
    assert batchnorm_count(folded) == 0
    assert_equivalent(onnx.load(model_path), folded)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "net.folded.onnx",
        "net.onnx",
        "report.json",
    ]


def test_dry_run_writes_nothing(model_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--dry-run"])
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_output_equal_to_input_needs_in_place(model_path: Path) -> None:
    before = _digest(model_path)
    result = CliRunner().invoke(main, ["optimize", str(model_path), "-o", str(model_path)])
    assert result.exit_code == 2
    assert "--in-place" in result.output and _digest(model_path) == before
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--in-place", "-q"])
    assert result.exit_code == 0
    assert batchnorm_count(onnx.load(model_path)) == 0


def test_unreadable_model_is_exit_3_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a model" * 3)
    result = CliRunner().invoke(main, ["optimize", str(bad)])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_check_exits_1_while_foldable_bn_remains_and_0_after(
    model_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(model_path)])
    assert result.exit_code == 1 and "can be folded" in result.output
    runner.invoke(main, ["optimize", str(model_path), "-q"])
    result = runner.invoke(main, ["check", str(tmp_path / "net.folded.onnx")])
    assert result.exit_code == 0, result.output


def test_check_lists_unfoldable_bn_without_failing(tmp_path: Path) -> None:
    path = tmp_path / "shared.onnx"
    onnx.save(conv_then(outputs=("z", "y")), path)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "producer-output-is-graph-output" in result.output


@pytest.mark.slow
def test_real_process_and_module_entry_points(model_path: Path, tmp_path: Path) -> None:
    for command in ([sys.executable, str(ROOT / "cli.py")], [sys.executable, "-m", "bnfold"]):
        done = subprocess.run(
            [*command, "check", str(model_path)], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "optimize", str(tmp_path / "missing.onnx")],
        capture_output=True,
        text=True,
    )
    assert (
        done.returncode == 3
        and done.stderr.startswith("error: ")
        and "Traceback" not in done.stderr
    )


def test_progress_reaches_the_callback_and_stays_off_without_a_terminal(model_path: Path) -> None:
    import bnfold
    from bnfold.commands.common import progress_status

    counts: list[int] = []
    bnfold.optimize(model_path, progress=counts.append)
    assert sum(counts) == 1
    with progress_status(False) as status:  # CliRunner and CI logs: not a terminal
        status("no spinner")
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--dry-run"])
    assert "folding" not in result.output and "⠋" not in result.output


def test_optimize_verify_checks_the_written_file_before_it_lands(
    model_path: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--verify"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and (tmp_path / "net.folded.onnx").exists()


def _corrupt_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every BN folds with a scale 0.1% off: a wrong fold verify must catch."""
    import bnfold.engine.batchnorm as batchnorm
    from bnfold.engine.foldmath import Affine, bn_to_affine

    def wrong(*args: object, **kwargs: object) -> Affine:
        exact = bn_to_affine(*args, **kwargs)  # type: ignore[arg-type]
        return Affine(exact.scale * 1.001, exact.shift)

    monkeypatch.setattr(batchnorm, "bn_to_affine", wrong)


def test_optimize_verify_writes_nothing_when_the_fold_is_wrong(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _corrupt_folds(monkeypatch)
    report = tmp_path / "fold.json"
    result = CliRunner().invoke(
        main, ["optimize", str(model_path), "--verify", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert "nothing was written" in result.output and "FAILED" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".npz")) == [
        "fold.json",
        "net.onnx",
    ]


def test_optimize_verify_force_writes_and_still_exits_1(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _corrupt_folds(monkeypatch)
    result = CliRunner().invoke(main, ["optimize", str(model_path), "--verify", "--force"])
    assert result.exit_code == 1, result.output
    assert (tmp_path / "net.folded.onnx").exists() and "written anyway" in result.output
    dry = CliRunner().invoke(
        main, ["optimize", str(model_path), "--verify", "--dry-run", "-o", str(tmp_path / "x.onnx")]
    )
    assert dry.exit_code == 1 and not (tmp_path / "x.onnx").exists()

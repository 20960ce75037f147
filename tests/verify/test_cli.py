"""`bnfold verify` on the command line: exit codes, reports, GitHub step summary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from click.testing import CliRunner

from bnfold.cli import main
from tests.builders.verify_models import CLI, REPO_ROOT, ConvBN, save, with_changes

pytestmark = pytest.mark.usefixtures("cpu_only_default")


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", *map(str, args)], env=env)
    return result.exit_code, result.output


def test_pass_exit_0_with_table(conv_bn_files: dict[str, Path]) -> None:
    code, output = run(conv_bn_files["original"], conv_bn_files["folded"], "--providers", "cpu")
    assert code == 0, output
    assert "cpu/all" in output and "passed" in output and "PASSED" in output


def test_mismatch_exit_1_names_output_and_rerun(conv_bn_files: dict[str, Path]) -> None:
    code, output = run(conv_bn_files["original"], conv_bn_files["corrupted"], "--runs", "2")
    assert code == 1, output
    assert "error: candidate differs from the original: cpu/all: outputs 'y'" in output
    saved = conv_bn_files["corrupted"].with_name("corrupted.failing-inputs.npz")
    assert saved.is_file()
    assert (
        f"rerun: bnfold verify {conv_bn_files['original']} {conv_bn_files['corrupted']} --inputs {saved}"
        in output
    )
    # the printed rerun reproduces the failure
    code, _ = run(conv_bn_files["original"], conv_bn_files["corrupted"], "--inputs", saved)
    assert code == 1


def test_save_failing_folder(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    folder = tmp_path / "failures"
    code, output = run(
        conv_bn_files["original"], conv_bn_files["corrupted"], "--save-failing", folder
    )
    assert code == 1 and (folder / "corrupted.failing-inputs.npz").is_file()
    assert str(folder / "corrupted.failing-inputs.npz") in output


@pytest.mark.parametrize(
    "options",
    [
        ["--providers", "warp"],
        ["--level", "fastest"],
        ["--shape", "x=1xbad"],
        ["--shape", "nope=1x3x8x8"],
        ["--dim", "batch=2"],
        ["--range", "x=1"],
        ["--runs", "0"],
        ["--atol", "-1"],
        ["--inputs", "does-not-exist.npz"],
    ],
)
def test_usage_errors_exit_2(conv_bn_files: dict[str, Path], options: list[str]) -> None:
    code, output = run(conv_bn_files["original"], conv_bn_files["folded"], *options)
    assert code == 2, output


def test_missing_model_exit_3(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    code, output = run(conv_bn_files["original"], tmp_path / "nope.onnx")
    assert code == 3 and "candidate file not found" in output


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"rename_output": "logits"}, "missing 'y'; new 'logits'"),
        ({"opset": 18}, "ai.onnx: 17 -> 18"),
    ],
)
def test_structure_difference_exit_3(
    tmp_path: Path, conv_bn: ConvBN, conv_bn_files: dict[str, Path], change: dict, text: str
) -> None:
    candidate = save(with_changes(conv_bn.folded(), **change), tmp_path / "changed.onnx")
    code, output = run(conv_bn_files["original"], candidate)
    assert code == 3, output
    assert text in output and output.count("\n") == 1  # one line, no traceback


def test_requested_but_unavailable_provider_exit_4(
    conv_bn_files: dict[str, Path], fake_cuda_fallback: list
) -> None:
    code, output = run(conv_bn_files["original"], conv_bn_files["folded"], "--providers", "cuda")
    assert code == 4, output
    assert "unavailable" in output and "instead of CUDAExecutionProvider" in output


def test_json_report_schema(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    path = tmp_path / "report.json"
    code, _ = run(
        conv_bn_files["original"],
        conv_bn_files["corrupted"],
        "--report",
        path,
        "--level",
        "disable,all",
        "--seed",
        "7",
        "--runs",
        "2",
    )
    assert code == 1
    data = json.loads(path.read_text())
    assert data["passed"] is False and data["exit_code"] == 1
    for key in (
        "providers",
        "seeds",
        "inputs",
        "tolerances",
        "onnxruntime_version",
        "bnfold_version",
        "reference",
        "notes",
        "failing_inputs",
        "rerun_command",
    ):
        assert key in data, key
    assert data["seeds"] == [7, 8]
    assert data["reference"] == {
        "provider": "cpu",
        "level": "disable",
        "graph_optimization_level": "ORT_DISABLE_ALL",
    }
    assert data["onnxruntime_version"] == onnxruntime.__version__
    assert data["inputs"][0]["shape"] == [1, 3, 8, 8] and data["inputs"][0]["dtype"] == "float32"
    assert data["tolerances"]["defaults"]["float32"] == {"atol": 1e-4, "rtol": 1e-4}
    assert [(p["provider"], p["level"], p["status"]) for p in data["providers"]] == [
        ("cpu", "disable", "failed"),
        ("cpu", "all", "failed"),
    ]
    metrics = data["providers"][0]["outputs"]["y"]
    for key in (
        "max_abs_error",
        "max_rel_error",
        "p99_abs_error",
        "cosine_similarity",
        "mismatched",
        "total",
    ):
        assert key in metrics, key
    assert metrics["total"] == 2 * 256 and 0 < metrics["mismatched"] <= metrics["total"]
    assert data["providers"][0]["reason"]


def test_markdown_and_github_step_summary(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    markdown = tmp_path / "report.md"
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    code, _ = run(
        conv_bn_files["original"], conv_bn_files["folded"], "--markdown", markdown, env=env
    )
    assert code == 0
    text = markdown.read_text()
    assert text.startswith("### bnfold verify: ✅ equivalent")
    assert "| cpu/all | passed | y |" in text and "ORT_DISABLE_ALL" in text
    code, _ = run(conv_bn_files["original"], conv_bn_files["corrupted"], env=env)
    assert code == 1
    appended = summary.read_text()
    assert appended.startswith("# earlier step\n")  # appended, not overwritten
    assert "✅ equivalent" in appended and "❌ outputs differ" in appended
    assert "y ✗" in appended and "Rerun:" in appended


def test_inputs_npz_round_trip(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32))
    report = tmp_path / "r.json"
    code, output = run(
        conv_bn_files["original"], conv_bn_files["folded"], "--inputs", path, "--report", report
    )
    assert code == 0, output
    data = json.loads(report.read_text())
    assert data["input_files"] == [str(path)] and data["inputs"][0]["shape"] == [4, 3, 8, 8]


def test_report_unwritable_exit_6(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    code, output = run(
        conv_bn_files["original"],
        conv_bn_files["folded"],
        "--report",
        tmp_path / "no" / "dir" / "r.json",
    )
    assert code == 6 and ("cannot write" in output or "folder does not exist" in output)


def test_quiet_prints_one_line(conv_bn_files: dict[str, Path]) -> None:
    code, output = run(conv_bn_files["original"], conv_bn_files["folded"], "-q")
    assert code == 0 and output.strip().count("\n") == 0 and "matches" in output


@pytest.mark.slow
def test_real_subprocess_exit_codes(tmp_path: Path, conv_bn_files: dict[str, Path]) -> None:
    """The installed-style entry point (``python cli.py``), not CliRunner: real exit statuses."""

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [*CLI, "verify", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)

    original, folded, corrupted = (
        conv_bn_files["original"],
        conv_bn_files["folded"],
        conv_bn_files["corrupted"],
    )
    assert cli(original, folded, "--providers", "cpu").returncode == 0
    failed = cli(original, corrupted, "--providers", "cpu")
    assert failed.returncode == 1 and "outputs 'y'" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert cli(original, folded, "--providers", "nope").returncode == 2
    assert cli(original, tmp_path / "missing.onnx").returncode == 3
    if "CoreMLExecutionProvider" not in onnxruntime.get_available_providers():
        unavailable = cli(original, folded, "--providers", "cpu,coreml")
        assert unavailable.returncode == 4 and "CoreMLExecutionProvider" in unavailable.stderr

"""A reader that stops early (``bnfold … | head``) costs no file and no exit code.

Each command with report options runs in a real subprocess whose stdout is a pipe; the test
closes the read end (before anything is printed, or after one line) and asserts that every file
asked for exists and is complete, that the exit code is the command's own result, and that
stderr has no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.cli.test_check_cli import mixed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pipe")
    original = folder / "m.onnx"
    onnx.save(mixed(), original)
    folded = folder / "f.onnx"
    done = _bnfold("optimize", str(original), "-o", str(folded), "-q")
    assert done.returncode == 0, done.stderr
    return original, folded


def _bnfold(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bnfold", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def _piped(args: list[str], lines_read: int, env_summary: Path) -> tuple[int, str]:
    """Run bnfold with stdout into a pipe closed after ``lines_read`` lines; (exit code, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bnfold", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**_environment(), "GITHUB_STEP_SUMMARY": str(env_summary)},
    )
    assert process.stdout is not None and process.stderr is not None
    for _ in range(lines_read):
        process.stdout.readline()
    process.stdout.close()  # the reader goes away, as `head` does
    stderr = process.stderr.read().decode()
    return process.wait(timeout=300), stderr


def _environment() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "GITHUB_STEP_SUMMARY"}


def _assert_reports(folder: Path, stem: str, summary: Path) -> None:
    assert json.loads((folder / f"{stem}.json").read_text())
    markdown = (folder / f"{stem}.md").read_text()
    assert markdown.strip()
    assert summary.read_text().strip() == markdown.strip()


def _assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert "Broken pipe" not in stderr and "BrokenPipeError" not in stderr


@pytest.mark.parametrize("lines_read", [0, 1])
def test_optimize_into_a_closed_pipe(
    models: tuple[Path, Path], tmp_path: Path, lines_read: int
) -> None:
    original, _ = models
    out = tmp_path / "out.onnx"
    args = ["optimize", str(original), "-o", str(out)]
    args += ["--report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    code, stderr = _piped(args, lines_read, tmp_path / "summary.md")
    assert code == 0, stderr
    _assert_quiet(stderr)
    onnx.checker.check_model(onnx.load(out))
    _assert_reports(tmp_path, "r", tmp_path / "summary.md")


@pytest.mark.parametrize("lines_read", [0, 1])
def test_verify_into_a_closed_pipe(
    models: tuple[Path, Path], tmp_path: Path, lines_read: int
) -> None:
    original, folded = models
    args = ["verify", str(original), str(folded), "--runs", "1"]
    args += ["--report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    code, stderr = _piped(args, lines_read, tmp_path / "summary.md")
    assert code == 0, stderr
    _assert_quiet(stderr)
    _assert_reports(tmp_path, "r", tmp_path / "summary.md")
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True


@pytest.mark.parametrize("lines_read", [0, 1])
def test_check_into_a_closed_pipe_keeps_its_exit_code(
    models: tuple[Path, Path], tmp_path: Path, lines_read: int
) -> None:
    original, _ = models
    args = ["check", str(original)]
    args += ["--report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    code, stderr = _piped(args, lines_read, tmp_path / "summary.md")
    assert code == 1, stderr  # foldable BatchNormalization remains: check's own result
    _assert_quiet(stderr)
    assert stderr.startswith("error: ")
    _assert_reports(tmp_path, "r", tmp_path / "summary.md")


@pytest.mark.parametrize("lines_read", [0, 1])
def test_bench_into_a_closed_pipe(
    models: tuple[Path, Path], tmp_path: Path, lines_read: int
) -> None:
    pytest.importorskip("matplotlib")
    original, folded = models
    args = ["bench", str(original), str(folded), "--pairs", "2", "--iters", "2", "--warmup", "0"]
    args += ["--report", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")]
    args += ["--plot", str(tmp_path / "b.png")]
    code, stderr = _piped(args, lines_read, tmp_path / "summary.md")
    assert code == 0, stderr
    _assert_quiet(stderr)
    _assert_reports(tmp_path, "b", tmp_path / "summary.md")
    assert (tmp_path / "b.png").read_bytes().startswith(b"\x89PNG")

"""Report files (``--report``, ``--markdown``) never overwrite a model and fail cleanly.

``bnfold optimize`` and ``bnfold check`` check report paths before folding (exit 2 when one
is a model file, exit 6 when its folder is missing) and write them atomically.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from bnfold.cli import main
from tests.builders import broken as models
from tests.builders.files import snapshot


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(models.conv_bn(), path)
    return path


@pytest.mark.parametrize("option", ["--report", "--markdown"])
def test_optimize_report_on_the_input_is_refused(
    option: str, model_path: Path, tmp_path: Path
) -> None:
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["optimize", str(model_path), option, str(model_path)])
    assert result.exit_code == 2, result.output
    assert f"the {option} file would overwrite the input model" in result.stderr
    assert snapshot(tmp_path) == before


def test_optimize_report_written_atomically_beside_the_output(
    model_path: Path, tmp_path: Path
) -> None:
    args = ["optimize", str(model_path), "--report", str(tmp_path / "r.json"), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model.folded.onnx", "model.onnx", "r.json"]


def test_check_report_on_the_input_is_refused(model_path: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["check", str(model_path), "--report", str(model_path)])
    assert result.exit_code == 2, result.output
    assert snapshot(tmp_path) == before


def test_check_report_folder_missing_is_exit_6(model_path: Path, tmp_path: Path) -> None:
    report = tmp_path / "missing" / "r.json"
    result = CliRunner().invoke(main, ["check", str(model_path), "--report", str(report)])
    assert result.exit_code == 6, result.output

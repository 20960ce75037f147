"""Each command's --help ends with examples that parse, and verify's CANDIDATE defaults to
what `bnfold optimize ORIGINAL` writes."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import bnfold
from bnfold.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "resnet_tiny.onnx"


@pytest.mark.parametrize("name", ["optimize", "verify", "check", "bench"])
def test_help_ends_with_examples_that_parse(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    examples = result.output.split("Examples:\n", 1)[1].splitlines()
    commands = [line.split("#")[0].strip() for line in examples if line.strip()]
    assert len(commands) >= 2
    for line in commands:
        words = shlex.split(line)
        assert words[:2] == ["bnfold", name], line
        main.commands[name].make_context(name, words[2:])  # raises on an unknown option


def test_verify_defaults_its_candidate_to_the_optimize_output(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(MODEL, model)
    missing = CliRunner().invoke(main, ["verify", str(model)])
    assert missing.exit_code == 2
    assert "model.folded.onnx" in missing.output and "bnfold optimize" in missing.output

    bnfold.optimize(model).save(tmp_path / "model.folded.onnx")
    result = CliRunner().invoke(main, ["verify", str(model), "--report", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    assert "model.folded.onnx" in (tmp_path / "v.json").read_text()

"""Small things a user meets (issue 27): a working ``--debug`` hint, "nothing to fold", file
sizes, ``--in-place`` that leaves an unchanged model alone, plain numbers, verify's header."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from bnfold.cli import main
from bnfold.verify.compare import compare_output
from bnfold.verify.evidence import _judge
from tests.builders import broken
from tests.cli.test_check_cli import bias_add_only, mixed


def _folded(tmp_path: Path) -> Path:
    """A model with nothing to fold (the folded mixed model)."""
    source, folded = tmp_path / "m.onnx", tmp_path / "clean.onnx"
    onnx.save(mixed(), source)
    result = CliRunner().invoke(main, ["optimize", str(source), "-o", str(folded), "-q"])
    assert result.exit_code == 0, result.output
    source.unlink()
    return folded


def test_the_internal_error_hint_shows_a_debug_form_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bnfold.commands.check as check_command

    def broken_check(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(check_command, "check", broken_check)
    model = tmp_path / "m.onnx"
    onnx.save(bias_add_only(), model)
    result = CliRunner().invoke(main, ["check", str(model)])
    assert result.exit_code == 70
    assert "rerun as `bnfold --debug check …`" in result.output
    assert "rerun with --debug" not in result.output
    debug = CliRunner().invoke(main, ["--debug", "check", str(model)])  # the form works
    assert debug.exit_code == 70 and "Traceback" in debug.output


def test_optimize_says_nothing_to_fold_and_shows_sizes(tmp_path: Path) -> None:
    clean = _folded(tmp_path)
    result = CliRunner().invoke(main, ["optimize", str(clean), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 0, result.output
    assert f"nothing to fold in {clean}" in result.output
    assert "kB -> " in result.output and "wrote " in result.output

    source = tmp_path / "m.onnx"
    onnx.save(mixed(), source)
    folded = CliRunner().invoke(main, ["optimize", str(source), "-o", str(tmp_path / "f.onnx")])
    assert "nothing to fold" not in folded.output
    before, after = source.stat().st_size / 1e3, (tmp_path / "f.onnx").stat().st_size / 1e3
    assert f"(size {before:.1f} kB -> {after:.1f} kB)" in folded.output


def test_in_place_with_nothing_to_fold_rewrites_nothing(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    broken.save_with_external_data(onnx.load(_folded(tmp_path)), model, "model.onnx.data")
    (tmp_path / "clean.onnx").unlink()
    data = tmp_path / "model.onnx.data"
    for path in (model, data):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (model, data)}
    result = CliRunner().invoke(main, ["optimize", str(model), "--in-place"])
    assert result.exit_code == 0, result.output
    assert f"nothing to fold: {model} left as it was (not rewritten)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in before} == before


def test_messages_show_numbers_plainly() -> None:
    ref = np.array([0.001, 1.0], np.float32)
    reason = compare_output("y", ref, np.array([0.5, 1.0], np.float32), atol=1e-5, rtol=1e-5)
    assert reason.reason is not None
    assert "reference 0.001, candidate 0.5" in reason.reason and "np." not in reason.reason
    exact = compare_output("i", np.array([1], np.int64), np.array([2], np.int64), atol=0, rtol=0)
    assert exact.reason is not None and "reference 1, candidate 2" in exact.reason
    weak = _judge("y", [np.full([2, 2], 0.001, np.float32)], False, None)
    assert weak is not None and "is 0.001 in every element" in weak.message


def test_verify_inside_optimize_names_the_output_not_the_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short names: the header fits on one line
    source, output = Path("m.onnx"), Path("out.onnx")
    onnx.save(mixed(), source)
    result = CliRunner().invoke(main, ["optimize", str(source), "-o", str(output), "--verify"])
    assert result.exit_code == 0, result.output
    assert f"bnfold verify: {source} vs {output}" in result.output
    assert "staging" not in result.output and ".bnfold" not in result.output

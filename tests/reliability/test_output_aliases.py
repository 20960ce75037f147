"""No command writes over a file it reads: every command × every output option × each input
(model and external data, of each model), named directly, through a symlink, through a hard
link or through a roundabout path. Each case exits 2 with one line, and the folder is
byte-for-byte unchanged (nothing written: the check comes before any work).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from bnfold.cli import main
from tests.builders import broken as models
from tests.builders.files import snapshot

# command -> (arguments before the output options, the output options it has)
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "optimize": (["{a}"], ["-o", "--report", "--markdown", "summary"]),
    "optimize --dry-run": (["{a}", "--dry-run"], ["--report", "--markdown", "summary"]),
    "optimize --in-place": (["{a}", "--in-place"], ["--report", "--markdown", "summary"]),
    "check": (["{a}"], ["--report", "--markdown", "summary"]),
    "verify": (["{a}", "{b}"], ["--report", "--markdown", "summary"]),
    "bench": (["{a}", "{b}"], ["--report", "--markdown", "--plot", "summary"]),
}
INPUTS = {"a.onnx": "{a}", "a.onnx.data": "{a}.data", "b.onnx": "{b}", "b.onnx.data": "{b}.data"}
ALIASES: dict[str, Callable[[Path, Path], Path]] = {}


def alias(name: str) -> Callable[[Callable[[Path, Path], Path]], Callable[[Path, Path], Path]]:
    def register(function: Callable[[Path, Path], Path]) -> Callable[[Path, Path], Path]:
        ALIASES[name] = function
        return function

    return register


@alias("same path")
def _same(folder: Path, target: Path) -> Path:
    return target


@alias("roundabout path")
def _roundabout(folder: Path, target: Path) -> Path:
    return folder / "sub" / ".." / "." / target.name


@alias("symlink")
def _symlink(folder: Path, target: Path) -> Path:
    link = folder / "link.out"
    link.symlink_to(target)
    return link


@alias("hard link")
def _hard_link(folder: Path, target: Path) -> Path:
    link = folder / "hard.out"
    os.link(target, link)
    return link


def _models(folder: Path) -> dict[str, Path]:
    (folder / "sub").mkdir()
    paths = {}
    for name in ("a", "b"):
        path = folder / f"{name}.onnx"
        models.save_with_external_data(models.conv_bn(), path, f"{name}.onnx.data")
        paths[name] = path
    return paths


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for command, (arguments, options) in COMMANDS.items():
        reads = [k for k, v in INPUTS.items() if v.split(".")[0] in " ".join(arguments)]
        for option in options:
            for read in reads:
                for how in ALIASES:
                    cases.append((command, option, read, how))
    return cases


@pytest.mark.parametrize(("command", "option", "read", "how"), _cases())
def test_an_output_that_aliases_an_input_is_refused(
    tmp_path: Path, command: str, option: str, read: str, how: str
) -> None:
    paths = _models(tmp_path)
    arguments, _ = COMMANDS[command]
    words = command.split()
    fill = {"a": str(paths["a"]), "b": str(paths["b"])}
    target = ALIASES[how](tmp_path, tmp_path / read)
    args = [*words[:1], *(a.format(**fill) for a in arguments), *words[1:]]
    env = {}
    if option == "summary":
        env["GITHUB_STEP_SUMMARY"] = str(target)
    else:
        args += [option, str(target)]
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "would overwrite" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_save_failing_never_writes_over_a_model(tmp_path: Path) -> None:
    """verify's failing-inputs .npz lands on a hard link of the original: exit 2, no write."""
    original = tmp_path / "a.onnx"
    onnx.save(models.conv_bn(), original)
    wrong = models.copy(models.conv_bn())
    wrong.graph.initializer[1].raw_data = bytes(len(wrong.graph.initializer[1].raw_data))
    candidate = tmp_path / "c.onnx"
    onnx.save(wrong, candidate)
    dump = tmp_path / "dump"
    dump.mkdir()
    os.link(original, dump / "c.failing-inputs.npz")
    before = snapshot(tmp_path)
    report = tmp_path / "r.json"
    args = ["verify", str(original), str(candidate), "--save-failing", str(dump)]
    result = CliRunner().invoke(main, [*args, "--report", str(report), "-q"])
    assert result.exit_code == 2, result.output
    assert "would overwrite" in result.stderr
    assert snapshot(tmp_path) == before


def test_two_outputs_of_one_command_may_not_be_one_file(tmp_path: Path) -> None:
    paths = _models(tmp_path)
    before = snapshot(tmp_path)
    same = str(tmp_path / "r.txt")
    result = CliRunner().invoke(
        main, ["check", str(paths["a"]), "--report", same, "--markdown", same]
    )
    assert result.exit_code == 2 and "are the same file" in result.stderr
    out = str(tmp_path / "o.onnx")
    result = CliRunner().invoke(main, ["optimize", str(paths["a"]), "-o", out, "--report", out])
    assert result.exit_code == 2 and "are the same file" in result.stderr
    assert snapshot(tmp_path) == before


def test_output_data_name_taken_by_an_input_gets_a_free_name(tmp_path: Path) -> None:
    """``-o out.onnx`` where the input's data is ``out.onnx.data``: the input stays untouched."""
    source = tmp_path / "model.onnx"
    models.save_with_external_data(models.conv_bn(), source, "out.onnx.data")
    before = snapshot(tmp_path)
    output = tmp_path / "out.onnx"
    result = CliRunner().invoke(main, ["optimize", str(source), "-o", str(output), "-q"])
    assert result.exit_code == 0, result.output
    after = snapshot(tmp_path)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ["out.onnx", "out.onnx.1.data"]


def test_a_report_named_like_the_data_file_pushes_the_data_to_a_free_name(
    tmp_path: Path,
) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(models.conv_bn(), source)
    output, report = tmp_path / "o.onnx", tmp_path / "o.onnx.data"
    args = ["optimize", str(source), "-o", str(output), "--external-data", "--report", str(report)]
    result = CliRunner().invoke(main, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert report.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "o.onnx",
        "o.onnx.1.data",
        "o.onnx.data",
    ]

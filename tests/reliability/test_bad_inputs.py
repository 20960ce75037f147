"""The bad-input battery: every bad input gets one clear line, a documented exit code, and
leaves every file as it was.

Each case builds its files in a fresh folder and names the ``bnfold optimize`` arguments.
For every case the test checks, through click's CliRunner:

- the exit code (``bnfold.errors.EXIT_CODES``: 2 usage, 3 unreadable or invalid model,
  6 output cannot be written, 7 unsafe external data);
- stderr is exactly one line, ``error: ...``, naming the problem (and no traceback);
- no file appeared, vanished or changed in the folder (hidden temporary files included),
  so the input's bytes are unchanged and no output or partial output was left;
- for input-side cases, ``bnfold check`` and the library (``bnfold.optimize``) refuse the
  same way, with an error of the same exit code.

Write failures that need a patched or mounted file system are in ``test_write_failures.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import bnfold
from bnfold.cli import main
from bnfold.errors import BnfoldError
from tests.builders import broken as models
from tests.builders.files import snapshot

ROOT = Path(__file__).parents[2]
Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    """``setup(folder)`` writes the files and returns the arguments after ``optimize``."""

    id: str
    setup: Setup
    exit_code: int
    message: str
    input_side: bool = True  # the model itself is bad: check and the library refuse it too


def _good(folder: Path, name: str = "model.onnx") -> Path:
    path = folder / name
    onnx.save(models.conv_bn(), path)
    return path


def _saved(model_factory: Callable[[], onnx.ModelProto]) -> Setup:
    def setup(folder: Path) -> list[str]:
        path = folder / "model.onnx"
        path.write_bytes(model_factory().SerializeToString())
        return [str(path)]

    return setup


def _bytes(data: bytes) -> Setup:
    def setup(folder: Path) -> list[str]:
        path = folder / "model.onnx"
        path.write_bytes(data)
        return [str(path)]

    return setup


def _truncated(folder: Path) -> list[str]:
    data = models.conv_bn().SerializeToString()
    path = folder / "model.onnx"
    path.write_bytes(data[: len(data) // 2])
    return [str(path)]


def _over_two_gib(folder: Path) -> list[str]:
    """A sparse file: 2 GiB + 1 byte of apparent size, no disk blocks."""
    path = folder / "huge.onnx"
    path.write_bytes(models.conv_bn().SerializeToString())
    os.truncate(path, 2**31 + 1)
    return [str(path)]


def _fifo_model(folder: Path) -> list[str]:
    path = folder / "model.onnx"
    os.mkfifo(path)
    return [str(path)]


def _external(location: str, *, prepare: Callable[[Path], None] | None = None) -> Setup:
    """A model whose weights are external data, then re-pointed at ``location``."""

    def setup(folder: Path) -> list[str]:
        model_dir = folder / "model_dir"
        model_dir.mkdir()
        path = model_dir / "model.onnx"
        models.save_with_external_data(models.conv_bn(), path, "weights.bin")
        if prepare is not None:
            prepare(folder)
        models.point_external_data_at(path, location.replace("{folder}", str(folder)))
        return [str(path)]

    return setup


def _outside_file(folder: Path) -> None:
    (folder / "secret.bin").write_bytes(b"\x00" * 4096)


def _outside_symlink(folder: Path) -> None:
    _outside_file(folder)
    (folder / "model_dir" / "link.bin").symlink_to(folder / "secret.bin")


def _truncated_external(folder: Path) -> list[str]:
    path = folder / "model.onnx"
    models.save_with_external_data(models.conv_bn(), path, "weights.bin")
    data = folder / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    return [str(path)]


def _output_is_input(folder: Path) -> list[str]:
    path = _good(folder)
    return [str(path), "-o", str(path)]


def _output_is_symlink_to_input(folder: Path) -> list[str]:
    path = _good(folder)
    (folder / "alias.onnx").symlink_to(path)
    return [str(path), "-o", str(folder / "alias.onnx")]


def _output_folder_missing(folder: Path) -> list[str]:
    return [str(_good(folder)), "-o", str(folder / "no" / "such" / "out.onnx")]


def _output_folder_is_a_file(folder: Path) -> list[str]:
    path = _good(folder)
    (folder / "plain").write_text("a file, not a folder")
    return [str(path), "-o", str(folder / "plain" / "out.onnx")]


def _output_is_a_folder(folder: Path) -> list[str]:
    path = _good(folder)
    (folder / "out.onnx").mkdir()
    return [str(path), "-o", str(folder / "out.onnx")]


def _report_is_input(folder: Path) -> list[str]:
    path = _good(folder)
    return [str(path), "--report", str(path)]


def _markdown_is_output(folder: Path) -> list[str]:
    path = _good(folder)
    return [str(path), "-o", str(folder / "out.onnx"), "--markdown", str(folder / "out.onnx")]


def _report_folder_missing(folder: Path) -> list[str]:
    return [str(_good(folder)), "--report", str(folder / "missing" / "report.json")]


def _in_place_and_output(folder: Path) -> list[str]:
    return [str(_good(folder)), "--in-place", "-o", str(folder / "out.onnx")]


def _output_is_input_data(folder: Path) -> list[str]:
    path = folder / "model.onnx"
    models.save_with_external_data(models.conv_bn(), path, "weights.bin")
    return [str(path), "-o", str(folder / "weights.bin")]


def _unknown_pattern(folder: Path) -> list[str]:
    return [str(_good(folder)), "--disable", "no-such-pattern"]


CASES = [
    # -- the input cannot be read (exit 3) -------------------------------------------------
    Case("missing file", lambda f: [str(f / "absent.onnx")], 3, "file not found"),
    Case("directory", lambda f: [str(f)], 3, "is a directory, not a file"),
    Case("empty file", _bytes(b""), 3, "file is empty"),
    Case(
        "random bytes",
        _bytes(np.random.default_rng(3).bytes(4096)),
        3,
        "not a readable ONNX model",
    ),
    Case("truncated model", _truncated, 3, "not a readable ONNX model"),
    Case("over 2 GiB without external data", _over_two_gib, 3, "over protobuf's 2 GiB limit"),
    Case("FIFO instead of a file", _fifo_model, 3, "not a regular file"),
    Case("no graph", _saved(models.without_graph), 3, "no graph, IR version or opset"),
    # -- the input is not a valid model (exit 3) -------------------------------------------
    Case(
        "cycle",
        _saved(models.with_cycle),
        3,
        "the graph has a cycle: 'conv' -> 'bn' -> 'relu' -> 'conv'",
    ),
    Case(
        "dangling input",
        _saved(models.with_dangling_input),
        3,
        "node 'bn' reads 'nobody_makes_this', which no node, initializer or graph input produces",
    ),
    Case(
        "duplicate tensor name",
        _saved(models.with_duplicate_producer),
        3,
        "tensor 'y' is produced twice, by node 'conv' and by node 'relu'",
    ),
    Case(
        "unknown op in the ONNX domain",
        _saved(models.with_unknown_standard_op),
        3,
        "node 'mystery' (FoldMeHarder): No Op registered for FoldMeHarder",
    ),
    Case(
        "custom domain not imported",
        _saved(models.with_unimported_custom_domain),
        3,
        "No opset import for domain 'com.example'",
    ),
    Case(
        "tensor shorter than its shape",
        _saved(models.with_short_tensor),
        3,
        "tensor 'W' holds 428 bytes, its shape [4, 3, 3, 3] of float32 needs 432",
    ),
    Case(
        "dangling read inside an If branch",
        _saved(lambda: models.with_if("nowhere")),
        3,
        "in 'branch'.else_branch: node 'else_identity' reads 'nowhere', which no node",
    ),
    Case(
        "graph output produced by nothing",
        _saved(models.with_unproduced_output),
        3,
        "graph output 'ghost' is produced by nothing",
    ),
    # -- external data (exit 7 unsafe, exit 3 missing or short) ----------------------------
    Case(
        "external data absolute",
        _external("{folder}/secret.bin", prepare=_outside_file),
        7,
        "external data location is absolute",
    ),
    Case(
        "external data with ..",
        _external("../secret.bin", prepare=_outside_file),
        7,
        "external data location contains '..'",
    ),
    Case(
        "external data symlink leaving the folder",
        _external("link.bin", prepare=_outside_symlink),
        7,
        "resolves outside the model's folder",
    ),
    Case(
        "external data file missing",
        _external("gone.bin"),
        3,
        "external data file missing: 'gone.bin'",
    ),
    Case(
        "external data truncated",
        _truncated_external,
        3,
        "external data 'weights.bin' ends before tensor",
    ),
    # -- where the output goes (exit 2 usage, exit 6 cannot write) --------------------------
    Case("output is the input", _output_is_input, 2, "pass --in-place", input_side=False),
    Case(
        "output is a symlink to the input",
        _output_is_symlink_to_input,
        2,
        "the output would overwrite the input model",
        input_side=False,
    ),
    Case(
        "output folder missing",
        _output_folder_missing,
        6,
        "output folder does not exist",
        input_side=False,
    ),
    Case(
        "output folder is a file",
        _output_folder_is_a_file,
        6,
        "output folder is a file, not a folder",
        input_side=False,
    ),
    Case(
        "output path is a folder",
        _output_is_a_folder,
        6,
        "output path is a folder",
        input_side=False,
    ),
    Case(
        "output is the input's external data",
        _output_is_input_data,
        2,
        "the output would overwrite the input model's external data file 'weights.bin'",
        input_side=False,
    ),
    Case(
        "--report is the input",
        _report_is_input,
        2,
        "the --report file would overwrite the input model",
        False,
    ),
    Case(
        "--markdown is the output",
        _markdown_is_output,
        2,
        "the output and the --markdown file are the same file",
        input_side=False,
    ),
    Case(
        "--report folder missing",
        _report_folder_missing,
        6,
        "--report folder does not exist",
        input_side=False,
    ),
    Case(
        "--in-place with -o",
        _in_place_and_output,
        2,
        "--in-place and -o cannot be used together",
        input_side=False,
    ),
    Case("unknown --disable", _unknown_pattern, 2, "Invalid value for '--disable'", False),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


def _assert_one_line_error(stderr: str, message: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert message in stderr, stderr


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_one_line_and_its_exit_code_and_changes_nothing(
    case: Case, folder: Path
) -> None:
    args = case.setup(folder)
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["optimize", *args])
    assert result.exit_code == case.exit_code, result.output
    if case.message.startswith("Invalid value"):  # click's own usage error: its usual form
        assert case.message in result.stderr and "Traceback" not in result.stderr
    else:
        _assert_one_line_error(result.stderr, case.message)
        assert result.stdout == ""  # refused before anything was folded or printed
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.input_side], ids=[c.id for c in CASES if c.input_side]
)
def test_check_and_library_refuse_bad_input_the_same_way(case: Case, folder: Path) -> None:
    args = case.setup(folder)
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["check", args[0]])
    assert result.exit_code == case.exit_code, result.output
    _assert_one_line_error(result.stderr, case.message)
    with pytest.raises(BnfoldError) as caught:
        bnfold.optimize(args[0])
    assert caught.value.exit_code == case.exit_code
    assert case.message in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(folder) == before


def test_every_truncation_point_is_refused(folder: Path) -> None:
    """Cut the file anywhere: either protobuf cannot parse it or the structure check fails."""
    data = models.conv_bn().SerializeToString()
    path = folder / "model.onnx"
    for cut in range(1, len(data), max(1, len(data) // 97)):
        path.write_bytes(data[:cut])
        with pytest.raises(BnfoldError) as caught:
            bnfold.optimize(path)
        assert caught.value.exit_code == 3, (cut, str(caught.value))
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]


def test_debug_shows_the_traceback(folder: Path) -> None:
    result = CliRunner().invoke(main, ["--debug", "optimize", str(folder / "absent.onnx")])
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "error: model file not found" in result.stderr


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python cli.py ...`` as a user runs it from a checkout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("case_id", "exit_code"),
    [("missing file", 3), ("random bytes", 3), ("cycle", 3), ("output folder missing", 6)],
)
def test_real_process_gives_one_line_and_the_exit_code(
    case_id: str, exit_code: int, folder: Path
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    args = case.setup(folder)
    before = snapshot(folder)
    done = _run_cli("optimize", *args)
    assert done.returncode == exit_code, done.stderr
    _assert_one_line_error(done.stderr, case.message)
    assert snapshot(folder) == before


@pytest.mark.parametrize("how", ["absolute", "symlink"])
def test_external_data_outside_the_folder_is_never_opened(how: str, folder: Path) -> None:
    """The outside "data" is a FIFO with no writer: opening it for reading would block.

    So a process that returns at once with exit 7 proves no byte of it was read (the timeout
    turns a regression into a failure, not a hang).
    """
    fifo = folder / "outside.fifo"
    os.mkfifo(fifo)
    model_dir = folder / "model_dir"
    model_dir.mkdir()
    path = model_dir / "model.onnx"
    models.save_with_external_data(models.conv_bn(), path, "weights.bin")
    if how == "absolute":
        models.point_external_data_at(path, str(fifo))
    else:
        (model_dir / "link.bin").symlink_to(fifo)
        models.point_external_data_at(path, "link.bin")
    done = _run_cli("optimize", str(path), timeout=30)
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_subgraph_reading_the_outer_scope_is_valid_and_folded(folder: Path) -> None:
    """The structure check knows outer-scope names: a valid If is accepted, the BN folded."""
    model = models.with_if("z0")
    result = bnfold.optimize(model)
    assert [fold.bn for fold in result.report.folds] == ["bn"]

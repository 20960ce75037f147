"""Writing fails (disk full, read-only, Ctrl-C): one line, exit 6 or 130, nothing left behind.

Tests run as root, and root ignores permission bits, so "not writable" and "disk full" are
made real with small tmpfs mounts where the sandbox allows mounting (read-only: EROFS, 64 KiB:
ENOSPC), and are always also simulated by patching the write inside ``bnfold.storage.outputs`` to
fail half-way through (``OSError(ENOSPC)``, ``PermissionError``, ``KeyboardInterrupt``).
Every test checks the folder afterwards: no output, no temporary file, input unchanged.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest
from click.testing import CliRunner

import bnfold
from bnfold.cli import main
from bnfold.errors import OutputWriteError
from bnfold.storage import outputs as output
from bnfold.storage import staging
from bnfold.storage.load import load_model
from tests.builders import broken as models
from tests.builders.files import leftovers, snapshot
from tests.builders.graphs import assert_equivalent

ROOT = Path(__file__).parents[2]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(models.conv_bn(weight_scale=400), path)  # 173 KB of weights: more than 64 KiB
    return path


def _mount_tmpfs(mount_point: Path, options: str) -> bool:
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB file system: writing the model there fails with ENOSPC."""
    mount_point = tmp_path / "small"
    if not _mount_tmpfs(mount_point, "size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def readonly_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real read-only file system: root cannot write there either (EROFS)."""
    mount_point = tmp_path / "readonly"
    if not _mount_tmpfs(mount_point, "ro,size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


class _FailingFile:
    """Wraps a file opened for writing: writes half of the first buffer, then raises."""

    def __init__(self, handle: Any, error: BaseException) -> None:
        self._handle, self._error = handle, error

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise self._error

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _fail_writes(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Every file bnfold.storage.outputs opens for writing fails half-way with ``error``."""

    def failing_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 - closed by the wrapper
        return _FailingFile(handle, error) if "w" in mode else handle

    monkeypatch.setattr(output, "open", failing_open, raising=False)


def _assert_one_line(stderr: str, message: str) -> None:
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr and "Traceback" not in stderr, stderr


def test_disk_full_simulated_half_way_through_the_write(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(tmp_path)
    _fail_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    result = CliRunner().invoke(main, ["optimize", str(model_path), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 6, result.output
    _assert_one_line(result.stderr, "disk full while writing")
    assert snapshot(tmp_path) == before


def test_disk_full_on_a_real_64k_filesystem(model_path: Path, small_tmpfs: Path) -> None:
    for extra in ([], ["--external-data"]):
        result = CliRunner().invoke(
            main, ["optimize", str(model_path), "-o", str(small_tmpfs / "o.onnx"), *extra]
        )
        assert result.exit_code == 6, result.output
        _assert_one_line(result.stderr, "disk full while writing")
        assert list(small_tmpfs.iterdir()) == []


def test_library_save_on_a_full_disk_raises_output_write_error(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = bnfold.optimize(model_path)
    before = snapshot(tmp_path)
    _fail_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputWriteError, match="disk full") as caught:
        result.save(tmp_path / "o.onnx")
    assert caught.value.exit_code == 6
    assert snapshot(tmp_path) == before


def test_read_only_folder_is_refused_before_folding(model_path: Path, readonly_tmpfs: Path) -> None:
    result = CliRunner().invoke(
        main, ["optimize", str(model_path), "-o", str(readonly_tmpfs / "o.onnx")]
    )
    assert result.exit_code == 6, result.output
    _assert_one_line(result.stderr, "output folder is not writable")
    assert result.stdout == "" and list(readonly_tmpfs.iterdir()) == []


def test_permission_denied_at_write_time_is_exit_6(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated: the folder looks writable (root), but creating a file is refused."""
    before = snapshot(tmp_path)

    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(staging.tempfile, "mkdtemp", refuse)
    result = CliRunner().invoke(main, ["optimize", str(model_path), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 6, result.output
    _assert_one_line(result.stderr, "Permission denied; nothing was written")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("external", [False, True], ids=["one-file", "external-data"])
def test_interrupt_during_the_write_leaves_nothing(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, external: bool
) -> None:
    before = snapshot(tmp_path)
    _fail_writes(monkeypatch, KeyboardInterrupt())  # the model or data file, half-way
    args = ["optimize", str(model_path), "-o", str(tmp_path / "o.onnx")]
    result = CliRunner().invoke(main, [*args, *(["--external-data"] if external else [])])
    assert result.exit_code == 130, result.output
    _assert_one_line(result.stderr, "interrupted; no partial output was left behind")
    assert snapshot(tmp_path) == before


def test_library_lets_keyboard_interrupt_through_and_cleans_up(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = bnfold.optimize(model_path)
    before = snapshot(tmp_path)
    _fail_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        result.save(tmp_path / "o.onnx")
    assert snapshot(tmp_path) == before


def test_ctrl_c_between_placing_the_data_and_the_commit_waits_for_the_commit(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT arriving after the data file is placed: the model is renamed too, then exit 130."""
    real_place = output._place_new
    placed: list[str] = []

    def place_then_signal(staged: Path, final: Path) -> None:
        real_place(staged, final)
        placed.append(final.name)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(output, "_place_new", place_then_signal)
    target = tmp_path / "o.onnx"
    args = ["optimize", str(model_path), "-o", str(target), "--external-data", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert placed == ["o.onnx.data"]
    monkeypatch.undo()
    loaded = load_model(target)  # the pair is complete and consistent
    assert loaded.has_external_data and not leftovers(tmp_path)


@pytest.mark.slow
def test_real_sigint_during_optimize_leaves_a_complete_output_or_none(tmp_path: Path) -> None:
    """A real process, interrupted at several moments after it starts printing the report."""
    source = tmp_path / "big.onnx"
    onnx.save(models.conv_bn(channels=64, weight_scale=2000), source)  # 14 MB of weights
    for attempt, delay in enumerate([0.0, 0.02, 0.1]):
        output = tmp_path / f"out{attempt}.onnx"
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "optimize", str(source), "-o", str(output)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.readline()  # the report is printed after folding, before writing
        if delay:
            subprocess.run(["sleep", str(delay)], check=True)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        # -SIGINT: the signal came after the command finished, while Python shut down (the
        # shell reports that as 130 too); the output is complete then, as checked below.
        assert process.returncode in (0, 130, -signal.SIGINT), stderr
        assert "Traceback" not in stderr
        if process.returncode == 130:
            assert stderr.startswith("error: interrupted") and stderr.count("\n") == 1
        if output.exists():
            load_model(output)  # complete and valid, never partial
        assert not leftovers(tmp_path)


def test_in_place_with_external_data_replaces_the_pair(tmp_path: Path) -> None:
    """--in-place on a model with external data: a complete, loadable model and data file.

    The new data gets a name no file had (the old data stays readable until the commit), and
    the old data file is gone afterwards.
    """
    source = tmp_path / "model.onnx"
    models.save_with_external_data(models.conv_bn(weight_scale=20), source, "model.onnx.data")
    original = load_model(source).materialized()
    result = CliRunner().invoke(main, ["optimize", str(source), "--in-place", "-q"])
    assert result.exit_code == 0, result.output
    folded = load_model(source)
    assert folded.has_external_data and not leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.1.data"]
    assert_equivalent(original, folded.materialized())

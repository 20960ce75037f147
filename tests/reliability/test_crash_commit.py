"""A SIGKILL at any step of a model commit leaves the old model or the new one, never a mix,
and the next run that writes beside it removes what the killed run left.

The kill is fault injection, not timing luck: ``BNFOLD_TEST_KILL_AT=<step>`` makes the
writer SIGKILL itself at that step (``bnfold.storage.outputs.COMMIT_STEPS``). Every state is checked
the way a user would meet it: onnxruntime opens the model file from disk (so its external
data must be complete and consistent), and the model is either byte-for-byte the old one or
the folded one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from bnfold.storage.load import load_model
from bnfold.storage.outputs import COMMIT_STEPS, data_locations
from bnfold.storage.staging import KILL_ENV, owner_tag
from tests.builders import broken as models
from tests.builders.files import leftovers
from tests.builders.graphs import batchnorm_count

ROOT = Path(__file__).parents[2]
# Steps after which the new model is in place (the rename of the .onnx file commits).
AFTER_COMMIT = {"committed", "old-data-removed"}
LEFT_BY_A_KILL_AT = {
    "staged": ["model.onnx.data"],
    "recorded": ["model.onnx.data"],
    "data-placed": ["model.onnx.1.data", "model.onnx.data"],  # new data not yet used
    "committed": ["model.onnx.1.data", "model.onnx.data"],  # old data no longer used
    "old-data-removed": ["model.onnx.1.data"],
}


def _bnfold(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != KILL_ENV}
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _run_from_disk(path: Path) -> np.ndarray:
    """Run the model file as onnxruntime reads it (external data from its folder)."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal([1, 60, 8, 8]).astype(np.float32)
    return session.run(None, {"x": x})[0]


def _data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    source = tmp_path / "model.onnx"
    models.save_with_external_data(models.conv_bn(weight_scale=20), source, "model.onnx.data")
    return source


@pytest.mark.parametrize("step", COMMIT_STEPS)
@pytest.mark.slow
def test_sigkill_at_each_step_of_an_in_place_fold(
    external_model: Path, tmp_path: Path, step: str
) -> None:
    old_bytes = external_model.read_bytes()
    expected = _run_from_disk(external_model)

    killed = _bnfold("optimize", str(external_model), "--in-place", "-q", kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    model = onnx.load(str(external_model), load_external_data=False)
    if step in AFTER_COMMIT:
        assert batchnorm_count(model) == 0  # the new model, complete with its new data
        assert data_locations(external_model) == ["model.onnx.1.data"]
    else:
        assert external_model.read_bytes() == old_bytes  # the old model, with its old data
        assert data_locations(external_model) == ["model.onnx.data"]
    np.testing.assert_allclose(_run_from_disk(external_model), expected, rtol=1e-4, atol=1e-4)
    assert leftovers(tmp_path), "the killed run's staging folder is the evidence it was killed"
    assert _data_files(tmp_path) == LEFT_BY_A_KILL_AT[step]

    # Any later run that writes beside it cleans up: only the model and the data it uses stay.
    done = _bnfold("check", str(external_model), "--report", str(tmp_path / "check.json"))
    assert done.returncode in (0, 1), done.stderr
    assert not leftovers(tmp_path)
    assert _data_files(tmp_path) == data_locations(external_model)
    load_model(external_model)  # and it loads cleanly through bnfold's own checks


@pytest.mark.slow
def test_killed_commit_then_a_complete_rerun(external_model: Path, tmp_path: Path) -> None:
    """Killed just before the commit, run again: the fold lands, nothing of the first remains."""
    killed = _bnfold("optimize", str(external_model), "--in-place", "-q", kill_at="data-placed")
    assert killed.returncode == -signal.SIGKILL
    assert _data_files(tmp_path) == ["model.onnx.1.data", "model.onnx.data"]  # an orphan
    done = _bnfold("optimize", str(external_model), "--in-place", "-q")
    assert done.returncode == 0, done.stderr
    assert not leftovers(tmp_path)
    assert batchnorm_count(onnx.load(str(external_model), load_external_data=False)) == 0
    assert _data_files(tmp_path) == data_locations(external_model)


def test_in_place_without_external_data_removes_the_old_data_file(external_model: Path) -> None:
    done = _bnfold("optimize", str(external_model), "--in-place", "--no-external-data", "-q")
    assert done.returncode == 0, done.stderr
    assert _data_files(external_model.parent) == [] and data_locations(external_model) == []


@pytest.mark.slow
def test_rewriting_an_output_never_replaces_the_data_its_old_model_reads(tmp_path: Path) -> None:
    """-o onto an existing model with external data: new data under a free name, old removed."""
    source = tmp_path / "model.onnx"
    onnx.save(models.conv_bn(weight_scale=20), source)
    output = tmp_path / "out.onnx"
    names = []
    for _ in range(3):
        done = _bnfold("optimize", str(source), "-o", str(output), "--external-data", "-q")
        assert done.returncode == 0, done.stderr
        names.append(data_locations(output))
        assert _data_files(tmp_path) == data_locations(output)
    assert names == [["out.onnx.data"], ["out.onnx.1.data"], ["out.onnx.data"]]


def test_a_data_file_under_another_name_is_kept(tmp_path: Path) -> None:
    """weights.bin may be shared by other models: --in-place leaves it where it is."""
    source = tmp_path / "model.onnx"
    models.save_with_external_data(models.conv_bn(weight_scale=20), source, "weights.bin")
    done = _bnfold("optimize", str(source), "--in-place", "-q")
    assert done.returncode == 0, done.stderr
    assert data_locations(source) == ["model.onnx.data"]
    assert (tmp_path / "weights.bin").exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_folders_of_dead_processes_on_this_host_are_removed(
    external_model: Path, tmp_path: Path
) -> None:
    host = owner_tag().split("-")[0]
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {
            "dead": tmp_path / f".model.onnx.{host}-{_dead_pid()}.abc{TEMP}",
            "alive": tmp_path / f".model.onnx.{host}-{alive.pid}.abc{TEMP}",
            "other host": tmp_path / f".model.onnx.00000000-{_dead_pid()}.abc{TEMP}",
            "old style": tmp_path / f".model.onnx.k2j4h5{TEMP}",
        }
        for folder in folders.values():
            folder.mkdir()
            (folder / "model.onnx").write_bytes(b"partial")
        done = _bnfold("optimize", str(external_model), "-o", str(tmp_path / "o.onnx"), "-q")
        assert done.returncode == 0, done.stderr
        remaining = {name for name, folder in folders.items() if folder.exists()}
        assert remaining == {"alive", "other host", "old style"}
    finally:
        alive.kill()
        alive.wait()


TEMP = ".bnfold-tmp"

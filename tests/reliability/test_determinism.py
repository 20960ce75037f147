"""Same input, same bytes; optimize of its own output is a no-op; parallel runs do not interfere.

All through real ``python cli.py optimize`` processes, as a user or a build system runs them:
the hash seed differs per process (``PYTHONHASHSEED``), and two processes may write into one
folder at once (their temporary files are private folders named after the output and made
by ``mkdtemp``, so they cannot collide).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from bnfold.storage.load import load_model
from tests.builders.files import leftovers
from tests.builders.graphs import assert_equivalent, make_model, random_bn_params, tensor

ROOT = Path(__file__).parents[2]


def branchy_model(width: int = 16, c_in: int = 3) -> onnx.ModelProto:
    """Two Conv+BN branches (one unnamed), an Add, a Gemm+BN head, a BN that must stay."""
    rng = np.random.default_rng(11)
    values: dict[str, np.ndarray] = {
        "W1": rng.standard_normal([width, c_in, 3, 3]).astype(np.float32),
        "W2": rng.standard_normal([width, c_in, 1, 1]).astype(np.float32),
        "Wg": rng.standard_normal([width, 5]).astype(np.float32),
        "shape": np.array([0, -1], np.int64),
    }
    for prefix, channels in (("a", width), ("b", width), ("c", 5), ("d", width)):
        params = random_bn_params(rng, channels)
        values.update({f"{prefix}{i}": p for i, p in enumerate(params)})
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["y1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["y1", "a0", "a1", "a2", "a3"], ["z1"], name="bn1"),
        helper.make_node("Conv", ["x", "W2"], ["y2"]),  # unnamed on purpose
        helper.make_node("BatchNormalization", ["y2", "b0", "b1", "b2", "b3"], ["z2"]),
        helper.make_node("Add", ["z1", "z2"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "d0", "d1", "d2", "d3"], ["kept"], name="bn3"),
        helper.make_node("GlobalAveragePool", ["kept"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "Wg"], ["g"], name="gemm"),
        helper.make_node("BatchNormalization", ["g", "c0", "c1", "c2", "c3"], ["out"], name="bn4"),
    ]
    return make_model(
        nodes,
        [tensor("x", ["N", c_in, 16, 16])],
        [tensor("out", None)],
        list(values.values()),
        names=list(values),
    )


def _optimize(source: Path, output: Path, *extra: str, seed: str = "0") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "optimize", str(source), "-o", str(output), "-q"]
        + list(extra),
        env={**os.environ, "PYTHONHASHSEED": seed},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr


@pytest.mark.slow
def test_output_bytes_do_not_depend_on_hash_seed_or_run(tmp_path: Path) -> None:
    """One folder per run (the data file's name is inside the model), same names in each."""
    source = tmp_path / "model.onnx"
    onnx.save(branchy_model(), source)
    seeds = ["0", "1", "4242", "random"]
    processes = []
    for seed in seeds:
        (tmp_path / seed).mkdir()
        processes.append(_optimize(source, tmp_path / seed / "one.onnx", seed=seed))
        processes.append(
            _optimize(source, tmp_path / seed / "ext.onnx", "--external-data", seed=seed)
        )
    for process in processes:
        _finish(process)
    names = ["one.onnx", "ext.onnx", "ext.onnx.data"]
    outputs = {tuple((tmp_path / seed / name).read_bytes() for name in names) for seed in seeds}
    assert len(outputs) == 1
    assert_equivalent(onnx.load(source), onnx.load(tmp_path / "0" / "one.onnx"))


@pytest.mark.slow
def test_optimize_of_the_output_writes_the_same_bytes(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(branchy_model(), source)
    first, second = tmp_path / "once.onnx", tmp_path / "twice.onnx"
    _finish(_optimize(source, first))
    _finish(_optimize(first, second))
    assert second.read_bytes() == first.read_bytes()


def test_two_processes_writing_into_one_folder_do_not_interfere(tmp_path: Path) -> None:
    """A moderately large model (~19 MB of weights), two outputs, written at the same time."""
    source = tmp_path / "model.onnx"
    onnx.save(branchy_model(width=256, c_in=256), source)
    outputs = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    processes = [_optimize(source, outputs[0]), _optimize(source, outputs[1], "--external-data")]
    for process in processes:
        _finish(process)
    plain, external = (load_model(path).materialized() for path in outputs)
    assert plain.SerializeToString() == external.SerializeToString()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.onnx",
        "b.onnx",
        "b.onnx.data",
        "model.onnx",
    ]


@pytest.mark.slow
def test_two_processes_writing_one_output_leave_one_complete_file(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(branchy_model(width=256, c_in=256), source)
    output = tmp_path / "out.onnx"
    processes = [_optimize(source, output), _optimize(source, output)]
    for process in processes:
        _finish(process)
    reference = tmp_path / "reference"
    reference.mkdir()
    _finish(_optimize(source, reference / "out.onnx"))
    assert output.read_bytes() == (reference / "out.onnx").read_bytes()
    assert not leftovers(tmp_path)

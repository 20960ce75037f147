"""optimize → verify → bench lives in the library: ``bnfold.optimize(..., verify=, bench=)``
and ``bnfold optimize --verify --bench`` do the same, with the shared input options.

The model here needs its symbolic batch to be 2 (a Reshape to a fixed ``[2, 64]``): with the
default size 1 the original itself cannot run, so ``--dim N=2`` must reach verify and bench.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

import bnfold
from bnfold.cli import main
from tests.builders.graphs import batchnorm_count, make_model, random_bn_params, tensor

ROOT = Path(__file__).parents[2]


def needs_batch_two() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["z"], name="bn"),
        helper.make_node("Reshape", ["z", "shape"], ["y"], name="reshape"),
    ]
    return make_model(
        nodes,
        [tensor("x", ["N", 3, 4, 4])],
        [tensor("y", [2, 64])],
        [
            rng.standard_normal([4, 3, 1, 1]).astype(np.float32),
            *random_bn_params(rng, 4),
            np.array([2, 64], np.int64),
        ],
        names=["W", "g", "b", "m", "v", "shape"],
    )


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(needs_batch_two(), path)
    return path


def test_optimize_verify_takes_dim(model_path: Path, tmp_path: Path) -> None:
    without = CliRunner().invoke(main, ["optimize", str(model_path), "--verify"])
    assert without.exit_code == 2, without.output
    assert "--dim" in without.stderr and not (tmp_path / "m.folded.onnx").exists()
    args = ["optimize", str(model_path), "--verify", "--dim", "N=2", "--providers", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and (tmp_path / "m.folded.onnx").exists()


def test_optimize_verify_takes_shape_range_and_inputs(model_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, x=np.ones([2, 3, 4, 4], np.float32))
    for extra in (["--shape", "x=2x3x4x4", "--range", "x=-1:1"], ["--inputs", str(data)]):
        result = CliRunner().invoke(main, ["optimize", str(model_path), "--verify", *extra])
        assert result.exit_code == 0, result.output


def _record_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the measurement (minutes, timing-dependent) by a recorder of its arguments."""
    import bnfold.bench as bench_package

    calls: list[dict[str, Any]] = []

    class Report:
        def render(self, console: Any) -> None:
            console.print("bench report")

    def fake_bench(original: Any, candidate: Any, **options: Any) -> Report:
        calls.append({"original": original, "candidate": candidate, **options})
        return Report()

    monkeypatch.setattr(bench_package, "bench", fake_bench)
    return calls


def test_cli_and_library_run_the_same_pipeline(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_bench(monkeypatch)
    output = tmp_path / "cli.onnx"
    args = ["optimize", str(model_path), "-o", str(output), "--verify", "--bench"]
    result = CliRunner().invoke(main, [*args, "--dim", "N=2", "--providers", "cpu"])
    assert result.exit_code == 0, result.output
    assert "bench report" in result.output

    library = bnfold.optimize(
        model_path,
        output=tmp_path / "lib.onnx",
        verify={"dims": {"N": 2}, "providers": "cpu"},
        bench={"dims": {"N": 2}, "providers": "cpu"},
    )
    library.raise_for_status()
    assert library.verification is not None and library.verification.passed
    assert (tmp_path / "lib.onnx").read_bytes() == output.read_bytes()
    assert batchnorm_count(onnx.load(output)) == 0
    cli_call, library_call = calls
    assert cli_call["candidate"] == output and library_call["candidate"] == tmp_path / "lib.onnx"
    for call in calls:
        assert call["dims"] == {"N": 2} and call["providers"] == "cpu"


def test_a_failed_verification_writes_nothing_and_skips_bench(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bnfold.engine.batchnorm as batchnorm
    from bnfold.engine.foldmath import Affine, bn_to_affine

    def wrong(*args: Any, **kwargs: Any) -> Affine:
        exact = bn_to_affine(*args, **kwargs)
        return Affine(exact.scale * 1.01, exact.shift)

    monkeypatch.setattr(batchnorm, "bn_to_affine", wrong)
    calls = _record_bench(monkeypatch)
    result = bnfold.optimize(
        model_path,
        output=tmp_path / "o.onnx",
        verify={"dims": {"N": 2}, "providers": "cpu", "save_failing": False},
        bench=True,
    )
    assert result.verification is not None and not result.verification.passed
    assert result.written == [] and not (tmp_path / "o.onnx").exists() and calls == []
    with pytest.raises(bnfold.errors.VerificationFailed, match="nothing was written"):
        result.raise_for_status()


LOADED = (
    "import sys; heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime'"
    " or m.startswith(('bnfold.verify', 'bnfold.bench'))); print(heavy)"
)


def test_import_and_optimize_load_neither_onnxruntime_nor_verify_nor_bench(
    model_path: Path,
) -> None:
    code = f"import bnfold; {LOADED}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr
    code = (
        "from bnfold.cli import main\n"
        "try:\n"
        f"    main(['optimize', {str(model_path)!r}, '-q'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"{LOADED}"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_verify_and_bench_stay_callable_however_they_were_imported() -> None:
    code = (
        "import bnfold.verify.report, bnfold.bench.stats, bnfold\n"
        "assert callable(bnfold.verify) and callable(bnfold.bench)\n"
        "assert bnfold.verify.verify.__name__ == 'verify'\n"
        "from bnfold import verify; assert callable(verify)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr

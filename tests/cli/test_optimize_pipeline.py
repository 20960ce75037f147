"""optimize → verify → bench lives in the library: ``bnfold.optimize(..., verify=, bench=)``
and ``bnfold optimize --verify --bench`` do the same, with the shared input options.

The model here needs its symbolic batch to be 2 (a Reshape to a fixed ``[2, 64]``): with the
default size 1 the original itself cannot run, so ``--dim N=2`` must reach verify and bench.
"""

from __future__ import annotations

import importlib
import json
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


class RecordedReport:
    """What a judge returns, reduced to what optimize and the commands use of it."""

    def __init__(self, name: str) -> None:
        self.name, self.passed, self.candidate = name, True, ""

    def render(self, console: Any, **options: Any) -> None:
        console.print(f"{self.name} report")

    def to_dict(self) -> dict[str, Any]:
        return {"recorded": self.name}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_markdown(self) -> str:
        return f"### recorded {self.name}\n"

    def raise_for_status(self) -> None:
        """A recorded judge found nothing wrong."""


def _record(monkeypatch: pytest.MonkeyPatch, judge: str) -> list[dict[str, Any]]:
    """Replace ``bnfold.<judge>.<judge>`` (a run of the judge) by a recorder of its arguments."""
    package = importlib.import_module(f"bnfold.{judge}")  # the package, not bnfold's function
    calls: list[dict[str, Any]] = []

    def fake(original: Any, candidate: Any, **options: Any) -> RecordedReport:
        calls.append({"original": original, "candidate": candidate, **options})
        return RecordedReport(judge)

    monkeypatch.setattr(package, judge, fake)
    return calls


def _record_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the measurement (minutes, timing-dependent) by a recorder of its arguments."""
    return _record(monkeypatch, "bench")


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


@pytest.fixture
def wrong_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fold scales 1 % too much: what verify must catch."""
    import bnfold.engine.batchnorm as batchnorm
    from bnfold.engine.foldmath import Affine, bn_to_affine

    def wrong(*args: Any, **kwargs: Any) -> Affine:
        exact = bn_to_affine(*args, **kwargs)
        return Affine(exact.scale * 1.01, exact.shift)

    monkeypatch.setattr(batchnorm, "bn_to_affine", wrong)


@pytest.mark.usefixtures("wrong_fold")
def test_a_failed_verification_writes_nothing_and_skips_bench(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_optimize_verify_loads_no_part_of_bench(model_path: Path) -> None:
    """bench's option defaults are library constants: read only when --bench runs."""
    code = (
        "from bnfold.cli import main\n"
        "try:\n"
        f"    main(['optimize', {str(model_path)!r}, '-q', '--verify', '--dim', 'N=2',"
        " '--providers', 'cpu'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "import sys; print(sorted(m for m in sys.modules if m.startswith('bnfold.bench')))"
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


# Options of `bnfold verify`/`bnfold bench` optimize need not take: the models and the files
# the command writes (optimize's own --report/--markdown; -q means "print nothing" there).
NOT_JUDGE_OPTIONS = {"original", "candidate", "report_path", "markdown_path", "quiet"}


@pytest.mark.parametrize("judge", ["verify", "bench"])
def test_optimize_takes_every_option_of_verify_and_bench(judge: str) -> None:
    """Read from the commands themselves: an option added to either later is checked too."""
    optimize = {opt for param in main.commands["optimize"].params for opt in param.opts}
    optimize |= {opt for param in main.commands["optimize"].params for opt in param.secondary_opts}
    checked = 0
    for param in main.commands[judge].params:
        if param.name in NOT_JUDGE_OPTIONS:
            continue
        missing = {*param.opts, *param.secondary_opts} - optimize
        assert not missing, f"`bnfold optimize` lacks {judge}'s {', '.join(sorted(missing))}"
        checked += 1
    assert checked >= (14 if judge == "verify" else 20)


VERIFY_ARGS = ["--atol", "0.01", "--rtol", "0.02", "--sites", "all", "--runs", "2"]
VERIFY_ARGS += ["--verbose", "--provider-option", "cuda:device_id=0", "--save-failing", "fails"]
BENCH_ARGS = ["--pairs", "3", "--warmup", "1", "--margin", "2", "--calibrate", "--batch", "2"]
BENCH_ARGS += ["--inter-threads", "1", "--no-spinning", "--include-copies", "--fail-if-slower=4"]
SHARED_ARGS = ["--seed", "7", "--threads", "1", "--providers", "cpu", "--dim", "N=2"]


def test_optimize_hands_each_judge_what_its_own_command_would(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify_calls, bench_calls = _record(monkeypatch, "verify"), _record(monkeypatch, "bench")
    model = str(model_path)
    for args in (
        ["verify", model, model, *VERIFY_ARGS, *SHARED_ARGS],
        ["bench", model, model, *BENCH_ARGS, *SHARED_ARGS],
        ["optimize", model, "--verify", "--bench", *VERIFY_ARGS, *BENCH_ARGS, *SHARED_ARGS],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    for call in (*verify_calls, *bench_calls):
        call["original"] = str(call["original"])  # optimize passes a Path
    by_command, by_optimize = verify_calls
    assert by_command.pop("candidate") == model and by_optimize.pop("candidate") != model
    assert "levels" not in by_optimize  # optimize leaves each judge its own default
    by_command.pop("levels")
    assert by_optimize == by_command and by_command["atol"] == 0.01 and by_command["seed"] == 7
    by_command, by_optimize = bench_calls
    assert by_command.pop("candidate") == model and by_optimize.pop("candidate") != model
    assert "levels" not in by_optimize
    by_command.pop("levels")
    assert by_optimize == by_command and by_command["pairs"] == 3 and by_command["threads"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "3"], "--pairs is an option of --bench, which is not given"),
        (["--verify", "--no-spinning"], "--spinning/--no-spinning is an option of --bench"),
        (["--bench", "--atol", "1"], "--atol is an option of --verify, which is not given"),
        (["--seed", "3"], "--seed is an option of --verify or --bench"),
        (["--dim", "N=2"], "--dim is an option of --verify or --bench"),
        (["--verify", "--plot", "p.png"], "--plot is an option of --bench"),
    ],
)
def test_a_judge_option_without_its_judge_is_a_usage_error(
    model_path: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["optimize", str(model_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "(add --" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "m.folded.onnx").exists()


def test_reports_of_optimize_keep_the_verify_and_bench_results(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_bench(monkeypatch)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report, markdown = tmp_path / "r.json", tmp_path / "r.md"
    args = ["optimize", str(model_path), "--verify", "--bench", "--dim", "N=2", "--providers"]
    args += ["cpu", "--report", str(report), "--markdown", str(markdown)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["folds"][0]["bn"] == "bn" and data["bench"] == {"recorded": "bench"}
    assert data["verify"]["passed"] is True and data["verify"]["inputs"][0]["shape"] == [2, 3, 4, 4]
    text = markdown.read_text()
    assert text.index("bn") < text.index("### bnfold verify: ✅ equivalent")
    assert text.index("### bnfold verify") < text.index("### recorded bench")
    assert summary.read_text() == "earlier step\n" + text + "\n"


@pytest.mark.usefixtures("wrong_fold")
def test_a_failed_verification_is_in_the_report_too(model_path: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    args = ["optimize", str(model_path), "--verify", "--dim", "N=2", "--providers", "cpu"]
    result = CliRunner().invoke(
        main, [*args, "--save-failing", str(tmp_path), "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert data["verify"]["passed"] is False and "bench" not in data
    assert not (tmp_path / "m.folded.onnx").exists()


def test_fail_if_slower_through_optimize_exits_5_after_writing_everything(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_bench(monkeypatch)

    def slower(self: RecordedReport) -> None:
        raise bnfold.errors.CandidateSlower("cpu/all: slower")

    monkeypatch.setattr(RecordedReport, "raise_for_status", slower)
    report = tmp_path / "r.json"
    args = ["optimize", str(model_path), "--bench", "--fail-if-slower", "--dim", "N=2"]
    result = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert result.exit_code == 5, result.output
    assert calls[0]["fail_if_slower"] is True  # alone: the margin
    assert (tmp_path / "m.folded.onnx").exists() and json.loads(report.read_text())["bench"]

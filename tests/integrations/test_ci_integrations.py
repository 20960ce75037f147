"""The CI integrations: the pre-commit hook (through ``pre-commit try-repo``) and the composite
GitHub Action's script (``scripts/bnfold-action.sh``, run as the action runs it).

The hook test installs bnfold into pre-commit's own environment from a copy of this checkout,
as a user's ``pre-commit`` would from the repository; it is skipped when pre-commit is not
installed (``pip install pre-commit``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bnfold

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bnfold-action.sh"
MODEL = ROOT / "models" / "resnet_tiny.onnx"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """original.onnx (with foldable BN), folded.onnx, wrong.onnx (folded, first Conv off by 5%)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = tmp_path_factory.mktemp("models")
    paths = {name: folder / f"{name}.onnx" for name in ("original", "folded", "wrong")}
    shutil.copy(MODEL, paths["original"])
    bnfold.optimize(MODEL).save(paths["folded"])
    wrong = onnx.load(str(paths["folded"]))
    conv = next(n for n in wrong.graph.node if n.op_type == "Conv")
    weight = next(t for t in wrong.graph.initializer if t.name == conv.input[1])
    array = numpy_helper.to_array(weight).copy()
    array *= np.float32(1.05)
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(wrong, str(paths["wrong"]))
    return paths


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def _pre_commit() -> str | None:
    found = shutil.which("pre-commit", path=str(BIN)) or shutil.which("pre-commit")
    return found


@pytest.mark.slow
@pytest.mark.skipif(_pre_commit() is None, reason="pre-commit is not installed")
@pytest.mark.slow
def test_pre_commit_hook_through_try_repo(tmp_path, models):
    hook_repo = tmp_path / "bnfold-repo"
    hook_repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, hook_repo / name)
    shutil.copytree(
        ROOT / "bnfold", hook_repo / "bnfold", ignore=shutil.ignore_patterns("__pycache__")
    )
    _git(hook_repo, "init", "-q")
    _git(hook_repo, "add", ".")
    _git(hook_repo, "commit", "-q", "-m", "bnfold")

    user_repo = tmp_path / "user-repo"
    user_repo.mkdir()
    shutil.copy(models["original"], user_repo / "unfolded.onnx")
    shutil.copy(models["folded"], user_repo / "folded.onnx")
    (user_repo / "notes.txt").write_text("not a model\n")
    _git(user_repo, "init", "-q")
    _git(user_repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"

    def try_repo(*files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_pre_commit()), "try-repo", str(hook_repo), "bnfold-check", "--files", *files],
            cwd=user_repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    both = try_repo("unfolded.onnx", "folded.onnx", "notes.txt")
    assert both.returncode == 1, both.stdout + both.stderr
    assert re.search(r"error: (unfolded.onnx: )?6 BatchNormalization.* can be folded", both.stdout)
    assert "FAIL: unfolded.onnx: 6 foldable BatchNormalization remain" in both.stdout
    assert "run `bnfold optimize unfolded.onnx`" in both.stdout
    assert "ok: folded.onnx: no foldable BatchNormalization left" in both.stdout  # checked too
    assert "notes.txt" not in both.stdout  # only *.onnx reach the hook

    folded_only = try_repo("folded.onnx")
    assert folded_only.returncode == 0, folded_only.stdout + folded_only.stderr
    assert "Passed" in folded_only.stdout


def _run_action(
    tmp_path: Path, candidate: Path | str, original: Path | None = None, **extra: str
) -> tuple[subprocess.CompletedProcess[str], Path, Path, Path]:
    summary, output, reports = tmp_path / "summary.md", tmp_path / "output.txt", tmp_path / "rep"
    env = {
        **os.environ,
        "BNFOLD": str(BIN / "bnfold"),
        "BNFOLD_CANDIDATE": str(candidate),
        "BNFOLD_ORIGINAL": str(original or ""),
        "BNFOLD_REPORT_DIR": str(reports),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        **extra,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    return result, summary, output, reports


@pytest.mark.slow
def test_action_script_passes_a_folded_equivalent_model(tmp_path, models):
    result, summary, output, reports = _run_action(tmp_path, models["folded"], models["original"])
    assert result.returncode == 0, result.stdout + result.stderr
    text = summary.read_text()
    assert "| `bnfold check` | passed |" in text
    assert "| `bnfold verify` (cpu; levels disable,all) | passed |" in text
    assert "### bnfold check: " in text  # check's own Markdown was appended
    verify = json.loads((reports / "verify.json").read_text())
    assert verify["passed"] and {p["level"] for p in verify["providers"]} == {"disable", "all"}
    assert json.loads((reports / "check.json").read_text())["folds"] == []
    assert (reports / "verify.md").is_file()
    assert output.read_text() == f"report-dir={reports}\n"


@pytest.mark.slow
def test_action_script_fails_on_foldable_bn_and_still_verifies(tmp_path, models):
    result, summary, _, reports = _run_action(tmp_path, models["original"], models["original"])
    assert result.returncode == 1
    text = summary.read_text()
    assert "| `bnfold check` | failed (exit 1) |" in text
    assert "| passed |" in text  # verify of a model against itself still ran and passed
    assert len(json.loads((reports / "check.json").read_text())["folds"]) == 6


@pytest.mark.slow
def test_action_script_fails_on_a_wrong_model_and_keeps_the_inputs(tmp_path, models):
    result, summary, _, reports = _run_action(tmp_path, models["wrong"], models["original"])
    assert result.returncode == 1
    assert "| `bnfold check` | passed |" in summary.read_text()
    assert "bnfold verify` (cpu; levels disable,all) | failed (exit 1) |" in summary.read_text()
    assert not json.loads((reports / "verify.json").read_text())["passed"]
    assert list(reports.glob("*.npz")), "the failing input set is kept for the artifact"


def test_action_script_without_original_only_checks(tmp_path, models):
    result, summary, _, reports = _run_action(tmp_path, models["folded"])
    assert result.returncode == 0
    assert "skipped (no original given)" in summary.read_text()
    assert not (reports / "verify.json").exists()


@pytest.mark.slow
def test_action_script_errors(tmp_path, models):
    missing, *_ = _run_action(tmp_path, "")
    assert missing.returncode == 2 and "candidate model is required" in missing.stderr
    unavailable, *_ = _run_action(
        tmp_path, models["folded"], models["original"], BNFOLD_PROVIDERS="no-such-provider"
    )
    assert unavailable.returncode not in (0, 1)


def _path_without_bnfold() -> str:
    """PATH with every folder holding a ``bnfold`` (an active venv, a user install) left out."""
    folders = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]
    kept = [f for f in dict.fromkeys(folders) if f and not (Path(f) / "bnfold").exists()]
    return os.pathsep.join(kept)


def _readme_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BNFOLD", "GITHUB_"))}
    env.pop("VIRTUAL_ENV", None)
    return {**env, "PATH": _path_without_bnfold(), **extra}


@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "bnfold").exists(), reason="needs the checkout's .venv"
)
def test_action_script_as_the_readme_runs_it_finds_the_checkouts_bnfold(tmp_path, models):
    # README: `BNFOLD_ORIGINAL=... BNFOLD_CANDIDATE=... scripts/bnfold-action.sh` after
    # `make demo`, no venv active: the script finds .venv/bin/bnfold itself.
    env = _readme_env(BNFOLD_CANDIDATE=str(models["folded"]))
    result = subprocess.run(
        [str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "bnfold-reports" / "check.json").is_file()


def test_action_script_without_any_bnfold_says_how_and_leaves_no_folder(tmp_path, models):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    script = checkout / "scripts" / SCRIPT.name
    shutil.copy(SCRIPT, script)  # a checkout without .venv
    env = _readme_env(BNFOLD_CANDIDATE=str(models["folded"]))
    result = subprocess.run(
        [str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 127
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bnfold not found")
    assert "make demo" in lines[0] and "pip install" in lines[0] and "BNFOLD=" in lines[0]
    assert not (tmp_path / "bnfold-reports").exists()

    wrong = subprocess.run(
        [str(script)],
        cwd=tmp_path,
        env={**env, "BNFOLD": str(tmp_path / "no-such-bnfold")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 127 and "at BNFOLD=" in wrong.stderr
    assert not (tmp_path / "bnfold-reports").exists()


def test_action_yml_runs_the_script_with_its_inputs():
    yaml = pytest.importorskip("yaml")
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"original", "candidate", "providers", "levels"}
    steps = action["runs"]["steps"]
    run_step = next(s for s in steps if s.get("id") == "bnfold")
    assert "scripts/bnfold-action.sh" in run_step["run"]
    for name in ("candidate", "original", "providers", "levels"):
        assert f"inputs.{name}" in json.dumps(run_step["env"])
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["if"].startswith("always()")
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [hook["id"] for hook in hooks] == ["bnfold-check"]
    assert hooks[0]["files"] == r"\.onnx$"

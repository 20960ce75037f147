"""Environment problems are named as such, with the repair (exit 8), never 'a bug in bnfold':
a broken onnxruntime install, a Python without bnfold's dependencies, Ctrl-C while starting."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnfold.cli import main
from bnfold.errors import EXIT_CODES, EnvironmentProblem
from bnfold.runtime import providers

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "resnet_tiny.onnx"


def test_exit_code_8_is_documented() -> None:
    assert EnvironmentProblem.exit_code == 8 and 8 in EXIT_CODES
    assert "| 8 | environment problem" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("broken", [None, types.ModuleType("onnxruntime")])
def test_a_broken_onnxruntime_is_an_environment_problem(
    broken: types.ModuleType | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # None: `import onnxruntime` raises ImportError; an empty module: no InferenceSession
    # (what onnxruntime and onnxruntime-gpu both installed, one removed, leave behind).
    monkeypatch.setitem(sys.modules, "onnxruntime", broken)
    with pytest.raises(EnvironmentProblem, match="pip install --force-reinstall onnxruntime"):
        providers.import_onnxruntime()
    result = CliRunner().invoke(main, ["verify", str(MODEL), str(MODEL)])
    assert result.exit_code == 8, result.output
    assert "internal error" not in result.output and "bug" not in result.output
    assert "pip install --force-reinstall onnxruntime" in result.output


def test_cli_py_without_the_dependencies_says_how_to_get_them() -> None:
    # -S: no site-packages (click, onnx, numpy absent); -E: no PYTHONPATH. bnfold itself is
    # importable from the checkout, as for `python cli.py` with no venv active.
    result = subprocess.run(
        [sys.executable, "-S", "-E", str(ROOT / "cli.py"), "optimize", str(MODEL)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 8, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bnfold's dependency")
    assert "make demo" in lines[0] and "pip install -e ." in lines[0]


_START_UP = """
import sys
class Trap:
    def find_spec(self, name, path=None, target=None):
        if name == "onnx":
            raise {exc}
sys.meta_path.insert(0, Trap())
sys.argv = ["bnfold", "check", {model!r}]
from bnfold.cli import main
main()
"""


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        ("KeyboardInterrupt", 130, "interrupted while starting"),
        ("ImportError('no onnx', name='onnx')", 8, "dependency `onnx` cannot be imported"),
    ],
)
def test_the_import_phase_is_handled_like_a_command(exc: str, code: int, words: str) -> None:
    source = _START_UP.format(exc=exc, model=str(MODEL))
    result = subprocess.run(
        [sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr

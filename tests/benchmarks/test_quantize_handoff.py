"""``benchmarks/quantize_handoff.py`` on tiny models: the structure it reports, never its timings.

The script is loaded as a module (it is not a package) and run at its smallest settings: one
session of two runs, 8 channels, 8×8 maps, Dense width 16. What is asserted is what the
quantized graphs hold (float islands, int8 kernels) and a cosine bound: the thresholds of
issue 25 that do not depend on the machine. The Keras model (slow: Keras and torch load) is
skipped without the keras extra.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quantize_handoff.py"
TINY = ("--channels", "8", "--size", "8", "--width", "16", "--batch", "4")
TINY_TIMING = ("--sessions", "1", "--runs", "2", "--calibration", "4", "--eval", "2")
LAYERS = 4  # Conv → Relu → BN blocks of the #9938 model


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quantize_handoff", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def settings(script: ModuleType) -> object:
    return script.Settings(
        channels=8, size=8, width=16, batch=4, calibration=4, eval=2, sessions=1, runs=2
    )


def test_every_form_but_the_kept_bn_quantizes_fully(script: ModuleType, settings: object) -> None:
    original = script.conv_relu_bn(settings)
    forms = {label: script.conv_relu_bn(settings, form) for label, form in script.FORMS.items()}
    rows = {row.pipeline: row for row in script.measure(original, forms, "tiny", settings)}
    kept = rows.pop("nothing (BN kept)")
    assert kept.islands == {"BatchNormalization": LAYERS}
    for label, row in rows.items():
        assert row.islands == {}, label
        assert row.cosine > 0.999, label
    assert rows["BN as 1×1 depthwise Conv"].quantized == {"QLinearConv": 2 * LAYERS}


def test_prep_profile_meets_the_structural_thresholds(script: ModuleType, settings: object) -> None:
    rows, notes = script.run_handoff(settings, keras=False)
    by = {(row.model, row.pipeline): row for row in rows}
    conv = script.CONV_MODEL
    assert by[(conv, script.ALONE)].islands == {"BatchNormalization": LAYERS}  # the gap
    assert by[(conv, script.DEFAULT)].islands == {"BatchNormalization": LAYERS}
    assert "slower-at-level-all" in notes[(conv, script.DEFAULT)]
    for row in (r for r in rows if r.pipeline == script.QUANTIZE):
        alone = by[(row.model, script.ALONE)]
        assert not set(row.islands) & set(script.AFFINE), row.model
        assert row.cosine >= alone.cosine - script.COSINE_SLACK, row.model
    lines = script.done_when(rows)
    assert len(lines) == 5 and all("float BN/Mul/Add left: none (ok)" in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--forms",)], ids=["handoff", "forms"])
def test_script_writes_its_table(tmp_path: Path, mode: tuple[str, ...]) -> None:
    out = tmp_path / "table.md"
    command = [sys.executable, str(SCRIPT), *mode, *TINY, *TINY_TIMING, "--no-keras"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# ") and "Written by `python benchmarks/quantize_handoff.py" in text
    assert text.count("\n| ") >= (4 if mode else 3 * 4)  # a row per form / model × pipeline


@pytest.mark.slow
def test_keras_export_leaves_float_sub_alone_and_nothing_after_bnfold(
    script: ModuleType, settings: object
) -> None:
    exported = script.keras_dense_relu_bn(settings)
    if exported is None:
        pytest.skip("keras is not installed (the keras extra)")
    raw, by_export_keras, note = exported
    assert note == "export_keras: 2 bn-matmul"
    candidates = {script.ALONE: raw, script.DEFAULT: by_export_keras}
    alone, folded = script.measure(raw, candidates, "keras", settings)
    assert alone.islands == {"Sub": 2}  # x − μ of each BN: onnxruntime does not quantize Sub
    assert folded.islands == {} and folded.cosine >= alone.cosine - script.COSINE_SLACK

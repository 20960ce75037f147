"""Free dims get the size a person would deploy: what the layers were built for, else 224 for
an image, else the receptive-field rule; the choice is shown before verify's tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import bnfold
from bnfold.cli import main
from bnfold.runtime import dims
from bnfold.runtime.inputs import input_specs
from bnfold.runtime.shapeprobe import weightless
from tests.builders.sized_nets import (
    attention_mask_model,
    classifier,
    feature_map_model,
    light_model_with_symbolic_size,
    mlp,
    nhwc_classifier,
    sequence_model,
)
from tests.builders.verify_models import save


@pytest.mark.parametrize(
    ("head", "strided", "side", "size", "why"),
    [
        ("gemm", 5, 7, 224, "the size Gemm 'fc' expects after a stride-32 path"),
        ("gemm", 2, 7, 28, "the size Gemm 'fc' expects after a stride-4 path"),
        ("gemm", 3, 5, 40, "the size Gemm 'fc' expects after a stride-8 path"),
        ("matmul", 4, 3, 48, "the size MatMul 'fc' expects after a stride-16 path"),
        ("pool", 3, 7, 56, "the size AveragePool 'pool' expects after a stride-8 path"),
        ("global", 5, 7, 224, "the default for an image input"),
    ],
)
def test_an_image_gets_the_size_its_head_was_built_for(
    head: str, strided: int, side: int, size: int, why: str
) -> None:
    specs, notes = input_specs(classifier(head, strided=strided, side=side))
    assert specs[0].shape == (1, 3, size, size)
    assert notes[0].startswith(f"input 'x' 1x3x{size}x{size}: N set to 1 (the batch); H, W set")
    assert f"H, W set to {size} ({why}" in notes[0]


def test_a_channels_last_image_gets_224_on_its_spatial_axes() -> None:
    specs, _ = input_specs(nhwc_classifier())
    assert specs[0].shape == (1, 224, 224, 3)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("resnet50", "Reshape 'n173' expects after a stride-32 path"),
        ("vgg19", "Reshape 'n37' expects after a stride-32 path"),
        ("inception_v1", "Reshape 'n140' expects after a stride-32 path"),
        ("squeezenet", "the default for an image input"),  # global pool: any size fits
    ],
)
def test_onnx_light_models_made_symbolic_get_224_back(name: str, head: str) -> None:
    """The light models were exported at 1x3x224x224; with N, H, W symbolic the rule finds it."""
    specs, notes = input_specs(light_model_with_symbolic_size(name))
    assert specs[0].shape == (1, 3, 224, 224)
    assert head in notes[0]


@pytest.mark.parametrize(
    ("model", "shape", "why"),
    [
        (mlp, (1, 784), "N set to 1 (the batch); override"),
        (sequence_model, (1, 1, 16), "T set to 1 (no spatial op reads them)"),
        (attention_mask_model, (1, 1, 1, 1), "T set to 1 (no spatial op reads them)"),
        (feature_map_model, (1, 16, 8, 8), "H, W set to 8 (every Conv/pool accepts 4; doubled)"),
    ],
)
def test_models_that_are_not_images_keep_the_old_rule(
    model: Callable[[], onnx.ModelProto], shape: tuple[int, ...], why: str
) -> None:
    specs, notes = input_specs(model())
    assert specs[0].shape == shape
    assert why in notes[0]


def test_options_always_win_over_the_built_size() -> None:
    model = classifier("gemm", strided=2)  # built for 28
    assert input_specs(model, dims={"H": 32, "W": 32})[0][0].shape == (1, 3, 32, 32)
    assert input_specs(model, default_dim=3)[0][0].shape == (3, 3, 3, 3)
    specs, notes = input_specs(model, shapes={"x": (2, 3, 12, 12)})
    assert specs[0].shape == (2, 3, 12, 12) and notes == [n for n in notes if "set to" not in n]
    specs, _ = input_specs(model, dims={"N": 4})
    assert specs[0].shape == (4, 3, 28, 28)


def test_a_chosen_size_is_capped_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dims, "CHOSEN_ELEMENTS_CAP", 3 * 100 * 100)
    specs, notes = input_specs(classifier("global"))
    assert specs[0].shape == (1, 3, 56, 56)  # 224 halved until 3*s*s <= 30,000
    assert "the default for an image input, rank 4 with few channels, 224, capped" in notes[0]


def test_verify_shows_the_input_size_before_its_table(tmp_path: Path) -> None:
    model = classifier("gemm", strided=2)
    folded = bnfold.optimize(model).model
    original, candidate = save(model, tmp_path / "m.onnx"), save(folded, tmp_path / "f.onnx")
    report, data = tmp_path / "r.md", tmp_path / "r.json"
    args = ["verify", str(original), str(candidate), "--providers", "cpu"]
    result = CliRunner().invoke(
        main, [*args, "--markdown", str(report), "--report", str(data)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.index("input 'x' 1x3x28x28: N set to 1") < text.index("bnfold verify:")
    assert "note: input 'x'" not in text  # not repeated after the table
    markdown = report.read_text()
    assert markdown.index("H, W set to 28 (the size Gemm 'fc'") < markdown.index("| provider/level")
    assert markdown.count("input 'x' 1x3x28x28") == 1
    notes = json.loads(data.read_text())
    assert [n[:26] for n in notes["input_notes"]] == ["input 'x' 1x3x28x28: N set"]
    assert not any("1x3x28x28" in note for note in notes["notes"])


def test_probes_copy_the_model_without_its_large_weights() -> None:
    """Dozens of shape-inference probes copy the model: its weights' values stay behind."""
    model = classifier("gemm", strided=2)
    skeleton = weightless(model)
    kept = {t.name: t for t in skeleton.graph.initializer}
    for tensor in model.graph.initializer:
        assert kept[tensor.name].dims == tensor.dims
        assert kept[tensor.name].data_type == tensor.data_type
    assert not kept["fc_w"].raw_data and not kept["fc_w"].float_data  # 15,680 bytes
    assert kept["w0"] == next(t for t in model.graph.initializer if t.name == "w0")  # 864 bytes
    assert list(skeleton.graph.node) == list(model.graph.node)
    assert skeleton.opset_import == model.opset_import and skeleton.ir_version == model.ir_version

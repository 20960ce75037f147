"""``--target default`` writes exactly what bnfold wrote before profiles existed (issue 25).

The hashes are sha256 of the file ``bnfold optimize MODEL -o OUT`` wrote at commit 783fc0d
(the profile skeleton, which still folded every target as default), for the bundled models,
onnx's light backend models that have BatchNormalization, and built graphs. A builder below
must not change: its hash is of its output as it is now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

import bnfold
from tests.builders.conv_bn import conv_bn_model
from tests.builders.verify_models import keras_dense_mul_add
from tests.targets.graphs import BUILT

ROOT = Path(__file__).parents[2]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

FILES = {
    "models/mlp_bn.onnx": "79a5c96b8a4d5e1b0f8cd069b01698771ccfe476eeb6d23c4beed518a2c94455",
    "models/resnet_tiny.onnx": "73b990268e29ed612c8eeb1d0461f1a58bf65359b7c8af154fe48b11f99f24a3",
    "models/unet_tiny.onnx": "8a0fbe3c4412a7f88e413185b3659f827abe022ac97248f546db3d09aec0c814",
}
LIGHT_MODELS = {
    "light_densenet121.onnx": "24f1536a5081c4ff6eb4013a1067744e5ebad120ac25ebd21a8e48cb64dd7cd3",
    "light_inception_v2.onnx": "f95c1fcdb9b67ad11f596d6bc29b61a7cfa5f70b012d1b731cb44262d5712abf",
    "light_resnet50.onnx": "cd78e0536e01e4b9d1d20453855bc7e9d2065fe310c80b0ea207006bc865418e",
    "light_shufflenet.onnx": "27f834b4b575ec1ae5b6b60d694d8c3bd93669c5529d23d76300a23e5809e4a1",
}
BUILT_MODELS: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "conv_bn_model": (
        conv_bn_model,
        "ba4d71e825a6ac5b34d2186cd7cd9e53c4f9af5cd657ca53b91793b434d0f383",
    ),
    "keras_dense_mul_add": (
        keras_dense_mul_add,
        "18fdfe5ec5af3c22d7a5b9a581bde41a20739f725dded4dabbf2fddf458c0a3d",
    ),
    **{
        name: (BUILT[name], digest)
        for name, digest in {
            "conv_relu_bn_stack": "3a42dd086ea9dd0990bcef607a88a7f1919ad2283301d09f43b05721da32257f",
            "dense_relu_bn": "fbe987d77b981bce0a9a8290d970235353ceff21bb5da55c849bb3629db96c2d",
            "dense_relu_mul_add": "50ca53d6c8f2d152bddceb2a270ac4a2759862290dc9aeec8b594a001f6f1cdb",
            "dense_relu_bn_tail": "b950143a5c39e63de3155748361a09a2f224b383c9bcbbb7a2545fec8f2f1fe0",
            "dense_relu_mul_add_tail": "b3710bc3b34f56abf0be9e5adcdfd264a622bf64856e1a16b8b3541ef9a85645",
            "residual_block": "54c986a71ae65b7eb666e316c5dabd6f597c14b2bbaa15c95e2a01ce993d93b8",
            "negative_scale_after_relu": "1c44a300663d3ac928890391e278f2bdb7b7691dda9fc8f63e566324b9dd17b7",
            "bn_on_input": "4bf0733b826c67fb7786c50048f13739994185dd0598427ac01f9a4cfd008dea",
            "bn_of_unknown_rank": "06805259764f89018fe12427728ed01bb09aba3aebec73c92d3b23bcad165de2",
            "conv_relu_mul_add": "28ebbe4b809cd9a711a4f1dfe03758957d2bab6b3308210890ff8ac8e389cfe0",
            "dense_cast_relu_bn": "7a7d26847213e17a7cb118864965014665bab6b3f00ec7508e05081c10c91314",
        }.items()
    },
}


def _written_digest(source: Path, tmp_path: Path, **options: object) -> str:
    target = tmp_path / "out.onnx"
    bnfold.optimize(source, output=target, **options)  # type: ignore[arg-type]
    return hashlib.sha256(target.read_bytes()).hexdigest()


@pytest.mark.parametrize("target", ["default", None])
@pytest.mark.parametrize("name", sorted(FILES))
def test_bundled_model_output_is_unchanged(name: str, target: str | None, tmp_path: Path) -> None:
    options = {} if target is None else {"target": target}
    assert _written_digest(ROOT / name, tmp_path, **options) == FILES[name]


@pytest.mark.parametrize("name", sorted(LIGHT_MODELS))
def test_light_model_output_is_unchanged(name: str, tmp_path: Path) -> None:
    if not (LIGHT / name).exists():
        pytest.skip(f"onnx {onnx.__version__} ships no {name}")
    assert _written_digest(LIGHT / name, tmp_path, target="default") == LIGHT_MODELS[name]


@pytest.mark.parametrize("name", sorted(BUILT_MODELS))
def test_built_graph_output_is_unchanged(name: str, tmp_path: Path) -> None:
    build, digest = BUILT_MODELS[name]
    source = tmp_path / "in.onnx"
    onnx.save(build(), source)
    assert _written_digest(source, tmp_path, target="default") == digest


# --lower-standalone under default: the same forms as before (hashes from 783fc0d too).
LOWERED = {
    (
        "conv_relu_bn_stack",
        "mul-add",
    ): "ed910f36ee8c2d771c6b725768b1304a72d078931f1079fbdf123f7b160b883d",
    (
        "conv_relu_bn_stack",
        "dwconv",
    ): "f457962ff7d7a4f408a9aaf6764f9e0c3c26f8873bbf8a786f0d4e2d9a550095",
    (
        "negative_scale_after_relu",
        "mul-add",
    ): "606836d3d6956f19ca3302f85e728c904ed600062fc08b92fdc442ad666d37fa",
    (
        "negative_scale_after_relu",
        "dwconv",
    ): "e4ead22c4476815239193a4975172cee6d0edb71228e3c631a52f86dd0b71cd9",
    ("bn_on_input", "mul-add"): "9fa3dad6eb082a84675a1ea9119a410aae1ddd29d8c9b1011eb25b5120e34b13",
    ("bn_on_input", "dwconv"): "7ae4d7ff638e1c850af3d01c2e54ee7b01d9a2700cead5a8086b545900a4659d",
}


@pytest.mark.parametrize(("name", "form"), sorted(LOWERED))
def test_lowered_output_is_unchanged(name: str, form: str, tmp_path: Path) -> None:
    source = tmp_path / "in.onnx"
    onnx.save(BUILT[name](), source)
    digest = _written_digest(source, tmp_path, target="default", lower_standalone=form)
    assert digest == LOWERED[(name, form)]

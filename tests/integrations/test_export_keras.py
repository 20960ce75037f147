"""bnfold.export_keras on real Keras 3 models (torch backend, CPU), trained for a step."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import bnfold
from bnfold.errors import UsageError, VerificationFailed

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
HAS_KERAS = importlib.util.find_spec("keras") is not None
needs_keras = pytest.mark.skipif(
    not HAS_KERAS, reason="keras is not installed (pip install 'bnfold[keras]')"
)
pytestmark = pytest.mark.slow


def _trained(model, inputs, outputs):
    model.compile(optimizer="adam", loss="mse")
    model.fit(
        inputs,
        outputs,
        epochs=1,
        batch_size=len(inputs[0] if isinstance(inputs, list) else inputs),
        verbose=0,
    )
    return model


def _mlp():
    import keras

    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((12,)),
            layers.Dense(32, activation="relu", name="dense_0"),
            layers.BatchNormalization(name="bn_0"),
            layers.Dense(16, activation="relu", name="dense_1"),
            layers.BatchNormalization(name="bn_1"),
            layers.Dense(3, name="head"),
        ]
    )
    rng = np.random.default_rng(0)
    return _trained(model, rng.normal(size=(16, 12)).astype("float32"), rng.normal(size=(16, 3)))


def _cnn(bn_after_relu: bool):
    import keras

    layers = keras.layers
    if bn_after_relu:  # Conv -> ReLU -> BN: folds into the next (unpadded) Conv / the head
        body = [
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_0"),
            layers.BatchNormalization(name="bn_0"),
            layers.Conv2D(8, 3, padding="valid", activation="relu", name="conv_1"),
            layers.BatchNormalization(name="bn_1"),
            layers.Conv2D(6, 1, name="conv_2"),
        ]
    else:  # Conv -> BN -> ReLU: folds back into its Conv
        body = [
            layers.Conv2D(8, 3, padding="same", name="conv_0"),
            layers.BatchNormalization(name="bn_0"),
            layers.ReLU(),
            layers.Conv2D(8, 3, padding="same", name="conv_1"),
            layers.BatchNormalization(name="bn_1"),
            layers.ReLU(),
        ]
    model = keras.Sequential(
        [keras.Input((10, 10, 3)), *body, layers.GlobalAveragePooling2D(), layers.Dense(4)]
    )
    rng = np.random.default_rng(1)
    return _trained(
        model, rng.normal(size=(8, 10, 10, 3)).astype("float32"), rng.normal(size=(8, 4))
    )


def _two_heads():
    import keras

    layers = keras.layers
    x = keras.Input((10,), name="features")
    h = layers.Dense(24, activation="relu", name="trunk")(x)
    h = layers.BatchNormalization(name="trunk_bn")(h)
    a = layers.Dense(2, name="head_a")(h)
    b = layers.Dense(5, name="head_b")(h)
    model = keras.Model(x, [a, b])
    rng = np.random.default_rng(2)
    data = rng.normal(size=(16, 10)).astype("float32")
    model.compile(optimizer="adam", loss=["mse", "mse"])
    model.fit(data, [rng.normal(size=(16, 2)), rng.normal(size=(16, 5))], epochs=1, verbose=0)
    return model


MODELS = {
    "mlp": (_mlp, (4, 12)),
    "cnn-bn-relu": (lambda: _cnn(False), (2, 10, 10, 3)),
    "cnn-relu-bn": (lambda: _cnn(True), (2, 10, 10, 3)),
    "two-heads": (_two_heads, (4, 10)),
}


def _noop_casts(model: onnx.ModelProto) -> int:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.input})
    return sum(
        1
        for n in model.graph.node
        if n.op_type == "Cast" and types.get(n.input[0]) == n.attribute[0].i
    )


@needs_keras
@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_keras_folds_every_bn_and_matches_predict(name, tmp_path):
    build, shape = MODELS[name]
    model = build()
    sample = np.random.default_rng(3).normal(size=shape).astype("float32")
    path = tmp_path / "model.onnx"
    result = bnfold.export_keras(model, path, sample=sample)
    written = onnx.load(str(path))
    ops = [n.op_type for n in written.graph.node]
    assert "BatchNormalization" not in ops
    assert "Sub" not in ops and "Mul" not in ops, ops  # no BN-equivalent chain left
    assert _noop_casts(written) == 0 and result.report.counts["noop_casts_removed"] > 0
    assert result.verification.passed
    for check in result.verification.outputs.values():
        assert check.max_abs_error is not None and check.max_abs_error < 1e-4
    assert not result.report.skipped
    bn_folds = [fold for fold in result.report.folds if "Mul" in fold.kind]
    assert len(bn_folds) == result.batchnorm_layers
    bn_layers = {
        layer.name for layer in model.layers if "BatchNormalization" in type(layer).__name__
    }
    assert {fold.bn for fold in bn_folds} == bn_layers  # named by Keras layer
    layer_names = {layer.name for layer in model.layers}
    assert all(set(fold.into.split(", ")) <= layer_names for fold in result.report.folds)
    assert result.report.counts["nodes_after"] < result.nodes_exported
    assert '"passed": true' in result.to_json()


@needs_keras
def test_a_corrupted_fold_raises_and_writes_nothing(tmp_path, monkeypatch):
    from bnfold.integrations import keras_export

    real_optimize = keras_export.optimize

    def corrupting(model, **kwargs):
        result = real_optimize(model, **kwargs)
        folded = result.model
        matmul = [n for n in folded.graph.node if n.op_type == "MatMul"][1]  # BN folded in
        weight = next(t for t in folded.graph.initializer if t.name == matmul.input[1])
        array = onnx.numpy_helper.to_array(weight).copy()
        array[0] *= 1.01
        weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
        return bnfold.optimize(folded, **kwargs)

    monkeypatch.setattr(keras_export, "optimize", corrupting)
    path = tmp_path / "model.onnx"
    with pytest.raises(VerificationFailed) as caught:
        bnfold.export_keras(_mlp(), path)
    assert "nothing was written" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_missing_keras_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(UsageError, match="needs keras"):
        bnfold.export_keras(object(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


TENSORFLOW_SCRIPT = """
import os; os.environ["KERAS_BACKEND"] = "tensorflow"
import sys, numpy as np, keras, bnfold
m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                      keras.layers.BatchNormalization(), keras.layers.Dense(2)])
m.compile("adam", "mse"); m.fit(np.ones((8, 6)), np.ones((8, 2)), epochs=1, verbose=0)
r = bnfold.export_keras(m, sys.argv[1])
assert r.backend == "tensorflow" and r.verification.passed and r.report.folds, r.to_json()
"""


@needs_keras
@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None,
    reason="the TensorFlow backend needs tensorflow-cpu and tf2onnx, which the test extra "
    "does not install (whether they fit CI's install time was not tried)",
)
def test_export_keras_on_the_tensorflow_backend(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_SCRIPT, str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]

"""A fold into a MatMul whose bias Add sits behind exporters' no-op Casts (Keras 3 on torch:
``MatMul → Cast → Add(b)``): ``quantize`` and ``npu`` add ``W·t`` to that bias, so each
folded Dense stays ``MatMul → Add``; ``default`` adds its own Add (its output is pinned), which
leaves two Adds in a row once the Cast is removed. Every fold is run with onnxruntime against
the original."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import bnfold
from tests.builders.graphs import assert_equivalent, op_types
from tests.targets.graphs import dense_cast_relu_bn, dense_relu_bn

MERGING = ("quantize", "npu")


def _fold(model: onnx.ModelProto, target: str) -> bnfold.OptimizeResult:
    result = bnfold.optimize(model, target=target)
    assert_equivalent(model, result.model)
    return result


@pytest.mark.parametrize("target", MERGING)
def test_the_fold_goes_into_the_bias_behind_the_casts(target: str) -> None:
    result = _fold(dense_cast_relu_bn(), target)
    assert [fold.pattern for fold in result.report.folds] == ["bn-matmul"]
    assert op_types(result.model) == ["MatMul", "Add", "Relu", "MatMul", "Add"]
    # The same bytes as folding the graph without Casts: nothing of them is left.
    plain = bnfold.optimize(dense_relu_bn(), target=target).model
    assert result.model.SerializeToString() == plain.SerializeToString()


def test_default_adds_its_own_bias() -> None:
    result = _fold(dense_cast_relu_bn(), "default")
    assert [fold.pattern for fold in result.report.folds] == ["bn-matmul"]
    assert op_types(result.model) == ["MatMul", "Add", "Relu", "MatMul", "Add", "Add"]


def _cast_read_twice() -> onnx.ModelProto:
    """``dense_cast_relu_bn`` whose head's Cast output is also a second graph output."""
    model = dense_cast_relu_bn()
    model.graph.output.append(helper.make_tensor_value_info("d2c", TensorProto.FLOAT, ["N", 4]))
    return model


def _real_cast() -> onnx.ModelProto:
    """The head's first Cast is to float64 (its bias Add runs in float64): no identity."""
    return dense_cast_relu_bn(head_type=TensorProto.DOUBLE)


@pytest.mark.parametrize("target", MERGING)
@pytest.mark.parametrize("build", [_cast_read_twice, _real_cast], ids=["read-twice", "real-cast"])
def test_a_cast_that_is_not_the_identity_path_keeps_the_new_add(build, target: str) -> None:
    """A Cast whose output another reader sees, or one that changes the type: the bias behind
    it is not the MatMul's alone (or not in its type), so the fold adds its own Add."""
    model = build()
    result = _fold(model, target)
    assert [fold.pattern for fold in result.report.folds] == ["bn-matmul"]
    head = op_types(result.model)[3:]
    assert head[:2] == ["MatMul", "Add"] and head.count("Add") == 2


def _keras_export(keras: ModuleType) -> onnx.ModelProto:
    """Keras 3's own ONNX export (torch backend) of Dense(relu) → BN → Dense(relu) → BN → Dense,
    BN statistics as if trained."""
    keras.utils.set_random_seed(25)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )
    rng = np.random.default_rng(25)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta = rng.uniform(0.3, 2.0, 16), rng.standard_normal(16)
            mean, var = 0.5 * rng.standard_normal(16), rng.uniform(0.2, 3.0, 16)
            layer.set_weights([w.astype("float32") for w in (gamma, beta, mean, var)])
    model(np.zeros((4, 12), np.float32))  # Keras exports only a model once called
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keras.onnx"
        model.export(str(path), format="onnx", verbose=False)
        return onnx.load(path)


@pytest.mark.slow
@pytest.mark.parametrize("target", MERGING)
def test_keras_torch_export_keeps_one_bias_add_per_dense(target: str) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
    keras = pytest.importorskip("keras")  # the keras extra, and torch for its backend
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on {keras.backend.backend()}; the export under test is torch's")
    original = _keras_export(keras)
    assert "Cast" in op_types(original)
    result = _fold(original, target)
    assert [fold.pattern for fold in result.report.folds] == ["bn-matmul"] * 2
    assert op_types(result.model) == ["MatMul", "Add", "Relu"] * 2 + ["MatMul", "Add"]

"""The safety net: a fold that would make the model invalid is refused, never written.

No pattern is known to produce an invalid model any more, so the test breaks one on purpose
(a folded weight that lost an output channel) and checks that exactly that fold is refused
with ``self-check-failed``, the other folds are kept, and the output is valid and exact.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from bnfold.patterns.conv_bn import ConvBatchNorm
from tests.builders.graphs import assert_equivalent, fold, make_model, random_bn_params, tensor


def _two_conv_bn_blocks() -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    names = []
    inits = []
    nodes = []
    source = "x"
    for block in ("good", "bad"):
        params = [f"{block}_{p}" for p in ("gamma", "beta", "mean", "var")]
        nodes += [
            helper.make_node("Conv", [source, f"{block}_W"], [f"{block}_y"], name=f"{block}_conv"),
            helper.make_node(
                "BatchNormalization", [f"{block}_y", *params], [f"{block}_z"], name=f"{block}_bn"
            ),
        ]
        inits += [rng.standard_normal([4, 4, 1, 1]).astype(np.float32), *random_bn_params(rng, 4)]
        names += [f"{block}_W", *params]
        source = f"{block}_z"
    return make_model(
        nodes, [tensor("x", [1, 4, 3, 3])], [tensor("bad_z", [1, 4, 3, 3])], inits, names=names
    )


def test_a_fold_that_breaks_the_model_is_refused_and_the_rest_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = ConvBatchNorm.scaled_weight

    def broken(self, layer, scale):  # type: ignore[no-untyped-def]
        weight = original(self, layer, scale)
        return weight[:-1] if layer.node.name == "bad_conv" else weight

    monkeypatch.setattr(ConvBatchNorm, "scaled_weight", broken)
    model = _two_conv_bn_blocks()
    result = fold(model)
    assert [f.bn for f in result.report.folds] == ["good_bn"]
    assert [(s.bn, s.reason) for s in result.report.skipped] == [("bad_bn", "self-check-failed")]
    assert "onnx checker" in result.report.skipped[0].detail
    onnx.checker.check_model(result.model, full_check=True)
    assert_equivalent(model, result.model)


def test_clean_folds_are_all_kept() -> None:
    model = _two_conv_bn_blocks()
    result = fold(model)
    assert sorted(f.bn for f in result.report.folds) == ["bad_bn", "good_bn"]
    assert not result.report.skipped

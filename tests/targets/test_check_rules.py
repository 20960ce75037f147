"""``check --target`` lints what the profile would reject (issue 25): a model passes its
profile's check once that profile has folded it, and fails another profile's check exactly
where that profile would still change it or keep a BatchNormalization."""

from __future__ import annotations

import onnx
import pytest

import bnfold
from bnfold.engine.checks import CheckReport
from bnfold.engine.targets import TARGET_NAMES
from tests.targets.graphs import BUILT

NUMERIC = sorted(set(BUILT) - {"bn_of_unknown_rank"})
# What default leaves that quantize and npu change: kept splits on 4-D maps, a BN nothing
# folds into (each lowered by them).
DEFAULT_LEAVES = {
    "conv_relu_bn_stack": "conv-bn-split ×4",
    "conv_relu_mul_add": "conv-bn-split",
    "residual_block": "conv-bn-split",
    "negative_scale_after_relu": "lower-standalone",
    "bn_on_input": "lower-standalone",
}


def _check(model: onnx.ModelProto, target: str) -> CheckReport:
    return CheckReport(bnfold.check(model, target=target))


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("name", NUMERIC)
def test_a_profile_passes_what_it_wrote(name: str, target: str) -> None:
    folded = bnfold.optimize(BUILT[name](), target=target).model
    assert _check(folded, target).passed


@pytest.mark.parametrize("target", ["quantize", "npu"])
@pytest.mark.parametrize("name", NUMERIC)
def test_default_output_fails_where_the_profile_would_change_it(name: str, target: str) -> None:
    folded = bnfold.optimize(BUILT[name](), target="default").model
    check = _check(folded, target)
    assert check.passed == (name not in DEFAULT_LEAVES)
    assert check.target_reasons() == DEFAULT_LEAVES.get(name, "")
    assert _check(folded, "default").passed


@pytest.mark.parametrize("target", ["quantize", "npu"])
def test_a_kept_batchnorm_fails_with_its_reason(target: str) -> None:
    check = _check(BUILT["bn_of_unknown_rank"](), target)
    assert not check.passed and not check.report.must_fold
    assert [skip.reason for skip in check.kept_batchnorms] == ["not-lowerable"]
    assert check.target_reasons() == "not-lowerable"
    assert f"--target {target} rejects: not-lowerable" in check.line()
    assert _check(BUILT["bn_of_unknown_rank"](), "default").passed

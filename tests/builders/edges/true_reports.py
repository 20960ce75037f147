"""Issue 22's false reports, as edge cases: every name and reason in a report is true.

- a ``bn-affine`` merge into a BN that then folds on (into a layer, or merged again) names
  where it finally went (``into``) and the BN it went through (``via``); unnamed BNs keep
  their input labels though a merge renames the merged BN's output;
- a BN after a BN that is kept for its own reason is refused for itself
  (``no-linear-producer``, the other BN's reason in the detail);
- a BN before a ConvTranspose says why the ConvTranspose takes no fold from its input side.
(``--disable`` and the reason table: ``tests/engine/test_true_reports.py``.)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from tests.builders.edges.build import (
    FOLDED,
    EdgeCase,
    array,
    bn_node,
    bn_params,
    build_model,
    normal_feeds,
    outcome,
    value,
    weights,
)


def _fold_of(result: object, bn: str):  # type: ignore[no-untyped-def]
    (fold,) = [f for f in result.report.folds if f.bn == bn]  # type: ignore[attr-defined]
    return fold


def _merges_then_conv(named: bool, seed: int) -> EdgeCase:
    """``x → bn1 → bn2 → bn3 → Conv → y``: bn2 and bn3 merge into bn1, which folds into the
    Conv; every merge names the Conv and goes ``via`` bn1."""
    rng = np.random.default_rng(seed)

    def name(text: str) -> str:
        return text if named else ""

    nodes = [
        bn_node("x", "t1", "a", name=name("bn1")),
        bn_node("t1", "t2", "b", name=name("bn2")),
        bn_node("t2", "t3", "c", name=name("bn3")),
        helper.make_node("Conv", ["t3", "W"], ["y"], kernel_shape=[1, 1], name=name("conv")),
    ]
    inits = [
        *bn_params(rng, 4, prefix="a"),
        *bn_params(rng, 4, prefix="b"),
        *bn_params(rng, 4, prefix="c"),
        array(weights(rng, [3, 4, 1, 1]), "W"),
    ]
    model = build_model(nodes, [value("x", [1, 4, 3, 3])], ["y"], inits)
    labels = [n.name or f"<BatchNormalization:{n.output[0]}>" for n in nodes[:3]]
    conv = "conv" if named else "<Conv:y>"

    def merged_names_the_conv(original: onnx.ModelProto, result: object) -> None:
        assert _fold_of(result, labels[0]).into == conv
        for merged in labels[1:]:
            fold = _fold_of(result, merged)
            assert (fold.pattern, fold.into, fold.via) == ("bn-affine", conv, [labels[0]])

    return EdgeCase(
        f"bn-merges-then-conv-{'named' if named else 'unnamed'}",
        model,
        [normal_feeds(rng, {"x": [1, 4, 3, 3]})],
        dict.fromkeys(labels, outcome(FOLDED)),
        extra=merged_names_the_conv,
    )


def named_merges_then_conv() -> EdgeCase:
    return _merges_then_conv(True, 220)


def unnamed_merges_then_conv() -> EdgeCase:
    return _merges_then_conv(False, 221)


def merge_into_a_kept_bn() -> EdgeCase:
    """``x → bn1 → bn2 → Relu → y``: bn2 merges into bn1, which stays (nothing to fold
    into): the merge names bn1 as the written model does (unnamed, it now has bn2's output
    ``t2``, so its label is bn2's in the input), and no ``via``."""
    rng = np.random.default_rng(222)
    nodes = [
        bn_node("x", "t1", "a"),
        bn_node("t1", "t2", "b"),
        helper.make_node("Relu", ["t2"], ["y"]),
    ]
    inits = [*bn_params(rng, 4, prefix="a"), *bn_params(rng, 4, prefix="b")]
    model = build_model(nodes, [value("x", [1, 4, 3])], ["y"], inits)

    def names_the_kept_bn(original: onnx.ModelProto, result: object) -> None:
        fold = _fold_of(result, "<BatchNormalization:t2>")
        (kept,) = result.report.skipped  # type: ignore[attr-defined]
        assert fold.into == kept.bn and not fold.via, (fold, kept)

    return EdgeCase(
        "bn-merge-into-kept-bn",
        model,
        [normal_feeds(rng, {"x": [1, 4, 3]})],
        {"<BatchNormalization:t2>": outcome(FOLDED)},
        extra=names_the_kept_bn,
    )


def bn_after_a_bn_with_runtime_variance() -> EdgeCase:
    """``x → bn1 (variance a graph input) → bn2 → Relu``: bn1 is kept for its own reason;
    bn2 is refused as itself (nothing before it takes the merge), not with bn1's code."""
    rng = np.random.default_rng(223)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "ag", "ab", "am", "var"], ["t"], name="bn1"),
        bn_node("t", "u", "b", name="bn2"),
        helper.make_node("Relu", ["u"], ["y"]),
    ]
    inits = [*bn_params(rng, 4, prefix="a")[:3], *bn_params(rng, 4, prefix="b")]
    model = build_model(nodes, [value("x", [1, 4, 3]), value("var", [4])], ["y"], inits)

    def refused_for_itself(original: onnx.ModelProto, result: object) -> None:
        kept = {s.bn: s for s in result.report.skipped}  # type: ignore[attr-defined]
        assert kept["bn2"].reason != kept["bn1"].reason
        assert "input comes from BatchNormalization bn1" in kept["bn2"].detail
        assert kept["bn1"].reason in kept["bn2"].detail

    feeds = normal_feeds(rng, {"x": [1, 4, 3]})
    feeds["var"] = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    return EdgeCase(
        "bn-after-kept-bn",
        model,
        [feeds],
        {"bn2": outcome("no-linear-producer")},
        extra=refused_for_itself,
    )


def bn_before_conv_transpose() -> EdgeCase:
    """``x → BN → ConvTranspose``: no producer, and the consumer is linear but takes no fold
    from its input side; the detail says both."""
    rng = np.random.default_rng(224)
    nodes = [
        bn_node("x", "t", "a", name="bn"),
        helper.make_node("ConvTranspose", ["t", "W"], ["y"], strides=[2, 2], name="up"),
    ]
    inits = [*bn_params(rng, 4, prefix="a"), array(weights(rng, [4, 2, 3, 3]), "W")]
    model = build_model(nodes, [value("x", [1, 4, 3, 3])], ["y"], inits)

    def says_both_sides(original: onnx.ModelProto, result: object) -> None:
        (kept,) = result.report.skipped  # type: ignore[attr-defined]
        assert "graph input" in kept.detail and "ConvTranspose up" in kept.detail
        assert "only from its output side" in kept.detail

    return EdgeCase(
        "bn-before-conv-transpose",
        model,
        [normal_feeds(rng, {"x": [1, 4, 3, 3]})],
        {"bn": outcome("no-linear-producer")},
        extra=says_both_sides,
    )


CASES = [
    named_merges_then_conv,
    unnamed_merges_then_conv,
    merge_into_a_kept_bn,
    bn_after_a_bn_with_runtime_variance,
    bn_before_conv_transpose,
]

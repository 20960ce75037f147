"""A Mul/Add chain (a BN as tf2onnx or torch writes it) that stays is reported like a BN;
a bias Add that stays is not (it is no BN)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.builders.graphs import fold, make_model, tensor


def _chain_after(op: str, *, scale: bool = True) -> object:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node(op, ["x"], ["y"], name="act")]
    inits = {}
    last = "y"
    if scale:
        nodes.append(helper.make_node("Mul", [last, "s"], ["m"], name="mul"))
        inits["s"] = rng.uniform(0.5, 2, [1, 4, 1, 1]).astype(np.float32)
        last = "m"
    nodes.append(helper.make_node("Add", [last, "t"], ["z"], name="add"))
    inits["t"] = rng.standard_normal([1, 4, 1, 1]).astype(np.float32)
    return fold(
        make_model(
            nodes,
            [tensor("x", [1, 4, 3, 3])],
            [tensor("z", None)],
            list(inits.values()),
            names=list(inits),
        )
    )


def test_a_refused_mul_add_chain_is_reported_with_its_kind_and_reason() -> None:
    report = _chain_after("Sigmoid").report  # type: ignore[attr-defined]
    assert [(s.bn, s.kind, s.reason) for s in report.skipped] == [
        ("add", "Mul+Add", "no-linear-producer")
    ]
    assert "Sigmoid" in report.skipped[0].detail
    assert report.to_dict()["skipped"][0]["kind"] == "Mul+Add"
    assert "Mul/Add chain" in report.to_markdown()


def test_a_refused_bias_add_is_not_reported() -> None:
    assert _chain_after("Sigmoid", scale=False).report.skipped == []  # type: ignore[attr-defined]

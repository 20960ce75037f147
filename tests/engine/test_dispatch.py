"""Dispatch by op type: each side of a site walks once per round, and only the patterns of that
side that fold into the op it reached are asked; "not mine" is no refusal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import bnfold
import bnfold.patterns.sides as sides
from bnfold.engine.dispatch import NO_PATTERN, Dispatcher
from bnfold.engine.driver import fold_model
from bnfold.engine.graph import GraphView
from bnfold.engine.outcomes import Skip
from bnfold.engine.protocol import Answer, FoldContext, NotMine, Target
from bnfold.engine.sites import AffineSite
from bnfold.patterns import default_patterns

MODELS = Path(__file__).resolve().parents[2] / "models"
C = 4


def _model(nodes: list[onnx.NodeProto], outputs: list[str], seed: int = 0) -> onnx.ModelProto:
    """``x [1, C, 5, 5]`` into ``nodes``; every ``W*`` a 1×1 Conv weight, every BN its
    parameters (with a positive scale)."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    for node in nodes:
        for name in node.input:
            if name.startswith("W"):
                inits[name] = rng.standard_normal([C, C, 1, 1]).astype(np.float32)
            elif name.startswith(("beta", "mean")):
                inits[name] = rng.standard_normal(C).astype(np.float32)
            elif name.startswith(("gamma", "var")):  # a positive scale: may pass a Relu
                inits[name] = rng.uniform(0.5, 2.0, C).astype(np.float32)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, C, 5, 5])],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bn(x: str, y: str, name: str = "bn") -> onnx.NodeProto:
    return helper.make_node(
        "BatchNormalization", [x, "gamma", "beta", "mean", "var"], [y], name=name
    )


def _conv(x: str, y: str, weight: str, name: str) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, weight], [y], name=name)


class Spy:
    """A pattern that records what it is asked, then answers as the real one."""

    def __init__(self, pattern: Any, asked: list[tuple[str, str]]) -> None:
        self.pattern, self.asked = pattern, asked
        self.name, self.op_type, self.side = pattern.name, pattern.op_type, pattern.side

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return self.pattern.accepts(ctx, site)  # type: ignore[no-any-return]

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Any]) -> Answer:
        self.asked.append((self.name, target.op_type))
        return self.pattern.match(ctx, site, target)  # type: ignore[no-any-return]


def _fold_spied(model: onnx.ModelProto, disabled: tuple[str, ...] = ()) -> Any:
    asked: list[tuple[str, str]] = []
    patterns = [Spy(p, asked) for p in default_patterns(disabled)]
    outcome = fold_model(model, patterns)  # type: ignore[arg-type]
    return outcome, asked


def test_only_the_patterns_for_the_reached_op_are_asked() -> None:
    # Conv -> BN -> Conv: the producer side reaches a Conv; conv-bn folds it.
    model = _model(
        [_conv("x", "y", "W1", "conv1"), _bn("y", "z"), _conv("z", "out", "W2", "conv2")], ["out"]
    )
    outcome, asked = _fold_spied(model)
    assert [fold.pattern for fold in outcome.folds] == ["conv-bn"]
    assert asked == [("conv-bn", "Conv")]  # not gemm-bn, matmul-bn, nor any consumer pattern


def test_the_consumer_side_is_asked_when_the_producer_has_no_pattern() -> None:
    model = _model(
        [_conv("x", "y", "W1", "conv1"), _bn("y", "z"), _conv("z", "out", "W2", "conv2")], ["out"]
    )
    outcome, asked = _fold_spied(model, disabled=("conv-bn",))
    assert [fold.pattern for fold in outcome.folds] == ["bn-conv"]
    # conv-bn is off: its stand-in is asked (to say what it would do) and never plans; the
    # qdq pattern for Conv is asked too and says NotMine (the weight is not quantized).
    assert asked == [("conv-bn", "Conv"), ("qdq-conv-bn", "Conv"), ("bn-conv", "Conv")]


def test_disabled_patterns_leave_no_pattern() -> None:
    model = _model(
        [_conv("x", "y", "W1", "conv1"), _bn("y", "z"), _conv("z", "out", "W2", "conv2")], ["out"]
    )
    outcome, asked = _fold_spied(model, disabled=("conv-bn", "bn-conv"))
    # the stand-ins, never planning (and the qdq pattern for Conv: NotMine, no quantized weight)
    assert asked == [("conv-bn", "Conv"), ("qdq-conv-bn", "Conv"), ("bn-conv", "Conv")]
    assert [(s.bn, s.reason, s.detail) for s in outcome.skipped] == [
        (
            "bn",
            NO_PATTERN.reason,
            "conv-bn would fold it into conv1, but is disabled (--disable conv-bn); "
            "bn-conv would fold it into conv2, but is disabled (--disable bn-conv)",
        )
    ]
    result = bnfold.optimize(model, disable=["conv-bn", "bn-conv"])
    assert [s.reason for s in result.report.skipped] == ["no-pattern"]


def test_a_side_refuses_once_for_all_its_patterns() -> None:
    # x -> BN -> Relu -> out: no producer (a graph input), no linear consumer.
    model = _model([_bn("x", "z"), helper.make_node("Relu", ["z"], ["out"])], ["out"])
    outcome, asked = _fold_spied(model)
    assert asked == []
    (skip,) = outcome.skipped
    assert skip.reason == "no-linear-producer"
    assert skip.detail == "input 'x' is a graph input; 'z' is read by Relu <Relu:out>"


def test_the_split_side_reaches_the_layer_behind_an_activation() -> None:
    # Conv -> Relu -> BN -> out: the producer side stops at Relu; the split side reaches the
    # Conv (and withholds the fold on a 4-D map), the consumer side sees a graph output.
    model = _model(
        [_conv("x", "y", "W1", "conv1"), helper.make_node("Relu", ["y"], ["r"]), _bn("r", "z")],
        ["z"],
    )
    outcome, asked = _fold_spied(model)
    assert asked == [("conv-bn-split", "Conv"), ("qdq-conv-bn-split", "Conv")]
    (skip,) = outcome.skipped
    assert skip.reason == "slower-at-level-all"


# ---- the dispatcher alone, with made-up sides and patterns ---------------------------------
class FakeSide:
    def __init__(self, name: str, reached: Target[Any] | Skip | NotMine) -> None:
        self.name, self.reached, self.calls = name, reached, 0

    def reach(self, ctx: FoldContext, site: AffineSite) -> Target[Any] | Skip | NotMine:
        self.calls += 1
        return self.reached


class FakePattern:
    def __init__(self, name: str, op_type: str, side: FakeSide, answer: Answer) -> None:
        self.name, self.op_type, self.side, self.answer = name, op_type, side, answer
        self.asked, self.accepted = 0, True

    def accepts(self, ctx: FoldContext, site: AffineSite) -> bool:
        return self.accepted

    def match(self, ctx: FoldContext, site: AffineSite, target: Target[Any]) -> Answer:
        self.asked += 1
        return self.answer


def _dispatch(patterns: list[FakePattern]) -> Answer:
    site = AffineSite([helper.make_node("Mul", ["a", "s"], ["b"])], "a", "b", None, 1, 4, False)  # type: ignore[arg-type]
    ctx = FoldContext(view=None)  # type: ignore[arg-type]  # the fakes look at nothing
    return Dispatcher(patterns).fold(ctx, site)  # type: ignore[arg-type]


def test_not_mine_is_no_refusal_and_other_ops_are_not_asked() -> None:
    conv = Target((helper.make_node("Conv", ["a", "w"], ["c"]),), None)
    side = FakeSide("producer", conv)
    gemm = FakePattern("gemm", "Gemm", side, Skip("gemm-refused", "must not be asked"))
    quiet = FakePattern("quiet", "Conv", side, NotMine("no-gain"))
    loud = FakePattern("loud", "Conv", side, Skip("padded", "why"))
    assert _dispatch([gemm, quiet, loud]) == Skip("padded", "why")
    assert (gemm.asked, quiet.asked, loud.asked, side.calls) == (0, 1, 1, 1)
    assert _dispatch([quiet]) == NO_PATTERN


def test_a_refusing_side_asks_no_pattern_and_counts_once() -> None:
    refused = FakeSide("producer", Skip("no-linear-producer", "input 'a' is a graph input"))
    other = FakeSide("consumer", NotMine("several-consumers"))
    first = FakePattern("first", "Conv", refused, Skip("x", "y"))
    second = FakePattern("second", "Gemm", refused, Skip("x", "y"))
    third = FakePattern("third", "*", other, Skip("x", "y"))
    assert _dispatch([first, second, third]) == refused.reached
    assert (first.asked, second.asked, third.asked) == (0, 0, 0)
    assert (refused.calls, other.calls) == (1, 1)


def test_a_side_whose_patterns_decline_the_site_is_not_walked() -> None:
    # bn-affine declines a float16 site before any walk: alone on its side, it says nothing.
    declined = FakeSide("producer", Skip("producer-output-shared", "'a' has 2 uses"))
    bn_affine = FakePattern("bn-affine", "BatchNormalization", declined, Skip("x", "y"))
    bn_affine.accepted = False
    consumer = FakeSide("consumer", Skip("no-linear-consumer", "'b' is read by Relu"))
    bn_conv = FakePattern("bn-conv", "Conv", consumer, Skip("x", "y"))
    assert _dispatch([bn_affine, bn_conv]) == consumer.reached
    assert (declined.calls, bn_affine.asked, consumer.calls) == (0, 0, 1)


# ---- walks: once per side per site per round -----------------------------------------------
@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, int, str]]:
    """Counts each walk by (direction, round, site output); keeps each round's object alive so
    that its id names it."""
    counted: Counter[tuple[str, int, str]] = Counter()
    alive: list[object] = []
    back, forward = sides.walk_back, sides.walk_to_consumers

    def walk_back(view: GraphView, site: AffineSite, **kw: Any) -> Any:
        alive.append(view)
        counted["back", id(view), site.output] += 1
        return back(view, site, **kw)

    def walk_forward(ctx: FoldContext, site: AffineSite) -> Any:
        alive.append(ctx.view)
        counted["forward", id(ctx.view), site.output] += 1
        return forward(ctx, site)

    monkeypatch.setattr(sides, "walk_back", walk_back)
    monkeypatch.setattr(sides, "walk_to_consumers", walk_forward)
    return counted


@pytest.mark.parametrize(
    ("model", "back", "forward"),
    [("mlp_bn.onnx", 3, 1), ("resnet_tiny.onnx", 6, 0), ("unet_tiny.onnx", 5, 0)],
)
def test_each_walk_runs_once_per_site_and_round(
    walks: Counter[tuple[str, int, str]], model: str, back: int, forward: int
) -> None:
    # Before dispatch, mlp_bn.onnx took 17 walks back and 4 forward (every pattern walked).
    bnfold.optimize(MODELS / model)
    assert set(walks.values()) <= {1}, walks
    directions = Counter(direction for direction, _, _ in walks)
    assert (directions["back"], directions["forward"]) == (back, forward)


def test_all_four_sides_share_two_walks(walks: Counter[tuple[str, int, str]]) -> None:
    # Conv -> Relu -> BN -> {Relu, Relu}: the producer, split, consumer and consumers sides are
    # all asked, and nothing folds, so the one round asks each of them.
    nodes = [
        _conv("x", "y", "W1", "conv1"),
        helper.make_node("Relu", ["y"], ["r"]),
        _bn("r", "z"),
        helper.make_node("Relu", ["z"], ["o1"]),
        helper.make_node("Sigmoid", ["z"], ["o2"]),
    ]
    bnfold.optimize(_model(nodes, ["o1", "o2"]))
    assert sorted(walks.values()) == [1, 1]
    assert sorted(direction for direction, _, _ in walks) == ["back", "forward"]

"""The judge against known wrong answers: a 1 % one-slice corruption of a folded layer.

Every corruption must fail and name its site, on the bundled models, on torch-exported nets
and on a model whose softmax output saturates (its final outputs cannot show the wrong fold);
every exact fold must pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import bnfold
from bnfold.verify import verify
from bnfold.verify.sites import find_sites, plan_sites
from tests.builders.corrupt import batchnorm_outputs, corrupt_layer
from tests.builders.verify_models import make_model, tensor

pytestmark = pytest.mark.usefixtures("cpu_only_default")

MODELS = Path(__file__).resolve().parents[2] / "models"
BUNDLED = sorted(p.name for p in MODELS.glob("*.onnx"))


def _assert_judge(original: onnx.ModelProto, folded: onnx.ModelProto) -> int:
    """Exact fold passes; each fold site's layer, 1 % off in one slice, fails at that site."""
    exact = verify(original, folded, providers="cpu", levels="disable,all")
    assert exact.passed, exact.summary_line()
    sites = [name for name, labels in exact.site_labels.items() if labels["bn"]]
    assert sites, "no fold site found"
    for site in sites:
        wrong = corrupt_layer(folded, site)
        report = verify(original, wrong, providers="cpu", levels="all", save_failing=False)
        assert report.exit_code == 1, f"{site}: {report.summary_line()}"
        (result,) = report.providers
        assert result.first_divergence == site, result.reason
        assert f"first divergence at `{site}` (" in (result.reason or "")
        assert "folded into" in (result.reason or "")
    return len(sites)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_corruption_fails_at_its_site(name: str) -> None:
    original = onnx.load(MODELS / name)
    folded = bnfold.optimize(original).model
    assert _assert_judge(original, folded) == len(batchnorm_outputs(original))


TORCH_NETS = ["resnet", "mobilenet", "unet", "mlp_before", "input_bn_conv", "conv1d", "seq_linear"]


@pytest.mark.parametrize("name", TORCH_NETS)
def test_torch_nets_corruption_fails_at_its_site(name: str) -> None:
    pytest.importorskip("torch")
    from tests.builders import nets

    case = next(c for c in nets.NETS if c.name == name)
    original = nets.export(case.net(), case.example())
    folded = bnfold.optimize(original).model
    assert _assert_judge(original, folded) >= 1


def saturated_softmax(seed: int = 0) -> onnx.ModelProto:
    """Conv -> BN -> Relu -> GlobalAveragePool -> Flatten -> Gemm (x100) -> Softmax.

    The logits are ~100x too large for the softmax: on random inputs it is one-hot, so a 1 %
    error in the Conv moves the output by far less than any tolerance.
    """
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "H"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    inits = {
        "W": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "B": rng.standard_normal(8).astype(np.float32),
        "g": rng.uniform(0.5, 2, 8).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "m": rng.standard_normal(8).astype(np.float32),
        "v": rng.uniform(0.5, 2, 8).astype(np.float32),
        "G": (100 * rng.standard_normal((5, 8))).astype(np.float32),
        "H": np.zeros(5, np.float32),
    }
    return make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [tensor("y", TensorProto.FLOAT, ["N", 5])],
        inits,
    )


def test_saturated_softmax_hides_the_wrong_fold_from_outputs_not_from_sites() -> None:
    original = saturated_softmax()
    folded = bnfold.optimize(original).model
    wrong = corrupt_layer(folded, "bn")
    # The premise: the final output cannot show it.
    outputs_only = verify(original, wrong, providers="cpu", sites="none", save_failing=False)
    assert all(c.passed for r in outputs_only.providers for c in r.outputs.values())
    # Weak evidence is said, and without sites that is not a pass.
    assert [w.kind for w in outputs_only.weak_outputs] == ["saturated"]
    assert "saturated" in outputs_only.weak_outputs[0].message
    assert outputs_only.inconclusive and not outputs_only.passed
    assert outputs_only.exit_code == 1
    assert "inconclusive" in outputs_only.summary_line()
    assert "weak evidence" in outputs_only.to_markdown()
    assert outputs_only.to_dict()["weak_outputs"][0]["kind"] == "saturated"
    # The default compares the fold site and names it.
    report = verify(original, wrong, providers="cpu", save_failing=False)
    (result,) = report.providers
    assert result.status == "failed" and result.first_divergence == "bn"
    assert "BN `" in report.summary_line() and "`bn`" in report.summary_line()
    # The exact fold passes, with the weakness still reported.
    exact = verify(original, folded, providers="cpu")
    assert exact.passed and exact.weak_outputs


def test_site_modes_and_labels() -> None:
    original = saturated_softmax()
    folded = bnfold.optimize(original).model
    sites, positions, _ = find_sites(original, folded, "folds")
    assert [(s.name, s.bn is not None) for s in sites] == [("bn", True)]
    assert positions["y"] > sites[0].position
    every, _, _ = find_sites(original, folded, "all")
    assert {"bn", "r", "p", "f", "logits"} <= {s.name for s in every}
    assert find_sites(original, folded, "none")[0] == []
    with pytest.raises(bnfold.errors.UsageError, match="--sites"):
        verify(original, folded, sites="some")


def test_budget_leaves_sites_out_and_says_so() -> None:
    original = saturated_softmax()
    folded = bnfold.optimize(original).model
    plan = plan_sites(original, folded, "all", {"x": (1, 3, 8, 8)}, runs=1, budget_bytes=1024)
    assert plan.left_out and any("left out" in n for n in plan.notes)
    assert sum(s.estimated_bytes or 0 for s in plan.sites) <= 1024


def test_consumer_fold_site_is_the_consumer_output() -> None:
    """BN -> Conv (no padding): the BN output disappears; the Conv output is the site."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
        helper.make_node("Conv", ["n", "W"], ["c"]),
        helper.make_node("Tanh", ["c"], ["y"]),
    ]
    inits = {
        "g": rng.uniform(0.5, 2, 3).astype(np.float32),
        "b": rng.standard_normal(3).astype(np.float32),
        "m": rng.standard_normal(3).astype(np.float32),
        "v": rng.uniform(0.5, 2, 3).astype(np.float32),
        "W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
    }
    original = make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [tensor("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )
    folded = bnfold.optimize(original).model
    sites, _, _ = find_sites(original, folded, "folds")
    assert [s.name for s in sites] == ["c"] and sites[0].bn is not None
    assert _assert_judge(original, folded) == 1


def test_inputs_passed_through_and_integer_sites() -> None:
    """A graph output that is a graph input, and an int64 site: compared, nothing crashes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Identity", ["s"], ["s2"]),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    model = make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [2, 3])],
        [tensor("y", TensorProto.FLOAT, [2, 3]), tensor("s2", TensorProto.INT64, [2])],
    )
    model.graph.output.append(tensor("x", TensorProto.FLOAT, [2, 3]))
    report = verify(model, model, providers="cpu", sites="all")
    assert report.passed, report.summary_line()
    (result,) = report.providers
    assert set(result.sites) == {"s"} and result.sites["s"].dtype == "int64"


def test_subgraph_batchnorms_are_noted() -> None:
    inner_bn = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["t"])
    then_graph = helper.make_graph(
        [inner_bn], "then", [], [tensor("t", TensorProto.FLOAT, [1, 2, 2, 2])]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])],
        "else",
        [],
        [tensor("e", TensorProto.FLOAT, [1, 2, 2, 2])],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)
    ]
    ones = np.ones(2, np.float32)
    model = make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [1, 2, 2, 2]), tensor("cond", TensorProto.BOOL, [])],
        [tensor("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        {"g": ones, "b": ones * 0, "m": ones * 0, "v": ones},
    )
    report = verify(model, model, providers="cpu")
    assert any("inside subgraphs" in note for note in report.notes)


def test_chain_fold_with_small_activations() -> None:
    """Conv (weights ~3e-4) -> BN -> Mul -> Add (densenet's scale layer): the fold keeps the
    Add's name, the BN's output disappears; site values are small, where an absolute 1e-4
    hides a 1 % error: the site's atol scales with its size."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
        helper.make_node("Mul", ["n", "k"], ["s"]),
        helper.make_node("Add", ["s", "d"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["y"]),
    ]
    shape = (8, 1, 1)
    inits = {
        "W": (0.0003 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32),
        "g": rng.uniform(0.5, 2, 8).astype(np.float32),
        "b": (0.01 * rng.standard_normal(8)).astype(np.float32),
        "m": (0.01 * rng.standard_normal(8)).astype(np.float32),
        "v": rng.uniform(0.5, 2, 8).astype(np.float32),
        "k": rng.uniform(0.5, 1.5, shape).astype(np.float32),
        "d": (0.01 * rng.standard_normal(shape)).astype(np.float32),
    }
    original = make_model(
        nodes,
        [tensor("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [tensor("y", TensorProto.FLOAT, [1, 8, 1, 1])],
        inits,
    )
    folded = bnfold.optimize(original).model
    sites, _, _ = find_sites(original, folded, "folds")
    assert [s.name for s in sites] == ["a"], [s.name for s in sites]
    # The premise: an unscaled absolute tolerance is fooled here.
    wrong = corrupt_layer(folded, "a")
    assert verify(original, wrong, providers="cpu", atol=1e-4, save_failing=False).passed
    assert _assert_judge(original, folded) == 1


ONNX_LIGHT = Path(onnx.__file__).parent / "backend/test/data/light/light_shufflenet.onnx"


@pytest.mark.slow
@pytest.mark.skipif(not ONNX_LIGHT.exists(), reason="onnx's light backend models not installed")
@pytest.mark.slow
def test_onnx_light_shufflenet_constant_outputs_sites_catch_it() -> None:
    """The onnx package's light_shufflenet: its outputs are constant (weights from
    ConstantOfShape), so only the sites can show a wrong fold."""
    original = onnx.load(ONNX_LIGHT)
    folded = bnfold.optimize(original).model
    exact = verify(original, folded, providers="cpu")
    assert exact.passed and [w.kind for w in exact.weak_outputs] == ["constant"]
    sites = [n for n, labels in exact.site_labels.items() if labels["bn"]]
    for site in (sites[0], sites[len(sites) // 2]):
        report = verify(original, corrupt_layer(folded, site), providers="cpu", save_failing=False)
        assert report.exit_code == 1 and report.providers[0].first_divergence == site

"""The whole format (issue 11): external data wherever a tensor lives, local functions,
quantized weights, opset-true constants, odd but valid spellings, and true reasons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

import bnfold
from tests.builders.graphs import (
    assert_equivalent,
    fold,
    make_model,
    random_bn_params,
    random_feeds,
    run_unoptimized,
    tensor,
)

BN = ["g", "b", "m", "v"]


def _bn_inits(rng: np.random.Generator, channels: int = 4) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(value, name)
        for name, value in zip(BN, random_bn_params(rng, channels), strict=True)
    ]


def _constant_weight_model() -> onnx.ModelProto:
    """x → Conv(W from a Constant node) → BN, plus an If whose branch has its own weight."""
    rng = np.random.default_rng(21)
    weight = rng.standard_normal([4, 3, 3, 3]).astype(np.float32)
    branch_w = numpy_helper.from_array(rng.standard_normal([4, 4, 1, 1]).astype(np.float32), "TW")
    then_g = helper.make_graph(
        [helper.make_node("Conv", ["z", "TW"], ["t"])], "then", [], [tensor("t", None)], [branch_w]
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["z"], ["e"])], "else", [], [tensor("e", None)]
    )
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(weight, "Wv")),
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", *BN], ["z"], name="bn"),
        helper.make_node("If", ["cond"], ["o"], then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [tensor("x", [1, 3, 8, 8]), tensor("cond", [], onnx.TensorProto.BOOL)],
        [tensor("o", None)],
        _bn_inits(rng),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _save_external(model: onnx.ModelProto, folder: Path, data: str = "w.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    convert_model_to_external_data(model, location=data, size_threshold=0, convert_attribute=True)
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path


def _run(path_or_model: Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = (
        str(path_or_model) if isinstance(path_or_model, Path) else path_or_model.SerializeToString()
    )
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]


FEEDS = {
    "x": np.random.default_rng(0).standard_normal([1, 3, 8, 8]).astype(np.float32),
    "cond": np.array(True),
}


def test_constant_external_data_is_read_from_the_model_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save_external(_constant_weight_model(), tmp_path / "model")
    expected = _run(path, FEEDS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A decoy of the same name in the working directory, holding other bytes.
    (elsewhere / "w.bin").write_bytes(os.urandom((tmp_path / "model" / "w.bin").stat().st_size))
    monkeypatch.chdir(elsewhere)
    result = bnfold.optimize(path)
    assert [f.bn for f in result.report.folds] == ["bn"]
    out = tmp_path / "out" / "folded.onnx"
    out.parent.mkdir()
    result.save(out)
    np.testing.assert_allclose(_run(out, FEEDS), expected, rtol=1e-4, atol=1e-5)


def test_every_output_loads_from_another_folder_and_model_is_self_contained(
    tmp_path: Path,
) -> None:
    model = _constant_weight_model()
    model.graph.node[2].input[0] = "x2"  # keep everything: BN on a graph input, nothing folds
    model.graph.input.append(tensor("x2", [1, 4, 6, 6]))
    path = _save_external(model, tmp_path / "model")
    result = bnfold.optimize(path)
    out = tmp_path / "deep" / "er" / "folded.onnx"
    out.parent.mkdir(parents=True)
    result.save(out)
    feeds = {**FEEDS, "x2": np.ones([1, 4, 6, 6], np.float32)}
    np.testing.assert_array_equal(_run(out, feeds), _run(path, feeds))
    # In memory too: no tensor anywhere refers to a file.
    np.testing.assert_array_equal(_run(result.model, feeds), _run(path, feeds))


def test_traversal_in_a_constant_tensor_location_is_refused(tmp_path: Path) -> None:
    model = _constant_weight_model()
    path = _save_external(model, tmp_path / "model", data="w.bin")
    loaded = onnx.load(path, load_external_data=False)
    for entry in loaded.graph.node[0].attribute[0].t.external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    (tmp_path / "secret.bin").write_bytes((tmp_path / "model" / "w.bin").read_bytes())
    onnx.save(loaded, path)
    with pytest.raises(bnfold.errors.UnsafeModelError):
        bnfold.optimize(path)


def test_ai_onnx_domain_spelling_is_accepted_and_folded() -> None:
    """Nodes may name the default domain 'ai.onnx' (onnxruntime runs them; onnx's checker
    wants the import spelled the same way, so bnfold's load check normalises the name)."""
    rng = np.random.default_rng(22)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv", domain="ai.onnx"),
        helper.make_node("BatchNormalization", ["y", *BN], ["z"], name="bn", domain="ai.onnx"),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal([4, 3, 3, 3]).astype(np.float32), "W")]
    graph = helper.make_graph(
        nodes, "g", [tensor("x", [1, 3, 6, 6])], [tensor("z", [1, 4, 4, 4])], inits + _bn_inits(rng)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    result = fold(model)
    assert [f.bn for f in result.report.folds] == ["bn"]
    feeds = random_feeds(model)
    np.testing.assert_allclose(
        run_unoptimized(result.model, feeds)["z"], run_unoptimized(model, feeds)["z"], 1e-4, 1e-5
    )


def _function_model(params_as_inputs: bool) -> onnx.ModelProto:
    """main: x → Block(x) → Block(·) with Block = Conv → BN inside a local function.

    With ``params_as_inputs`` the BN's γ comes in as a function input (differs per call)."""
    rng = np.random.default_rng(23)
    weight = rng.standard_normal([4, 4, 1, 1]).astype(np.float32)
    body = [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(weight, "Wv"))]
    for name, value in zip(BN, random_bn_params(rng, 4), strict=True):
        if params_as_inputs and name == "g":
            continue
        body.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value)))
    body += [
        helper.make_node("Conv", ["inp", "W"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", *BN], ["out"], name="bn"),
    ]
    inputs = ["inp", "g"] if params_as_inputs else ["inp"]
    function = helper.make_function(
        "local", "Block", inputs, ["out"], body, [helper.make_opsetid("", 17)]
    )
    extra = ["gamma"] if params_as_inputs else []
    nodes = [
        helper.make_node("Block", ["x", *extra], ["h"], domain="local"),
        helper.make_node("Block", ["h", *extra], ["y"], domain="local"),
    ]
    inits = (
        [numpy_helper.from_array(np.full(4, 1.5, np.float32), "gamma")] if params_as_inputs else []
    )
    graph = helper.make_graph(
        nodes, "g", [tensor("x", [1, 4, 5, 5])], [tensor("y", [1, 4, 5, 5])], inits
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[function],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_batchnorm_inside_a_local_function_is_folded_exactly_for_every_call() -> None:
    model = _function_model(params_as_inputs=False)
    result = fold(model)
    assert result.report.counts["batchnorm_before"] == 1
    assert result.report.counts["batchnorm_after"] == 0
    assert [f.bn for f in result.report.folds] == ["local.Block/bn"]
    assert_equivalent(model, result.model)
    assert not fold(result.model).report.folds  # a fixed point


def test_function_parameter_bound_to_a_constant_at_every_call_folds_per_call_site() -> None:
    # gamma is a function input, bound to the same initializer at both calls (issue 22:
    # this was refused as "a graph input", which it is not): the function is inlined and
    # each call's BN folds.
    model = _function_model(params_as_inputs=True)
    result = fold(model)
    assert not result.report.skipped
    assert len(result.report.folds) == 2
    assert [(a.function, a.action, a.calls) for a in result.report.functions] == [
        ("local.Block", "inlined", 2)
    ]
    assert result.report.counts["batchnorm_before"] == 1
    assert result.report.counts["batchnorm_after"] == 0
    assert_equivalent(model, result.model)


def test_check_counts_function_batchnorms(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bnfold.cli import main

    path = tmp_path / "f.onnx"
    onnx.save(_function_model(params_as_inputs=False), path)
    outcome = CliRunner().invoke(main, ["check", str(path)])
    assert outcome.exit_code == 1, outcome.output


def _opset11_unsqueeze_model() -> onnx.ModelProto:
    """γ reaches the BN through Unsqueeze-11 (axes attribute) and Squeeze-11."""
    rng = np.random.default_rng(24)
    nodes = [
        helper.make_node("Unsqueeze", ["g0"], ["g1"], axes=[0]),
        helper.make_node("Squeeze", ["g1"], ["g"], axes=[0]),
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", "g", "b", "m", "v"], ["z"], name="bn"),
    ]
    params = random_bn_params(rng, 4)
    return make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z", None)],
        [rng.standard_normal([4, 3, 3, 3]).astype(np.float32), *params],
        names=["W", "g0", "b", "m", "v"],
        opset=11,
        ir_version=6,
    )


def test_constant_recipes_are_evaluated_in_the_models_opset() -> None:
    model = _opset11_unsqueeze_model()
    result = fold(model)
    assert [f.bn for f in result.report.folds] == ["bn"]
    assert_equivalent(model, result.model)


def _recipe_conv_bn(
    seed: int,
    recipe: list[onnx.NodeProto],
    source: str,
    extra: dict[str, np.ndarray] | None = None,
    **model_options: int,
) -> onnx.ModelProto:
    """``recipe`` (computing ``W`` from the random weight ``source``) → Conv(x, W) → BN → z."""
    rng = np.random.default_rng(seed)
    inits = {source: rng.standard_normal([4, 3, 3, 3]).astype(np.float32), **(extra or {})}
    inits.update(zip(BN, random_bn_params(rng, 4), strict=True))
    nodes = [
        *recipe,
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", *BN], ["z"], name="bn"),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z", None)],
        list(inits.values()),
        names=list(inits),
        **model_options,  # type: ignore[arg-type]
    )


def test_softmax_11_weight_recipe_is_not_evaluated_with_softmax_13s_meaning() -> None:
    """Softmax-11 normalises over the flattened axes ≥ axis; onnx's evaluator only knows
    Softmax-13 (one axis), so such a recipe is not evaluated: the BN stays, truthfully."""
    softmax = helper.make_node("Softmax", ["w0"], ["W"], axis=1)
    model = _recipe_conv_bn(25, [softmax], "w0", opset=11, ir_version=6)
    result = fold(model)
    assert [(s.bn, s.reason) for s in result.report.skipped] == [("bn", "weight-not-constant")]
    assert "Softmax-11" in result.report.skipped[0].detail
    assert result.model.SerializeToString() == model.SerializeToString()


def test_training_mode_dropout_is_never_a_constant() -> None:
    dropout = helper.make_node("Dropout", ["w0", "ratio", "train"], ["W"], seed=1)
    extra = {"ratio": np.array(0.5, np.float32), "train": np.array(True)}
    model = _recipe_conv_bn(26, [dropout], "w0", extra)
    result = fold(model)
    assert [(s.bn, s.reason) for s in result.report.skipped] == [("bn", "weight-not-constant")]


def test_two_batchnorms_with_one_name_are_both_reported_and_lowered() -> None:
    rng = np.random.default_rng(27)
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("BatchNormalization", ["s", *BN], ["a"], name="dup"),
        helper.make_node("Sigmoid", ["a"], ["s2"]),
        helper.make_node("BatchNormalization", ["s2", *BN], ["z"], name="dup"),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 4, 3, 3])],
        [tensor("z", None)],
        random_bn_params(rng, 4),
        names=BN,
    )
    kept = fold(model).report.skipped
    assert [s.bn for s in kept] == ["dup", "dup"]
    lowered = fold(model, lower_standalone=True)
    assert len(lowered.report.folds) == 2 and not lowered.report.skipped
    # onnxruntime refuses duplicate node names; onnx's reference evaluator runs them.
    from onnx.reference import ReferenceEvaluator

    feeds = {"x": np.random.default_rng(1).standard_normal([1, 4, 3, 3]).astype(np.float32)}
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    got = ReferenceEvaluator(lowered.model).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_training_info_is_refused_with_a_reason() -> None:
    model = _recipe_conv_bn(28, [], "W")
    info = model.training_info.add()
    info.algorithm.name = "train"
    binding = info.update_binding.add()
    binding.key, binding.value = "W", "W_new"
    result = bnfold.optimize(model)
    assert [(s.bn, s.reason) for s in result.report.skipped] == [("bn", "training-info")]
    assert result.model.SerializeToString() == model.SerializeToString()


def test_a_graph_out_of_order_folds_like_the_sorted_one_and_keeps_order_when_unchanged() -> None:
    rng = np.random.default_rng(29)
    conv = helper.make_node("Conv", ["x", "W"], ["y"], name="conv")
    bn = helper.make_node("BatchNormalization", ["y", *BN], ["z"], name="bn")
    inits = [rng.standard_normal([4, 3, 3, 3]).astype(np.float32), *random_bn_params(rng, 4)]
    model = make_model(
        [conv, bn], [tensor("x", [1, 3, 6, 6])], [tensor("z", None)], inits, names=["W", *BN]
    )
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    shuffled.graph.node[0].CopyFrom(bn)
    shuffled.graph.node[1].CopyFrom(conv)
    result = fold(shuffled)
    assert [f.bn for f in result.report.folds] == ["bn"]
    assert_equivalent(model, result.model)
    # Nothing to fold: the input's own order stays, byte for byte.
    kept = onnx.ModelProto()
    kept.CopyFrom(shuffled)
    kept.graph.node[0].input[0] = "x2"  # BN on a graph input now
    kept.graph.input.append(tensor("x2", [1, 4, 4, 4]))
    kept.graph.output.append(tensor("y", None))
    unchanged = fold(kept)
    assert not unchanged.report.folds
    assert unchanged.model.SerializeToString() == kept.SerializeToString()


def test_a_recipe_deeper_than_the_limit_says_so() -> None:
    from bnfold.engine.constants import MAX_CONSTANT_DEPTH

    steps = MAX_CONSTANT_DEPTH + 2
    chain = [helper.make_node("Neg", [f"w{i}"], [f"w{i + 1}"]) for i in range(steps - 1)]
    chain.append(helper.make_node("Neg", [f"w{steps - 1}"], ["W"]))
    model = _recipe_conv_bn(30, chain, "w0")
    skipped = fold(model).report.skipped
    assert [s.reason for s in skipped] == ["weight-not-constant"]
    assert "deeper than" in skipped[0].detail


def test_a_shared_output_of_a_layer_nothing_folds_into_is_no_linear_producer() -> None:
    """The producer's kind is the reason, not the sharing (it would not fold unshared)."""
    rng = np.random.default_rng(31)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"]),
        helper.make_node("Sigmoid", ["y"], ["r"]),
        helper.make_node("Relu", ["r"], ["q"]),
        helper.make_node("BatchNormalization", ["r", *BN], ["z"], name="bn"),
    ]
    model = make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6])],
        [tensor("z", None), tensor("q", None)],
        [rng.standard_normal([4, 3, 3, 3]).astype(np.float32), *random_bn_params(rng, 4)],
        names=["W", *BN],
    )
    assert [s.reason for s in fold(model).report.skipped] == ["no-linear-producer"]

"""Fold the onnx package's own backend-test models and hold bnfold to onnxruntime's bar.

Models: ``onnx/backend/test/data/light/*.onnx`` (resnet50, shufflenet, inception_v2,
densenet121, ... at IR 3 / opset 9, every weight made at run time by ``ConstantOfShape``
from a shape initializer, all values 0.02) and ``pytorch-converted/test_BatchNorm*`` (a lone
BatchNormalization-6 each).

For each model: the folded model passes ``onnx.checker`` (full check), computes what the
unoptimized original computes on random inputs and on the input onnx's backend runner uses for
the bundled ``*_output_0.pb`` reference, and keeps no more BatchNormalization than
onnxruntime's own ORT_ENABLE_BASIC level keeps.

With constant weights every class logit of the light models is equal and their softmax output
is uniform whatever the folds did, so the light models with BN are also checked with random
weights (``randomized``), with the logits and every BN reader's output exposed as extra
graph outputs (scaling one output channel of one folded Conv by 1.001 then fails the
comparison for most Convs tried: 7 of 7 in resnet50, inception_v2, densenet121; 4 of 7 in
shufflenet).

Run with ``-s`` to see the per-model table (BN before / after bnfold / after ORT BASIC, times),
or set ``BNFOLD_BACKEND_TABLE=path.md`` to have it written there.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, version_converter

import bnfold
from bnfold.engine.report import FoldReport
from tests.builders import graphs as helpers

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
LIGHT = sorted((DATA / "light").glob("*.onnx"))
PYTORCH_BN = sorted((DATA / "pytorch-converted").glob("test_BatchNorm*/model.onnx"))
MODELS = {
    **{p.stem.removeprefix("light_"): p for p in LIGHT},
    **{p.parent.name.removeprefix("test_"): p for p in PYTORCH_BN},
}
# The three big onnx light models take seconds per test (marked slow; -m "not slow" skips them).
BIG = {"densenet121", "inception_v2", "resnet50"}


def sized(names: object) -> list:
    """``names`` as parameters, the big models marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


# onnxruntime has no kernel for BatchNormalization before opset 7 (NOT_IMPLEMENTED at load).
ORT_MIN_BN_OPSET = 7
# onnx's backend runner compares with the bundled outputs at these tolerances.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-3, 1e-7


def test_models_found() -> None:
    assert len(LIGHT) >= 5 and len(PYTORCH_BN) >= 3, DATA
    assert {"resnet50", "shufflenet", "inception_v2", "densenet121"} <= set(MODELS)


# --------------------------------------------------------------------------------------------
# Folding once per model, with a table row per model


@dataclass
class Row:
    model: str
    nodes: int
    bn_before: int
    bn_after: int
    fold_seconds: float
    ort_basic: str = "?"
    ort_seconds: str = "?"


TABLE: dict[str, Row] = {}


@pytest.fixture(scope="module", autouse=True)
def print_table():
    yield
    if not TABLE:
        return
    header = "| model | nodes | BN before | BN after bnfold | BN after ORT BASIC | bnfold s | ORT BASIC s |"
    lines = ["", header, "|---|---:|---:|---:|---:|---:|---:|"]
    for row in TABLE.values():
        lines.append(
            f"| {row.model} | {row.nodes} | {row.bn_before} | {row.bn_after} | {row.ort_basic} "
            f"| {row.fold_seconds:.3f} | {row.ort_seconds} |"
        )
    text = "\n".join(lines)
    print(text)  # visible with -s
    target = os.environ.get("BNFOLD_BACKEND_TABLE")  # or written to this file
    if target:
        Path(target).write_text(text.lstrip() + "\n")


@functools.cache
def _fold(name: str) -> tuple[bytes, FoldReport]:
    started = time.perf_counter()
    result = bnfold.optimize(MODELS[name])  # from the path, as the CLI does
    seconds = time.perf_counter() - started
    original = onnx.load(MODELS[name])
    TABLE[name] = Row(
        name,
        len(original.graph.node),
        helpers.batchnorm_count(original),
        helpers.batchnorm_count(result.model),
        seconds,
    )
    return result.model.SerializeToString(), result.report


def folded(name: str) -> tuple[onnx.ModelProto, onnx.ModelProto, FoldReport]:
    """(original, folded, report); the fold is done once per model."""
    data, report = _fold(name)
    return onnx.load(MODELS[name]), onnx.load_from_string(data), report


def feed_names(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that are not initializers (at IR 3 every initializer is an input too)."""
    initializers = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initializers]


def opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# --------------------------------------------------------------------------------------------
# Runners: onnxruntime unoptimized, or onnx's reference evaluator where ORT has no kernel


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if opset(model) >= ORT_MIN_BN_OPSET:
        return helpers.run_unoptimized(model, feeds)
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in model.graph.output]
    return dict(zip(names, ReferenceEvaluator(model).run(names, feeds), strict=True))


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(np.max(np.abs(expected.astype(np.float64))))
    error = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    assert error <= atol + rtol * scale, f"max abs error {error:.3e} (scale {scale:.3e})"


def assert_equivalent(
    original: onnx.ModelProto, candidate: onnx.ModelProto, rtol: float = 1e-5
) -> None:
    """helpers.assert_equivalent, with the reference evaluator for opsets ORT cannot run."""
    if opset(original) >= ORT_MIN_BN_OPSET:
        helpers.assert_equivalent(original, candidate, rtol=rtol)
        return
    onnx.checker.check_model(candidate, full_check=True)
    for seed in (0, 1):
        feeds = helpers.random_feeds(original, seed)
        expected, actual = run(original, feeds), run(candidate, feeds)
        assert expected.keys() == actual.keys()
        for key, value in expected.items():
            assert_close(actual[key], value, rtol, 1e-5)


# --------------------------------------------------------------------------------------------
# The checks


@pytest.mark.parametrize("name", sized(MODELS))
def test_folds_and_stays_valid(name: str) -> None:
    original, out, report = folded(name)
    onnx.checker.check_model(out, full_check=True)
    assert out.ir_version == original.ir_version
    assert list(out.opset_import) == list(original.opset_import)
    assert feed_names(out) == feed_names(original)
    assert [v.SerializeToString() for v in out.graph.output] == [
        v.SerializeToString() for v in original.graph.output
    ]
    before, after = helpers.batchnorm_count(original), helpers.batchnorm_count(out)
    assert report.counts["batchnorm_before"] == before
    assert report.counts["batchnorm_after"] == after
    assert len([f for f in report.folds if f.kind == "BatchNormalization"]) == before - after
    assert len(report.skipped) == after
    assert all(s.reason and s.detail for s in report.skipped)
    if before == 0:
        # Nothing to fold: the model must come back exactly as it was.
        assert out.SerializeToString() == original.SerializeToString()
    # Deterministic: a second fold of the same file gives the same bytes.
    assert bnfold.optimize(MODELS[name]).model.SerializeToString() == out.SerializeToString()
    # Idempotent: folding the folded model changes nothing.
    again = bnfold.optimize(out)
    assert again.report.folds == []
    assert again.model.SerializeToString() == out.SerializeToString()


@pytest.mark.parametrize("name", sized(MODELS))
def test_equivalent_on_random_inputs(name: str) -> None:
    original, out, _ = folded(name)
    if out.SerializeToString() == original.SerializeToString():
        return  # byte-identical (nothing folded): nothing to run
    assert_equivalent(original, out)


def reference_data(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """(inputs, expected outputs) matching the bundled reference outputs, or None."""
    path = MODELS[name]
    model = onnx.load(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if path.parent.name.startswith("test_"):  # pytorch-converted: inputs are bundled
        folder = path.parent / "test_data_set_0"
        feeds = {
            v.name: numpy_helper.to_array(onnx.load_tensor(str(folder / f"input_{i}.pb")))
            for i, v in enumerate(inputs)
        }
        outputs = [folder / f"output_{i}.pb" for i in range(len(model.graph.output))]
    else:
        # Light models ship outputs only; onnx's backend runner makes their inputs with
        # Runner.generate_dummy_data(random=False): arange(n) / n, unknown dims as 1.
        feeds = {}
        for v in inputs:
            shape = tuple(d.dim_value or 1 for d in v.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            feeds[v.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
        outputs = [
            path.with_name(f"{path.stem}_output_{i}.pb") for i in range(len(model.graph.output))
        ]
    if not all(p.is_file() for p in outputs):
        return None
    expected = {
        o.name: numpy_helper.to_array(onnx.load_tensor(str(p)))
        for o, p in zip(model.graph.output, outputs, strict=True)
    }
    return feeds, expected


@pytest.mark.parametrize("name", sized(MODELS))
def test_matches_bundled_reference_output(name: str) -> None:
    original, out, _ = folded(name)
    if out.SerializeToString() == original.SerializeToString():
        pytest.skip("nothing folded: the model is byte-identical to the original")
    data = reference_data(name)
    if data is None:
        pytest.skip("no bundled reference output")
    feeds, expected = data
    reference = run(original, feeds)
    actual = run(out, feeds)
    for key, value in expected.items():
        assert_close(reference[key], value, REFERENCE_RTOL, REFERENCE_ATOL)  # the premise
        assert_close(actual[key], value, REFERENCE_RTOL, REFERENCE_ATOL)
        assert_close(actual[key], reference[key], 1e-5, 1e-6)


def ort_basic_batchnorms(model: onnx.ModelProto) -> int:
    """BatchNormalization left in the model onnxruntime writes at ORT_ENABLE_BASIC on CPU."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(folder) / "basic.onnx")
        options.log_severity_level = 3
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        assert session.get_providers() == ["CPUExecutionProvider"]
        return helpers.batchnorm_count(onnx.load(options.optimized_model_filepath))


@pytest.mark.parametrize("name", sized(MODELS))
def test_no_more_batchnorm_than_ort_basic(name: str) -> None:
    original, out, _ = folded(name)
    row = TABLE[name]
    if row.bn_before == 0:
        row.ort_basic, row.ort_seconds = "-", "-"
        pytest.skip("no BatchNormalization: nothing to compare")  # and ORT would write ~0.5 GB
    note = ""
    if opset(original) < ORT_MIN_BN_OPSET:
        # ORT cannot load BatchNormalization-6; count on a copy converted to opset 9.
        original = version_converter.convert_version(original, 9)
        note = " (opset 6->9 copy)"
    started = time.perf_counter()
    ort_left = ort_basic_batchnorms(original)
    row.ort_basic = f"{ort_left}{note}"
    row.ort_seconds = f"{time.perf_counter() - started:.3f}"
    assert helpers.batchnorm_count(out) <= ort_left


# --------------------------------------------------------------------------------------------
# Light models with random weights: the constant-weight outputs cannot show a wrong fold


def randomized(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """``model`` with every ConstantOfShape-made float weight replaced by random values.

    BN variances are positive; Conv weights are He-scaled so 50 layers neither vanish nor
    explode. The logits (a final Softmax's input) and the output of every node reading a BN
    output become extra graph outputs.
    """
    rng = np.random.default_rng(seed)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    users: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            users.setdefault(name, []).append((node.op_type, index))
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        roles = set(users.get(node.output[0], []))
        if ("BatchNormalization", 4) in roles:
            value = rng.uniform(0.5, 2.0, shape)
        elif ("BatchNormalization", 1) in roles:
            value = rng.uniform(0.3, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
        elif ("Conv", 1) in roles or ("Gemm", 1) in roles:
            fan_in = int(np.prod(shape[1:])) if ("Conv", 1) in roles else shape[-1]
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif roles & {("Mul", 0), ("Mul", 1), ("Unsqueeze", 0)}:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = 0.5 * rng.standard_normal(shape)
        tensor = numpy_helper.from_array(value.astype(np.float32), node.output[0])
        graph.initializer.append(tensor)
        if model.ir_version < 4:  # IR 3: every initializer is also a graph input
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, shape))
    del graph.node[:]
    graph.node.extend(kept)
    # Extra graph outputs, so that one wrong channel of one fold shows at full size instead of
    # diluted in the softmax: the logits, and the output of every node reading a BN output.
    watch = []
    last = graph.node[len(graph.node) - 1]
    if last.op_type == "Softmax":
        watch.append(last.input[0])
    bns = [n for n in graph.node if n.op_type == "BatchNormalization"]
    bn_outputs = {n.output[0] for n in bns}
    bn_inputs = {n.input[0] for n in bns}  # a graph output there would block that BN's fold
    watch += [
        n.output[0]
        for n in graph.node
        if bn_outputs & set(n.input) and n.output[0] not in bn_inputs
    ]
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    present = {v.name for v in graph.output}
    for name in dict.fromkeys(watch):
        if name not in present:
            graph.output.append(inferred[name])
    onnx.checker.check_model(model)
    return model


RANDOMIZED = [p.stem.removeprefix("light_") for p in LIGHT]


@pytest.mark.parametrize("name", sized(RANDOMIZED))
def test_randomized_weights_equivalent(name: str) -> None:
    original = onnx.load(MODELS[name])
    if helpers.batchnorm_count(original) == 0:
        pytest.skip("no BatchNormalization")
    model = randomized(original)
    result = bnfold.optimize(model)
    # Random weights change no structure: the same BNs fold as with constant weights.
    _, out, report = folded(name)
    assert helpers.batchnorm_count(result.model) == helpers.batchnorm_count(out)
    # (Mul/Add chains may end earlier: the extra graph outputs cut them.)
    assert sorted(f.bn for f in result.report.folds if f.kind == "BatchNormalization") == sorted(
        f.bn for f in report.folds if f.kind == "BatchNormalization"
    )
    # The watched tensors really vary (otherwise this is the constant-weight test again).
    for output, value in run(model, helpers.random_feeds(model)).items():
        assert float(np.std(value)) > 1e-3 * float(np.max(np.abs(value))), output
    assert_equivalent(model, result.model)

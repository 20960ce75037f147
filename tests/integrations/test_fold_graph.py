"""``bnfold.fold_graph`` on onnx-graphsurgeon graphs of torch exports.

The EfficientNet-style net exports with 15 BatchNormalization; all 15 fold, in place (the
caller's ``Graph`` and its input/output ``Variable`` objects are the ones that hold the result),
the graph survives ``cleanup().toposort()`` and ``gs.export_onnx``, the exported model computes
what the unfolded export computes under onnxruntime with every optimization off, and a second
call folds nothing and changes nothing.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

gs = pytest.importorskip("onnx_graphsurgeon")
torch = pytest.importorskip("torch")

import bnfold  # noqa: E402
from bnfold.errors import UsageError  # noqa: E402
from bnfold.integrations import graphsurgeon  # noqa: E402
from tests.builders import graphs as helpers  # noqa: E402
from tests.builders import nets  # noqa: E402
from tests.builders.torch_nets import NETS  # noqa: E402

EFFICIENTNET = NETS[0]


@functools.cache
def _export(exporter: str) -> bytes:
    net = EFFICIENTNET.warmed().eval()
    model = nets.export(net, EFFICIENTNET.example(), exporter=exporter)
    return model.SerializeToString()


def _exported(exporter: str) -> onnx.ModelProto:
    if nets.exporter_unavailable(exporter):
        pytest.skip(str(nets.exporter_unavailable(exporter)))
    return onnx.load_from_string(_export(exporter))


def _graph_bytes(graph: object) -> bytes:
    return gs.export_onnx(graph).SerializeToString()


@pytest.mark.parametrize("exporter", nets.EXPORTERS)
@pytest.mark.slow
def test_folds_all_15_in_place_and_matches(exporter):
    original = _exported(exporter)
    assert helpers.batchnorm_count(original) == 15
    graph = gs.import_onnx(original)
    graph_input, graph_output = graph.inputs[0], graph.outputs[0]

    report = bnfold.fold_graph(graph)

    assert len(report.folds) == 15 and not report.skipped
    assert report.counts["batchnorm_before"] == 15 and report.counts["batchnorm_after"] == 0
    assert not [n for n in graph.nodes if n.op == "BatchNormalization"]
    # The caller's Variables are the graph's, wired to the new nodes.
    assert graph.inputs[0] is graph_input and graph.outputs[0] is graph_output
    assert graph_input.outputs and all(node in graph.nodes for node in graph_input.outputs)
    assert graph_output.inputs and graph_output.inputs[0] in graph.nodes
    graph.cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = original.ir_version
    helpers.assert_equivalent(original, folded, rtol=1e-5, atol=1e-5)

    before = _graph_bytes(graph)
    again = bnfold.fold_graph(graph)
    assert not again.folds and again.counts["batchnorm_before"] == 0
    assert _graph_bytes(graph) == before


def test_large_graphs_go_through_external_data(monkeypatch):
    """Above the size limit the graph is folded from a file with external data: same result."""
    original = _exported("torchscript")
    small = gs.import_onnx(original)
    bnfold.fold_graph(small)
    monkeypatch.setattr(graphsurgeon, "EXTERNAL_DATA_BYTES", 0)
    seen = []
    real_optimize = graphsurgeon.optimize
    monkeypatch.setattr(
        graphsurgeon,
        "optimize",
        lambda source, **kw: seen.append(source) or real_optimize(source, **kw),
    )
    large = gs.import_onnx(original)
    report = bnfold.fold_graph(large)
    assert len(report.folds) == 15
    assert not isinstance(seen[0], onnx.ModelProto)  # a path: the file route was taken
    assert _graph_bytes(large) == _graph_bytes(small)


def test_a_graph_with_nothing_to_fold_is_left_alone():
    """BN on a graph input before a padded Conv cannot fold: the graph is not touched."""
    rng = np.random.default_rng(0)
    model = helpers.make_model(
        [
            onnx.helper.make_node(
                "BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn"
            ),
            onnx.helper.make_node("Conv", ["y", "w"], ["z"], pads=[1, 1, 1, 1], name="conv"),
        ],
        [helpers.tensor("x", [1, 3, 6, 6])],
        [helpers.tensor("z", [1, 4, 6, 6])],
        [*helpers.random_bn_params(rng, 3), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)],
        names=["g", "b", "m", "v", "w"],
    )
    graph = gs.import_onnx(model)
    nodes = list(graph.nodes)
    before = _graph_bytes(graph)
    report = bnfold.fold_graph(graph)
    assert not report.folds and [s.reason for s in report.skipped] == ["padded-consumer"]
    assert graph.nodes == nodes and _graph_bytes(graph) == before


def test_disable_and_bad_arguments():
    graph = gs.import_onnx(_exported("torchscript"))
    report = bnfold.fold_graph(graph, disable=["conv-bn"])
    assert not report.folds and len(report.skipped) == 15
    assert helpers.batchnorm_count(gs.export_onnx(graph)) == 15
    with pytest.raises(UsageError, match="onnx_graphsurgeon.Graph"):
        bnfold.fold_graph(_exported("torchscript"))
    with pytest.raises(UsageError, match="unknown pattern"):
        bnfold.fold_graph(graph, disable=["no-such-pattern"])

"""``fold_graph``: fold BatchNormalization in an ``onnx_graphsurgeon.Graph``, in place.

TensorRT pipelines hold their model as an onnx-graphsurgeon ``Graph`` and fold BN by hand.
``fold_graph(graph)`` runs bnfold's own passes on it instead, with the same proofs and report
as ``bnfold.optimize``:

1. ``gs.export_onnx(graph)``; a graph whose constants exceed ``EXTERNAL_DATA_BYTES`` goes
   through a temporary file with external data (one protobuf cannot hold more than 2 GiB);
2. ``bnfold.optimize`` folds it (``s = γ/sqrt(σ² + ε)``, ``t = β − μ·s``, ``BN(x) = s·x + t``
   moved into the neighbouring Conv/Gemm/MatMul; see ``bnfold.engine.driver``);
3. ``gs.import_onnx`` of the result, whose nodes, inputs, outputs and local functions then
   replace the caller's:
   the *same* ``Graph`` object holds the folded graph, and the caller's graph input and output
   ``Variable`` objects are kept (rewired to the new nodes), so references to them stay valid.

Nothing changes when nothing folds, so a second call returns an empty report and leaves the
graph as it is. The graph stays valid for ``graph.cleanup().toposort()`` and ``gs.export_onnx``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import onnx

from ..api import optimize
from ..engine.report import FoldReport
from ..errors import UsageError

# Above this many bytes of constants, the graph is handed over as a file with external data.
EXTERNAL_DATA_BYTES = 1 << 30


def fold_graph(graph: Any, *, disable: Iterable[str] = ()) -> FoldReport:
    """Fold every BatchNormalization of ``graph`` (an ``onnx_graphsurgeon.Graph``) in place.

    ``disable`` names bnfold patterns to leave out (``bnfold.patterns.PATTERN_NAMES``).
    Returns the ``FoldReport`` (``folds``, ``skipped`` with reasons, ``counts``).
    """
    import onnx_graphsurgeon as gs

    if not isinstance(graph, gs.Graph):
        raise UsageError(
            f"fold_graph takes an onnx_graphsurgeon.Graph, got {type(graph).__name__}",
            hint="use bnfold.optimize for a path or an onnx.ModelProto",
        )
    model = gs.export_onnx(graph, do_type_check=False)
    if _constant_bytes(graph) > EXTERNAL_DATA_BYTES:
        report, folded = _fold_through_file(model, disable)
    else:
        result = optimize(model, disable=disable)
        report, folded = result.report, result.model if result.report.folds else None
    report.model = f"<onnx_graphsurgeon graph {graph.name}>"
    if folded is not None:
        _adopt(graph, gs.import_onnx(folded))
    return report


def _constant_bytes(graph: Any) -> int:
    import onnx_graphsurgeon as gs

    total = 0
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant):
            shape = getattr(tensor, "shape", None) or ()
            dtype = getattr(tensor, "dtype", None)
            itemsize = getattr(dtype, "itemsize", 4) if dtype is not None else 4
            count = 1
            for dim in shape:
                count *= int(dim)
            total += count * int(itemsize)
    return total


def _fold_through_file(
    model: onnx.ModelProto, disable: Iterable[str]
) -> tuple[FoldReport, onnx.ModelProto | None]:
    """Fold a model too large for one protobuf: write it with external data, fold the file."""
    with tempfile.TemporaryDirectory(prefix="bnfold-gs-") as folder:
        path = Path(folder) / "graph.onnx"
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="graph.onnx.data",
        )
        result = optimize(path, disable=disable)
        # Materialize while the data file still exists.
        return result.report, result.model if result.report.folds else None


def _all_nodes(graph: Any) -> list[Any]:
    nodes = list(graph.nodes)
    for sub in graph.subgraphs(recursive=True):
        nodes.extend(sub.nodes)
    return nodes


def _adopt(graph: Any, new: Any) -> None:
    """Move ``new``'s nodes into ``graph``, keeping ``graph``'s input/output Variables."""
    kept = {tensor.name: tensor for tensor in [*graph.inputs, *graph.outputs]}
    for node in _all_nodes(graph):
        # Detach the old nodes so the kept tensors list only the new producers/consumers.
        node.inputs.clear()
        node.outputs.clear()
    for node in _all_nodes(new):
        for slots in (node.inputs, node.outputs):
            for index, tensor in enumerate(slots):
                same = kept.get(tensor.name)
                if same is not None and same is not tensor:
                    slots[index] = same
    graph.nodes = list(new.nodes)
    graph.inputs = [kept.get(t.name, t) for t in new.inputs]
    graph.outputs = [kept.get(t.name, t) for t in new.outputs]
    # Folds inside local functions (and functions inlined to fold per call site) live in
    # the functions: without them the caller would keep the unfolded bodies.
    graph.functions = list(new.functions)

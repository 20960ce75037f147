"""Static facts about a model reported beside its latency: size, node count, BN count."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

from ..storage.load import LoadedModel

_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class ModelFacts:
    """``file_size_bytes``: the bytes on disk, the ``.onnx`` file and its external data files
    together; for an in-memory model, the serialized size (``ModelProto.ByteSize()``).
    Counts include nodes inside subgraphs (If/Loop/Scan bodies)."""

    file_size_bytes: int
    node_count: int
    batchnorm_count: int


def model_facts(loaded: LoadedModel) -> ModelFacts:
    nodes = list(iter_nodes(loaded.model.graph))
    if loaded.path is not None:
        size = sum(path.stat().st_size for path in loaded.files)
    else:
        size = loaded.model.ByteSize()
    batchnorms = sum(
        1 for node in nodes if node.op_type == "BatchNormalization" and node.domain in _ONNX_DOMAINS
    )
    return ModelFacts(file_size_bytes=size, node_count=len(nodes), batchnorm_count=batchnorms)


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and, depth first, of the subgraphs in its attributes."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from iter_nodes(subgraph)

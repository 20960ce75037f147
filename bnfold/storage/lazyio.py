"""Read ONNX models without holding tensor bytes that nobody needs.

``read_lazy`` parses a model file with a small protobuf wire-format walker
(``bnfold.storage.protowire``): every large initializer keeps its dims, type and name, and its bytes
stay in the file, referenced the standard ONNX way (``data_location = EXTERNAL`` with
``location``/``offset``/``length``; for an inline tensor the location is the model file
itself). Only tensors a fold reads are ever loaded, one at a time (``tensor_array``).
Writing such a model streams the bytes from their files: ``bnfold.storage.streamwrite``.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import dtypes, recipes
from . import protowire as wire
from .filebytes import read_array, read_bytes

# Initializers at least this large stay in the file until needed.
LAZY_THRESHOLD_BYTES = 4096


# ---- reading -----------------------------------------------------------------------------
# Protobuf's merge rules, which onnx.load and onnxruntime follow: a message may be split into
# pieces anywhere in the file. A singular embedded message that occurs more than once (a
# second ``graph`` field, as concatenating two serialized models gives) is the merge of all
# its pieces: repeated fields append in order, scalars and bytes take the last value. The
# reader below walks every piece: parsing the concatenation of the pieces' light fields is
# exactly that merge, and the large initializers are taken out and appended in file order.
def read_lazy(path: Path) -> onnx.ModelProto:
    """Parse ``path`` leaving large initializers' bytes in the file (see module doc)."""
    with (
        open(path, "rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer,
    ):
        size = len(buffer)
        rest = bytearray()
        graph_pieces: list[tuple[int, int]] = []
        for field, wire_type, field_start, payload, field_end in wire.fields(buffer, 0, size):
            if field == wire.GRAPH_FIELD and wire_type == wire.LEN:
                graph_pieces.append((payload, field_end))
            else:
                rest += buffer[field_start:field_end]
        model = onnx.ModelProto()
        model.ParseFromString(bytes(rest))
        if graph_pieces:
            model.graph.CopyFrom(_read_graph(buffer, graph_pieces, path.name))
        return model


def _read_graph(buffer: mmap.mmap, pieces: list[tuple[int, int]], location: str) -> onnx.GraphProto:
    """The merge of the GraphProto pieces at ``pieces`` (each ``(start, end)``)."""
    rest = bytearray()
    initializers = []
    for start, end in pieces:
        for field, wire_type, field_start, payload, field_end in wire.fields(buffer, start, end):
            if field == wire.INITIALIZER_FIELD and wire_type == wire.LEN:
                initializers.append(_read_tensor(buffer, payload, field_end, location))
            else:
                rest += buffer[field_start:field_end]
    graph = onnx.GraphProto()
    graph.ParseFromString(bytes(rest))
    graph.initializer.extend(initializers)
    return graph


def _read_tensor(buffer: mmap.mmap, start: int, end: int, location: str) -> onnx.TensorProto:
    rest = bytearray()
    raw: tuple[int, int] | None = None  # the last raw_data field: bytes fields take the last
    for field, wire_type, field_start, payload, field_end in wire.fields(buffer, start, end):
        if field == wire.RAW_DATA_FIELD and wire_type == wire.LEN:
            raw = (payload, field_end)
        else:
            rest += buffer[field_start:field_end]
    if raw is not None and raw[1] - raw[0] < LAZY_THRESHOLD_BYTES:
        rest += wire.key(wire.RAW_DATA_FIELD) + wire.encode_varint(raw[1] - raw[0])
        rest += buffer[raw[0] : raw[1]]
        raw = None
    tensor = onnx.TensorProto()
    tensor.ParseFromString(bytes(rest))
    if raw is not None:
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", location),
            ("offset", str(raw[0])),
            ("length", str(raw[1] - raw[0])),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return tensor


# ---- tensor values -----------------------------------------------------------------------
def external_source(tensor: onnx.TensorProto, base_dir: Path) -> tuple[Path, int, int] | None:
    """``(file, offset, length)`` of an external tensor's bytes, None for an inline one."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    if recipes.is_recipe(tensor):
        # Its file bytes are the unscaled source: never let them be copied as its value.
        raise ValueError(
            f"tensor {tensor.name!r} is a recipe: evaluate it (bnfold.storage.recipes)"
        )
    info = {entry.key: entry.value for entry in tensor.external_data}
    path = base_dir / info["location"]
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else path.stat().st_size - offset
    return path, offset, length


def tensor_array(tensor: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    """The value of ``tensor``, reading external bytes straight from their file.

    Plain numeric types are viewed in place (no copy through a TensorProto); the rest goes
    through onnx's own conversion.
    """
    if base_dir is None and tensor.data_location == onnx.TensorProto.EXTERNAL:
        # Never resolve a location against the working directory: bytes outside the model's
        # folder are not read (the loader vets every location against the model's folder).
        raise ValueError(f"tensor {tensor.name!r} has external data but no model folder")
    recipe = recipes.recipe_of(tensor, base_dir)
    if recipe is not None:
        return recipe.evaluate()
    source = external_source(tensor, base_dir) if base_dir is not None else None
    if source is None:
        return numpy_helper.to_array(tensor)
    if dtypes.is_plain(tensor.data_type) and tensor.data_type != onnx.TensorProto.BOOL:
        dtype = dtypes.numpy_dtype(tensor.data_type)
        return read_array(*source, dtype).reshape(tuple(tensor.dims))
    data = read_bytes(*source)
    inline = onnx.TensorProto()
    inline.CopyFrom(tensor)
    inline.ClearField("external_data")
    inline.ClearField("data_location")
    inline.raw_data = data
    return numpy_helper.to_array(inline)


def load_all(model: onnx.ModelProto, base_dir: Path) -> onnx.ModelProto:
    """A copy of ``model`` with every external tensor's bytes inline (for in-memory use)."""
    full = onnx.ModelProto()
    full.CopyFrom(model)
    for tensor in full.graph.initializer:
        recipe = recipes.recipe_of(tensor, base_dir)
        source = external_source(tensor, base_dir) if recipe is None else None
        if recipe is not None:
            tensor.raw_data = dtypes.raw_bytes(recipe.evaluate(), recipe.data_type).tobytes()
        if source is not None:
            tensor.raw_data = read_bytes(*source)
        if recipe is not None or source is not None:
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
    return full


def inline_nested_external_data(model: onnx.ModelProto, base_dir: Path | None) -> None:
    """Read into the model the external bytes of every tensor that is not a main-graph
    initializer (subgraph initializers, ``Constant`` and other attribute tensors, function
    bodies): the writer streams only main-graph initializers, and a reference left relative
    to the input's folder would not load from the output's. ``base_dir`` was vetted at load.
    """
    if base_dir is None:
        return
    for tensor in _nested_tensors(model):
        source = external_source(tensor, base_dir)
        if source is not None:
            tensor.raw_data = read_bytes(*source)
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")


def _nested_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    def in_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
        for node in nodes:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    yield attribute.t
                elif attribute.type == onnx.AttributeProto.TENSORS:
                    yield from attribute.tensors
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    yield from in_graph(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for graph in attribute.graphs:
                        yield from in_graph(graph)

    def in_graph(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        yield from in_nodes(graph.node)

    yield from in_nodes(model.graph.node)
    for function in model.functions:
        yield from in_nodes(function.node)


def is_self_reference(tensor: onnx.TensorProto, model_path: Path) -> bool:
    """``tensor`` is one ``read_lazy(model_path)`` left in the model file itself."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    return info.get("location") == model_path.name


def estimated_size(model: onnx.ModelProto, base_dir: Path | None) -> int:
    """About the serialized size of ``model`` with every tensor inline, without serializing it:
    the initializers' byte lengths plus the nodes (whose Constant tensors count there)."""
    payload = 0
    for tensor in model.graph.initializer:
        if recipes.is_recipe(tensor):
            payload += recipes.recipe_of(tensor, base_dir).nbytes  # type: ignore[union-attr]
            continue
        source = external_source(tensor, base_dir) if base_dir is not None else None
        payload += source[2] if source else tensor.ByteSize()
    return payload + sum(node.ByteSize() for node in model.graph.node)

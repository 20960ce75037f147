"""Storage edge classes (issue 22): how a model lies in its files, not what it computes.

- ``bfloat16``: a model converted to bfloat16 (opset 22, where Conv takes it); its large
  weights are folded as recipes and streamed (the exit-70 crash: a buffer of an ml_dtypes
  array cannot be cast to bytes).
- ``exotic``: initializers of every other ONNX type onnx knows (float8, float6, float4,
  int4/uint4, int2/uint2, complex, bool...), each read by a Cast to float that is a graph
  output, so they are kept and written by every write path (packed sub-byte types included).
- ``pieces``: the serialized model cut into several ModelProto pieces whose concatenation
  protobuf merges back into the model (a ``graph`` field more than once; repeated fields
  appended across pieces; scalars given a decoy value first, the real one last; a tensor
  whose ``raw_data`` occurs twice). onnx.load and onnxruntime read such a file as the model.
- ``symlink``: the model file, or its folder, reached through a symbolic link
  (``place_model``); external data lies beside the path as given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bnfold.storage import protowire as wire

BFLOAT16_OPSET = 22  # Conv and ConvTranspose take bfloat16 from opset 22
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)

# Every element type with a fixed size but the four a fold computes in.
EXOTIC_TYPES: tuple[int, ...] = tuple(
    value
    for name, value in TensorProto.DataType.items()
    if name
    not in (
        "UNDEFINED",
        "STRING",
        "FLOAT",
        "FLOAT16",
        "DOUBLE",
        "BFLOAT16",
        "COMPLEX64",
        "COMPLEX128",
    )
)


# ---- bfloat16 ----------------------------------------------------------------------------
def to_bfloat16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every float tensor, value type and Cast target in bfloat16, at an opset
    where its layers take bfloat16 (values rounded once to bfloat16)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for entry in out.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, BFLOAT16_OPSET)
    graph = out.graph
    for index, item in enumerate(graph.initializer):
        if item.data_type in _FLOAT_TYPES:
            value = numpy_helper.to_array(item).astype(np.float32).astype(_bf16())
            graph.initializer[index].CopyFrom(numpy_helper.from_array(value, item.name))
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type in _FLOAT_TYPES:
            info.type.tensor_type.elem_type = TensorProto.BFLOAT16
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i in _FLOAT_TYPES:
                attribute.i = TensorProto.BFLOAT16
    return out


def _bf16() -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16))


# ---- exotic types ------------------------------------------------------------------------
def exotic_values(data_type: int, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Values representable in ``data_type`` (small integers; positive for float8e8m0)."""
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    low = 1 if data_type == TensorProto.FLOAT8E8M0 else (0 if dtype.name.startswith("u") else -1)
    return rng.integers(low, 2, size=tuple(shape)).astype(np.float32).astype(dtype)


def with_exotic_tensors(
    model: onnx.ModelProto,
    rng: np.random.Generator,
    *,
    sizes: Sequence[int] = (5, 5000),
    types: Sequence[int] = EXOTIC_TYPES,
    cast: bool = True,
) -> onnx.ModelProto:
    """``model`` plus, per type and size (element counts: odd ones leave half a byte of a
    packed type unused; 5000 keeps the bytes in the file when read lazily), an initializer
    read by ``Cast(to=FLOAT)`` whose output is a graph output (at the newest opset); without
    ``cast``, the initializer is itself a graph output (the opset is left as it is)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if cast:
        for entry in out.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = max(entry.version, onnx.defs.onnx_opset_version())
    out.ir_version = max(out.ir_version, 11)  # the 4-bit, 2-bit and float6 types
    for data_type in types:
        type_name = TensorProto.DataType.Name(data_type).lower()
        for size in sizes:
            name = f"{type_name}_{size}"
            value = exotic_values(data_type, [size], rng)
            tensor = numpy_helper.from_array(value, name)
            assert tensor.data_type == data_type, (type_name, tensor.data_type)
            out.graph.initializer.append(tensor)
            if not cast:
                out.graph.output.append(helper.make_tensor_value_info(name, data_type, [size]))
                continue
            out.graph.node.append(
                helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT)
            )
            out.graph.output.append(
                helper.make_tensor_value_info(f"{name}_f", TensorProto.FLOAT, [size])
            )
    return out


# ---- pieces ------------------------------------------------------------------------------
def as_pieces(
    model: onnx.ModelProto,
    cuts: Sequence[float],
    *,
    decoys: bool = True,
    repeat_raw: str = "",
) -> bytes:
    """The bytes of ``model`` as ``len(cuts) + 1`` concatenated ModelProto pieces.

    Each repeated field of the graph (nodes, initializers, inputs, outputs, value_info) is
    cut at the fractions ``cuts`` of its length, so every piece has a ``graph`` field. With
    ``decoys``, the first piece holds wrong values of the scalars (producer, graph name,
    doc strings, where the model sets them) that a later piece overrides. With ``repeat_raw`` (an initializer name in
    ``raw_data``), that tensor is written with a wrong ``raw_data`` of another length first
    and its real one after it, inside the one initializer field.
    """
    count = len(cuts) + 1
    pieces = [onnx.ModelProto() for _ in range(count)]
    top = onnx.ModelProto()
    top.CopyFrom(model)
    top.ClearField("graph")
    pieces[-1].MergeFrom(top)  # the real scalars come last
    for name in ("name", "doc_string"):
        if model.graph.HasField(name):
            setattr(pieces[-1].graph, name, getattr(model.graph, name))
    if decoys:  # only over values the model sets: a merge cannot clear a scalar
        for target, source in ((pieces[0], model), (pieces[0].graph, model.graph)):
            for name in ("producer_name", "doc_string", "name", "domain"):
                if name in type(source).DESCRIPTOR.fields_by_name and getattr(source, name):
                    setattr(target, name, "decoy")
    for descriptor in onnx.GraphProto.DESCRIPTOR.fields:
        if not descriptor.is_repeated:
            continue
        values = list(getattr(model.graph, descriptor.name))
        bounds = [0, *(round(cut * len(values)) for cut in sorted(cuts)), len(values)]
        for index in range(count):
            getattr(pieces[index].graph, descriptor.name).extend(
                values[bounds[index] : bounds[index + 1]]
            )
    data = bytearray()
    for piece in pieces:
        if not piece.HasField("graph"):
            piece.graph.SetInParent()
        data += _with_repeated_raw(piece, repeat_raw) if repeat_raw else piece.SerializeToString()
    return bytes(data)


def _with_repeated_raw(piece: onnx.ModelProto, name: str) -> bytes:
    """``piece`` serialized with tensor ``name``'s ``raw_data`` preceded by a wrong one."""
    graph = onnx.GraphProto()
    graph.CopyFrom(piece.graph)
    del graph.initializer[:]
    body = bytearray(graph.SerializeToString())
    for tensor in piece.graph.initializer:  # in order, after the other fields
        value = tensor.SerializeToString()
        if tensor.name == name:
            decoy = onnx.TensorProto()
            decoy.CopyFrom(tensor)
            decoy.raw_data = b"\x7f" * (len(tensor.raw_data) // 2 + 3)
            value = (
                decoy.SerializeToString()
                + onnx.TensorProto(raw_data=tensor.raw_data).SerializeToString()
            )
        body += wire.key(wire.INITIALIZER_FIELD) + wire.encode_varint(len(value)) + value
    rest = onnx.ModelProto()
    rest.CopyFrom(piece)
    rest.ClearField("graph")
    return (
        rest.SerializeToString()
        + wire.key(wire.GRAPH_FIELD)
        + wire.encode_varint(len(body))
        + bytes(body)
    )


# ---- files -------------------------------------------------------------------------------
def place_model(
    model: onnx.ModelProto,
    folder: Path,
    *,
    external: bool = False,
    link: str = "",
    pieces: Sequence[float] = (),
) -> Path:
    """Write ``model`` under ``folder`` and return the path to open it by.

    ``external``: tensors of 1 KiB or more in ``m.onnx.data``. ``pieces``: the model file
    written as concatenated pieces (``as_pieces``; with ``external``, of the light model).
    ``link``: ``"file"``, opened through a symbolic link beside the model file; ``"away"``,
    through a link in another folder, with the data file copied beside the link and the one
    beside the target overwritten with garbage (onnx reads the data beside the link, and so
    must bnfold); ``"folder"``, through a symbolic link to the model's folder.
    """
    real = folder / "real"
    real.mkdir(parents=True, exist_ok=True)
    path = real / "m.onnx"
    if external:
        light = onnx.ModelProto()
        light.CopyFrom(model)
        onnx.external_data_helper.convert_model_to_external_data(
            light, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=1024
        )
        onnx.external_data_helper.write_external_data_tensors(light, str(real))
        model = light
    path.write_bytes(as_pieces(model, pieces) if pieces else model.SerializeToString())
    if link == "file":
        linked = real / "link.onnx"
        os.symlink("m.onnx", linked)
        return linked
    if link == "away":
        away = folder / "away"
        away.mkdir()
        data = real / "m.onnx.data"
        if data.exists():
            (away / data.name).write_bytes(data.read_bytes())
            data.write_bytes(b"\xff" * data.stat().st_size)
        os.symlink(os.path.join("..", "real", "m.onnx"), away / "m.onnx")
        return away / "m.onnx"
    if link == "folder":
        linked_folder = folder / "linked"
        os.symlink("real", linked_folder)
        return linked_folder / "m.onnx"
    return path

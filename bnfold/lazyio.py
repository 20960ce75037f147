"""Read and write ONNX models without holding tensor bytes that nobody needs.

``read_lazy`` parses a model file with a small protobuf wire-format walker: every large
initializer keeps its dims, type and name, and its bytes stay in the file, referenced the
standard ONNX way (``data_location = EXTERNAL`` with ``location``/``offset``/``length``; for
an inline tensor the location is the model file itself). Only tensors a fold reads are ever
loaded, one at a time (``tensor_array``).

``write_model`` streams the result: each field is serialized on its own, tensor bytes are
copied from their source file in chunks, so no serialized copy of the whole model is ever
built. Fields are written in field-number order, exactly as protobuf does, so the bytes equal
``model.SerializeToString()`` of the fully loaded model.

Wire format: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

# Initializers at least this large stay in the file until needed.
LAZY_THRESHOLD_BYTES = 4096
COPY_CHUNK_BYTES = 16 * 2**20

_LEN = 2  # wire type of length-delimited fields
GRAPH_FIELD = 7  # ModelProto.graph
INITIALIZER_FIELD = 5  # GraphProto.initializer
RAW_DATA_FIELD = 9  # TensorProto.raw_data


# ---- wire format -------------------------------------------------------------------------
def _read_varint(buffer: bytes | mmap.mmap, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(
    buffer: bytes | mmap.mmap, start: int, end: int
) -> Iterator[tuple[int, int, int, int, int]]:
    """``(field, wire_type, field_start, payload_start, field_end)`` for each field in a message."""
    position = start
    while position < end:
        field_start = position
        key, position = _read_varint(buffer, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _read_varint(buffer, position)
            payload = field_start
        elif wire_type == 1:
            payload, position = position, position + 8
        elif wire_type == 5:
            payload, position = position, position + 4
        elif wire_type == _LEN:
            length, payload = _read_varint(buffer, position)
            position = payload + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if position > end:
            raise ValueError("truncated protobuf message")
        yield field, wire_type, field_start, payload, position


# ---- reading -----------------------------------------------------------------------------
def read_lazy(path: Path) -> onnx.ModelProto:
    """Parse ``path`` leaving large initializers' bytes in the file (see module doc)."""
    with (
        open(path, "rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer,
    ):
        size = len(buffer)
        rest = bytearray()
        graph_region: tuple[int, int] | None = None
        for field, wire_type, field_start, payload, field_end in _fields(buffer, 0, size):
            if field == GRAPH_FIELD and wire_type == _LEN:
                graph_region = (payload, field_end)
            else:
                rest += buffer[field_start:field_end]
        model = onnx.ModelProto()
        model.ParseFromString(bytes(rest))
        if graph_region is not None:
            model.graph.CopyFrom(_read_graph(buffer, *graph_region, path.name))
        return model


def _read_graph(buffer: mmap.mmap, start: int, end: int, location: str) -> onnx.GraphProto:
    rest = bytearray()
    initializers = []
    for field, wire_type, field_start, payload, field_end in _fields(buffer, start, end):
        if field == INITIALIZER_FIELD and wire_type == _LEN:
            initializers.append(_read_tensor(buffer, payload, field_end, location))
        else:
            rest += buffer[field_start:field_end]
    graph = onnx.GraphProto()
    graph.ParseFromString(bytes(rest))
    graph.initializer.extend(initializers)
    return graph


def _read_tensor(buffer: mmap.mmap, start: int, end: int, location: str) -> onnx.TensorProto:
    rest = bytearray()
    raw: tuple[int, int] | None = None
    for field, wire_type, field_start, payload, field_end in _fields(buffer, start, end):
        if (
            field == RAW_DATA_FIELD
            and wire_type == _LEN
            and field_end - payload >= LAZY_THRESHOLD_BYTES
        ):
            raw = (payload, field_end - payload)
        else:
            rest += buffer[field_start:field_end]
    tensor = onnx.TensorProto()
    tensor.ParseFromString(bytes(rest))
    if raw is not None:
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", location),
            ("offset", str(raw[0])),
            ("length", str(raw[1])),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return tensor


# ---- tensor values -----------------------------------------------------------------------
def external_source(tensor: onnx.TensorProto, base_dir: Path) -> tuple[Path, int, int] | None:
    """``(file, offset, length)`` of an external tensor's bytes, None for an inline one."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    info = {entry.key: entry.value for entry in tensor.external_data}
    path = base_dir / info["location"]
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else path.stat().st_size - offset
    return path, offset, length


# Types whose raw bytes are plain little-endian arrays of one numpy dtype each.
_PLAIN_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.INT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
    }
)


def tensor_array(tensor: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    """The value of ``tensor``, reading external bytes straight from their file.

    Plain numeric types are viewed in place (no copy through a TensorProto); the rest goes
    through onnx's own conversion.
    """
    source = external_source(tensor, base_dir) if base_dir is not None else None
    if source is None:
        return numpy_helper.to_array(tensor)
    data = _read_bytes(*source)
    if tensor.data_type in _PLAIN_TYPES:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
        return np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.dims))
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
        source = external_source(tensor, base_dir)
        if source is not None:
            tensor.raw_data = _read_bytes(*source)
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
    return full


def _read_bytes(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


# ---- writing -----------------------------------------------------------------------------
def write_model(
    model: onnx.ModelProto,
    handle: BinaryIO,
    base_dir: Path | None,
    *,
    data_handle: BinaryIO | None = None,
    data_location: str = "",
    external_threshold: int = 1024,
) -> None:
    """Serialize ``model`` into ``handle``, streaming tensor bytes.

    With ``data_handle``, tensors of ``external_threshold`` bytes or more go to that file
    (named ``data_location`` in the model) instead of inline.
    """
    head, tail = _split(model, GRAPH_FIELD, message_type=onnx.ModelProto)
    handle.write(head)
    if model.HasField("graph"):
        graph_head, graph_tail = _split(
            model.graph, INITIALIZER_FIELD, message_type=onnx.GraphProto
        )
        pieces = [
            _TensorWriter(t, base_dir, data_handle, data_location, external_threshold)
            for t in model.graph.initializer
        ]
        body = len(graph_head) + len(graph_tail) + sum(piece.field_size for piece in pieces)
        handle.write(_key(GRAPH_FIELD) + _encode_varint(body))
        handle.write(graph_head)
        for piece in pieces:
            piece.write(handle)
        handle.write(graph_tail)
    handle.write(tail)


def _key(field: int) -> bytes:
    return _encode_varint(field << 3 | _LEN)


def _split(message: object, field_number: int, *, message_type: type) -> tuple[bytes, bytes]:
    """Serialized fields numbered below and above ``field_number`` (that field left out).

    Built field by field, and the excluded field is never read, so a large one (a tensor's
    ``raw_data``) is not copied.
    """
    low, high = message_type(), message_type()
    for descriptor in message.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if descriptor.number == field_number:
            continue
        name = descriptor.name
        if descriptor.is_repeated:
            values = getattr(message, name)
            if not len(values):
                continue
        elif not message.HasField(name):  # type: ignore[attr-defined]
            continue
        target = low if descriptor.number < field_number else high
        value = getattr(message, name)
        if descriptor.is_repeated:
            getattr(target, name).extend(value)
        elif descriptor.message_type is not None:
            getattr(target, name).CopyFrom(value)
        else:
            setattr(target, name, value)
    return low.SerializeToString(), high.SerializeToString()


class _TensorWriter:
    """Writes one initializer field, copying external bytes from their file in chunks."""

    def __init__(
        self,
        tensor: onnx.TensorProto,
        base_dir: Path | None,
        data_handle: BinaryIO | None,
        data_location: str,
        external_threshold: int,
    ) -> None:
        self.source = external_source(tensor, base_dir) if base_dir is not None else None
        if self.source is None and tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(
                f"tensor {tensor.name!r} refers to external data but no folder was given"
            )
        inline_length = self.source[2] if self.source else len(tensor.raw_data)
        self.to_data_file = (
            data_handle is not None
            and inline_length >= external_threshold
            and (self.source is not None or tensor.HasField("raw_data"))
        )
        self.tensor = tensor
        self.data_handle = data_handle
        self.data_location = data_location
        self.body = b""  # the light tensor proto, for tensors moved to the data file
        if self.to_data_file or self.source is not None:
            head, tail = _split(tensor, RAW_DATA_FIELD, message_type=onnx.TensorProto)
            self.head, self.tail = head, _without_external_fields(tail)
            self.length = inline_length
            if self.to_data_file:
                self.body_size = -1  # known once the data offset is known
            else:
                raw_key = _encode_varint(RAW_DATA_FIELD << 3 | _LEN) + _encode_varint(self.length)
                self.raw_key = raw_key
                self.body_size = len(head) + len(raw_key) + self.length + len(self.tail)
        else:
            # Serialized only when written: holding every body at once would double memory.
            self.body_size = tensor.ByteSize()
        if self.to_data_file:
            self._place_in_data_file()

    def _place_in_data_file(self) -> None:
        assert self.data_handle is not None
        offset = self.data_handle.tell()
        if self.source is not None:
            _copy_range(*self.source, self.data_handle)
        else:
            self.data_handle.write(self.tensor.raw_data)
        light = onnx.TensorProto()
        light.ParseFromString(self.head + self.tail)
        light.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", self.data_location),
            ("offset", str(offset)),
            ("length", str(self.length)),
        ):
            entry = light.external_data.add()
            entry.key, entry.value = key, value
        self.body = light.SerializeToString()
        self.body_size = len(self.body)

    @property
    def field_size(self) -> int:
        return len(_key(INITIALIZER_FIELD)) + len(_encode_varint(self.body_size)) + self.body_size

    def write(self, handle: BinaryIO) -> None:
        handle.write(_key(INITIALIZER_FIELD) + _encode_varint(self.body_size))
        if self.to_data_file:
            handle.write(self.body)
            return
        if self.source is None:
            handle.write(self.tensor.SerializeToString())
            return
        handle.write(self.head)
        handle.write(self.raw_key)
        _copy_range(*self.source, handle)
        handle.write(self.tail)


def _without_external_fields(serialized: bytes) -> bytes:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(serialized)
    tensor.ClearField("external_data")
    tensor.ClearField("data_location")
    return tensor.SerializeToString()


def _copy_range(path: Path, offset: int, length: int, target: BinaryIO) -> None:
    """Append ``length`` bytes of ``path`` from ``offset`` to ``target``.

    In the kernel (``os.copy_file_range``) where the platform and both files allow it, so the
    bytes never pass through Python; in 16 MiB chunks otherwise.
    """
    with open(path, "rb") as source:
        if _copy_in_kernel(source, offset, length, target):
            return
        source.seek(offset)
        remaining = length
        while remaining:
            chunk = source.read(min(COPY_CHUNK_BYTES, remaining))
            if not chunk:
                raise OSError(f"{path} ended before its tensor data did")
            target.write(chunk)
            remaining -= len(chunk)


def _copy_in_kernel(source: BinaryIO, offset: int, length: int, target: BinaryIO) -> bool:
    copy = getattr(os, "copy_file_range", None)
    try:
        target_fd = target.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. an in-memory buffer
        return False
    if copy is None:
        return False
    target.flush()
    # Re-sync the buffered writer with the descriptor's offset before and after: the kernel
    # copy moves the descriptor, not the writer's idea of where it is.
    target.seek(0, os.SEEK_CUR)
    copied = 0
    try:
        while copied < length:
            done = copy(source.fileno(), target_fd, length - copied, offset + copied)
            if done == 0:
                raise OSError("the source ended before its tensor data did")
            copied += done
    except OSError as exc:
        if copied == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            return False  # not supported between these files: fall back to chunks
        raise
    finally:
        target.seek(0, os.SEEK_CUR)
    return True


def is_self_reference(tensor: onnx.TensorProto, model_path: Path) -> bool:
    """``tensor`` is one ``read_lazy(model_path)`` left in the model file itself."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    return info.get("location") == model_path.name


def estimated_size(model: onnx.ModelProto, base_dir: Path | None) -> int:
    """About the serialized size of ``model`` with every tensor inline, without serializing it:
    the initializers' byte lengths plus the nodes (whose Constant tensors count there)."""
    payload = 0
    for tensor in model.graph.initializer:
        source = external_source(tensor, base_dir) if base_dir is not None else None
        payload += source[2] if source else tensor.ByteSize()
    return payload + sum(node.ByteSize() for node in model.graph.node)

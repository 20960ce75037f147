"""The protobuf wire format, as much as bnfold's lazy reader and streaming writer need.

https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

LEN = 2  # wire type of length-delimited fields
GRAPH_FIELD = 7  # ModelProto.graph
INITIALIZER_FIELD = 5  # GraphProto.initializer
RAW_DATA_FIELD = 9  # TensorProto.raw_data


def read_varint(buffer: bytes | mmap.mmap, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def fields(
    buffer: bytes | mmap.mmap, start: int, end: int
) -> Iterator[tuple[int, int, int, int, int]]:
    """``(field, wire_type, field_start, payload_start, field_end)`` for each field in a message."""
    position = start
    while position < end:
        field_start = position
        key, position = read_varint(buffer, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = read_varint(buffer, position)
            payload = field_start
        elif wire_type == 1:
            payload, position = position, position + 8
        elif wire_type == 5:
            payload, position = position, position + 4
        elif wire_type == LEN:
            length, payload = read_varint(buffer, position)
            position = payload + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if position > end:
            raise ValueError("truncated protobuf message")
        yield field, wire_type, field_start, payload, position


def key(field: int) -> bytes:
    """The key of length-delimited field number ``field``."""
    return encode_varint(field << 3 | LEN)

"""Bytes of a tensor in a file: read into memory when small, mapped from the file when large.

The lowest layer of storage: ``lazyio`` reads tensors left in their file through it, and
``recipes`` read the source slices of a scaled weight through it.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

# Tensors at least this large are mapped from their file rather than read into new memory:
# reading copies every byte into freshly allocated (zero-filled) pages, mapping shares the
# page cache. Smaller ones are read (they may be cached, and a map holds a file descriptor).
MAP_THRESHOLD_BYTES = 1 << 20


def read_array(path: Path, offset: int, length: int, dtype: np.dtype) -> np.ndarray:
    """A read-only array of the ``length`` bytes at ``offset`` of ``path`` (mapped when large)."""
    if length < MAP_THRESHOLD_BYTES:
        data = read_bytes(path, offset, length)
        if len(data) != length:
            raise OSError(f"{path} ended before its tensor data did")
        return np.frombuffer(data, dtype=dtype)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as handle:
        if handle.seek(0, 2) < offset + length:
            raise OSError(f"{path} ended before its tensor data did")
        mapped = mmap.mmap(
            handle.fileno(), offset + length - start, access=mmap.ACCESS_READ, offset=start
        )
    # The array keeps the map open; it is unmapped when the last view of it goes.
    return np.frombuffer(mapped, dtype=dtype, count=length // dtype.itemsize, offset=offset - start)


def read_bytes(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)

"""A changed tensor as a recipe, evaluated chunk by chunk while the output is written.

A fold into a large weight ``W`` whose bytes are still in their file (``bnfold.storage.lazyio``) does
not compute ``W'`` at plan time. It records

    W' = round(… round(round(W · f₁) · f₂) …)      (one stage per fold into this tensor)

where ``W`` is the tensor's bytes in its file (location, offset, dtype, shape), each ``fᵢ`` is a
float64 array of per-slice factors broadcastable to ``W`` (``[C,1,1,1]`` for a Conv's output
channels, ``[1,N]`` for a MatMul's columns, ``[C_in, C_out/g, 1, 1]`` for a ConvTranspose),
and ``round`` is the one cast of the float64 product to ``W``'s dtype. Every element is
computed by the same float64 operations as the in-memory formula
(``foldmath.scale_along`` + ``foldmath.round_to``), so the bytes are identical; only the
order in which elements are computed changes (whole leading-axis slices, ``CHUNK_BYTES`` at
a time).

The recipe lives in the TensorProto itself, so it survives copies of the model: the tensor
keeps ``data_location = EXTERNAL`` with the source's ``location``/``offset``/``length`` plus
one ``bnfold-factors``/``bnfold-factors-shape`` entry pair per stage (base64 of the
little-endian float64 factors). Only bnfold reads these: ``lazyio.tensor_array`` and
``lazyio.load_all`` evaluate them, ``streamwrite`` streams them, and ``lazyio.external_source``
refuses them so that nothing can copy the unscaled source bytes by mistake.

The recipe is storage's: this module only encodes, decodes and evaluates it. A fold makes one
(``bnfold.engine.scaled_weights``), where the checks a fold needs (finite result,
float16/bfloat16 rounding error) are computed at plan time from the weight the pattern
already read, chunk by chunk, without keeping the result.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx

from . import dtypes
from .filebytes import read_array

FACTORS_KEY = "bnfold-factors"
FACTORS_SHAPE_KEY = "bnfold-factors-shape"
# Elements are evaluated this many bytes (of the result) at a time: large enough for
# sequential I/O, small enough that a few chunks in flight cost little memory.
CHUNK_BYTES = 8 * 2**20
# Chunks computed ahead of the one being written (numpy and file I/O release the GIL, so
# reading and scaling the next chunks overlaps writing this one).
CHUNKS_AHEAD = 3
# Tensors smaller than this are computed in memory as before: a recipe saves nothing there.
MIN_RECIPE_BYTES = 1 << 20


@dataclass(frozen=True, eq=False)
class ScaledTensor:
    """``round(… round(W · f₁) … · fₙ)`` of the bytes of ``W`` in ``base_dir / location``."""

    location: str
    offset: int
    data_type: int  # the onnx element type of W and of the result
    shape: tuple[int, ...]
    stages: tuple[np.ndarray, ...]
    base_dir: Path
    # Known at plan time (from the weight the fold read): no element overflows.
    known_finite: bool | None = field(default=None, compare=False)

    @property
    def dtype(self) -> np.dtype:
        return dtypes.numpy_dtype(self.data_type)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def path(self) -> Path:
        return self.base_dir / self.location

    def then(self, factors: np.ndarray) -> ScaledTensor:
        """This tensor, scaled once more (and rounded again, as a second fold would)."""
        return replace(
            self, stages=(*self.stages, _as_factors(factors, self.shape)), known_finite=None
        )

    # ---- evaluation ----------------------------------------------------------------------
    def rows(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` of the leading axis of the result."""
        row_items = int(np.prod(self.shape[1:], dtype=np.int64)) if self.shape else 1
        itemsize = self.dtype.itemsize
        value = read_array(
            self.path,
            self.offset + start * row_items * itemsize,
            (stop - start) * row_items * itemsize,
            self.dtype,
        )
        value = value.reshape((stop - start, *self.shape[1:]) if self.shape else ())
        for factors in self.stages:
            block = factors if not self.shape or factors.shape[0] == 1 else factors[start:stop]
            value = _scale_and_round(value, block, self.dtype)
        return value

    def chunk_ranges(self, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
        """Leading-axis ranges of about ``chunk_bytes`` (``CHUNK_BYTES``) each."""
        chunk_bytes = chunk_bytes or CHUNK_BYTES
        if not self.shape:
            return [(0, 1)]
        rows = self.shape[0]
        row_bytes = max(1, self.nbytes // max(rows, 1))
        step = max(1, chunk_bytes // row_bytes)
        return [(start, min(start + step, rows)) for start in range(0, rows, step)]

    def chunks(self, chunk_bytes: int | None = None) -> Iterator[np.ndarray]:
        """The result in order, whole leading-axis slices at a time, computed ahead in threads."""
        ranges = self.chunk_ranges(chunk_bytes)
        if len(ranges) == 1:
            yield self.rows(*ranges[0])
            return
        pending: deque[Future[np.ndarray]] = deque()
        pool = _pool()
        for start, stop in ranges:
            pending.append(pool.submit(self.rows, start, stop))
            if len(pending) > CHUNKS_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def evaluate(self) -> np.ndarray:
        """The whole result in memory (``result.model``, a second fold into this tensor)."""
        if not self.shape or self.shape[0] == 0:
            return self.rows(0, self.shape[0] if self.shape else 1).reshape(self.shape)
        out = np.empty(self.shape, dtype=self.dtype)
        position = 0
        for chunk in self.chunks():
            out[position : position + chunk.shape[0]] = chunk
            position += chunk.shape[0]
        return out

    def write_to(self, handle: BinaryIO) -> None:
        """Append the result's little-endian bytes to ``handle``."""
        for chunk in self.chunks():
            handle.write(dtypes.raw_bytes(chunk, self.data_type))

    def all_finite(self) -> bool:
        """No element overflowed (known from plan time, else evaluated chunk by chunk)."""
        if self.known_finite is not None:
            return self.known_finite
        return all(bool(np.all(np.isfinite(chunk))) for chunk in self.chunks())


def _scale_and_round(value: np.ndarray, factors: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``(value in float64 · factors)`` cast once to ``dtype`` (``foldmath`` formula).

    For numpy's own float types the product is formed by one ufunc loop in float64 whose
    results are cast to ``dtype`` as they are stored: the same two roundings, element by
    element, as ``(value.astype(float64) * factors).astype(dtype)``, without the two
    full-size temporaries (about 3x faster).
    """
    with np.errstate(over="ignore"):  # overflow is found by the fold's check, not here
        if np.dtype(dtype).type in _NATIVE_FLOATS:
            out = np.empty(value.shape, dtype=dtype)
            np.multiply(value, factors, out=out, dtype=np.float64, casting="unsafe")
            return out
        exact = np.asarray(value, dtype=np.float64) * factors
        return exact.astype(dtype)


_NATIVE_FLOATS = (np.float16, np.float32, np.float64)


def _as_factors(factors: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``factors`` as float64 of ``len(shape)`` dims whose leading dim is 1 or ``shape[0]``."""
    factors = np.asarray(factors, dtype=np.float64)
    factors = factors.reshape((1,) * (len(shape) - factors.ndim) + factors.shape)
    if np.broadcast_shapes(factors.shape, shape) != shape:
        raise ValueError(f"factors {factors.shape} do not broadcast to {shape}")
    return factors


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="bnfold-recipe"
        )
    return _POOL


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: make a new pool when needed."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


# ---- in the TensorProto ------------------------------------------------------------------
def is_recipe(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL and any(
        entry.key == FACTORS_KEY for entry in tensor.external_data
    )


def recipe_of(tensor: onnx.TensorProto, base_dir: Path | None) -> ScaledTensor | None:
    """The recipe ``tensor`` holds, or None for any other tensor."""
    if not is_recipe(tensor):
        return None
    if base_dir is None:
        raise ValueError(f"tensor {tensor.name!r} is a bnfold recipe but no model folder is known")
    info: dict[str, str] = {}
    factors: list[bytes] = []
    shapes: list[tuple[int, ...]] = []
    for entry in tensor.external_data:
        if entry.key == FACTORS_KEY:
            factors.append(base64.b64decode(entry.value))
        elif entry.key == FACTORS_SHAPE_KEY:
            shapes.append(tuple(int(d) for d in entry.value.split(",") if d))
        else:
            info[entry.key] = entry.value
    stages = tuple(
        np.frombuffer(data, dtype="<f8").reshape(shape)
        for data, shape in zip(factors, shapes, strict=True)
    )
    return _referenced(tensor, info, stages, base_dir)


def _referenced(
    tensor: onnx.TensorProto,
    info: dict[str, str],
    stages: tuple[np.ndarray, ...],
    base_dir: Path,
) -> ScaledTensor:
    """The recipe of ``tensor``'s bytes at ``info``'s location and offset, then ``stages``."""
    dims = tuple(int(d) for d in tensor.dims)
    offset = int(info.get("offset", 0))
    return ScaledTensor(info["location"], offset, tensor.data_type, dims, stages, base_dir)


def store_recipe(tensor: onnx.TensorProto, recipe: ScaledTensor) -> None:
    """Let ``tensor`` (its value fields already cleared) hold ``recipe``."""
    tensor.ClearField("raw_data")
    tensor.ClearField("external_data")
    tensor.ClearField("dims")
    tensor.dims.extend(recipe.shape)
    tensor.data_type = recipe.data_type
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entries = [
        ("location", recipe.location),
        ("offset", str(recipe.offset)),
        ("length", str(recipe.nbytes)),
    ]
    for factors in recipe.stages:
        data = np.ascontiguousarray(factors, dtype="<f8").tobytes()
        entries.append((FACTORS_KEY, base64.b64encode(data).decode("ascii")))
        entries.append((FACTORS_SHAPE_KEY, ",".join(str(d) for d in factors.shape)))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def source_recipe(tensor: onnx.TensorProto, base_dir: Path | None) -> ScaledTensor | None:
    """``tensor`` as a recipe with no stage yet (its bytes lie in a file), or its recipe."""
    if base_dir is None or tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    recipe = recipe_of(tensor, base_dir)
    if recipe is not None:
        return recipe
    info = {entry.key: entry.value for entry in tensor.external_data}
    if tensor.data_type not in _FLOAT_TYPES or "location" not in info:
        return None
    return _referenced(tensor, info, (), base_dir)


_FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)

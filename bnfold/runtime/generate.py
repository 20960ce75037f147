"""Random input sets from specs.

Floating inputs are standard-normal ``N(0, 1)``, or uniform in ``[low, high)`` when a range is
set. Integers are uniform in ``[low, high)``, with the first element ``low`` and the last
``high - 1`` so a tensor spans its valid range (a one-element integer: random in input set 0,
``high - 1`` in set 1, ``low`` in set 2); a generated integer tensor is never all zeros.
Booleans are fair coins holding both values (first True, last False if all were True); a
one-element boolean, which cannot hold both, is True in even input sets and False in odd ones
(``run``), so two input sets take both branches of an If it decides. Each input gets its own random stream seeded by
``(seed, crc32(name))``: adding an input to a model does not change the data generated for
the others.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import UsageError
from .specs import InputSpec, is_floating
from .valueranges import DEFAULT_INT_RANGE

_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def generate_inputs(specs: list[InputSpec], seed: int, run: int = 0) -> dict[str, np.ndarray]:
    """Input set number ``run`` for ``specs`` (see the module docstring for the distributions)."""
    return {spec.name: _generate_one(spec, _rng(seed, spec.name), run) for spec in specs}


def alternating(spec: InputSpec) -> bool:
    """A one-element boolean: it takes its two values in alternate input sets."""
    return spec.dtype.kind == "b" and int(np.prod(spec.shape, dtype=np.int64)) == 1


def _generate_one(spec: InputSpec, rng: np.random.Generator, run: int) -> np.ndarray:
    try:
        # np.asarray: a rank-0 draw is a numpy scalar, which onnxruntime does not take.
        return np.asarray(_draw(spec, rng, run))
    except (MemoryError, ValueError) as exc:
        # The specs were checked; this is what is left (an allocation that does not fit).
        raise UsageError(
            f"cannot generate input {spec.name!r} of shape {list(spec.shape)}: {type(exc).__name__}",
            hint=f"set a smaller size with --shape {spec.name}=... or --dim NAME=N, or pass --inputs",
        ) from None


def _draw(spec: InputSpec, rng: np.random.Generator, run: int) -> np.ndarray:
    shape, dtype = spec.shape, spec.dtype
    if is_floating(dtype):
        if spec.low is None or spec.high is None:
            floats = rng.standard_normal(shape)
        else:
            floats = rng.uniform(spec.low, spec.high, shape)
        return np.asarray(floats).astype(dtype)
    if dtype.kind in "iu":
        low = int(spec.low if spec.low is not None else DEFAULT_INT_RANGE[0])
        high = int(spec.high if spec.high is not None else DEFAULT_INT_RANGE[1])
        values = np.asarray(rng.integers(low, high, size=shape, dtype=np.int64))
        if values.size > 1:
            values.flat[0], values.flat[-1] = low, high - 1
        elif values.size == 1 and run % 3:
            values.flat[0] = high - 1 if run % 3 == 1 else low
            return values.astype(dtype)
        if values.size and not values.any():
            nonzero = next((v for v in (1, low, high - 1) if low <= v < high and v != 0), None)
            if nonzero is not None:
                values.flat[0] = nonzero
        return values.astype(dtype)
    if dtype.kind == "b":
        flags = np.asarray(rng.random(shape) < 0.5)
        if flags.size == 1:
            flags.flat[0] = run % 2 == 0
        elif flags.size:
            flags.flat[0] = True  # never all False
            if flags.size > 1 and flags.all():
                flags.flat[-1] = False
        return flags
    if dtype.kind in "USO":
        picks = rng.integers(0, len(_WORDS), size=shape)
        return np.asarray(_WORDS, dtype=np.str_)[picks]
    raise UsageError(f"cannot generate data of type {dtype} for input {spec.name!r}")

"""Input sets for benchmarking: one per batch size, identical for both models.

Inputs are made exactly as ``bnfold verify`` makes them (``bnfold.runtime.inputs``): same
shape rules (``--shape``, ``--dim``, declared sizes, default 1), same distributions, same
seeding, or read from ``--inputs FILE.npz``.

Batch sweep rule (``--batch 1,8,32``): for each batch size B, dimension 0 of every input
whose dimension 0 the model declares symbolic (``dim_param``) or unknown is set to B, after
``--shape`` and ``--dim`` are applied. Inputs with a fixed dimension 0 keep it, because
onnxruntime rejects any other size for them. A model with no such input cannot be swept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from ..errors import UsageError
from ..runtime.inputs import InputSpec, generate_inputs, graph_inputs, input_specs, load_inputs
from ..runtime.settings import InputPlan, InputSource


@dataclass
class FeedSet:
    """Inputs for one batch setting; ``batch`` is None when no input has a batch axis."""

    batch: int | None
    feeds: dict[str, np.ndarray]


def batch_axis_inputs(specs: Sequence[InputSpec]) -> list[str]:
    """Names of inputs whose declared dimension 0 is symbolic or unknown."""
    return [
        spec.name
        for spec in specs
        if spec.declared_shape is not None
        and len(spec.declared_shape) > 0
        and not isinstance(spec.declared_shape[0], int)
    ]


def batch_symbols(specs: Sequence[InputSpec]) -> list[str]:
    """Symbolic names (``dim_param``) declared for dimension 0 of any input, sorted."""
    found = set()
    for spec in specs:
        first = spec.declared_shape[0] if spec.declared_shape else None
        if isinstance(first, str):
            found.add(first)
    return sorted(found)


def with_batch(specs: Sequence[InputSpec], names: Sequence[str], batch: int) -> list[InputSpec]:
    """Copies of ``specs`` with dimension 0 of the inputs in ``names`` set to ``batch``."""
    chosen = set(names)
    return [
        replace(spec, shape=(batch, *spec.shape[1:])) if spec.name in chosen else replace(spec)
        for spec in specs
    ]


def build_feed_sets(
    model: onnx.ModelProto, plan: InputPlan, batches: Sequence[int] | None = None
) -> tuple[list[FeedSet], list[str]]:
    """One ``FeedSet`` per batch size (or a single one without ``batches``), plus notes.

    Inputs are sized and filled as ``plan`` says (its first ``inputs`` source, if any, is
    read instead; ``runs`` is not used: bench times one input set).
    A batch size is applied through ``--dim`` for the symbols that name a dimension 0, so an
    input using the same symbol elsewhere (``mask: [N, N]``) stays consistent; dimension 0
    of the remaining batch-axis inputs (unknown dims, or sizes given by ``--shape``) is then
    set directly.
    """
    shapes, dims, ranges = dict(plan.shapes), dict(plan.dims), dict(plan.ranges)
    default_dim, seed = plan.default_dim, plan.seed
    inputs = plan.inputs[0] if plan.inputs else None
    specs, notes = input_specs(
        model, shapes=shapes, dims=dims, ranges=ranges, default_dim=default_dim
    )
    batched = batch_axis_inputs(specs)
    if inputs is not None:
        if batches:
            raise UsageError(
                "--batch cannot be combined with --inputs (the file fixes the shapes)",
                hint="drop --batch, or drop --inputs to generate inputs per batch size",
            )
        feeds = _given_inputs(inputs, specs)
        return [FeedSet(_fed_batch(feeds, batched), feeds)], notes
    if not batches:
        feeds = generate_inputs(specs, seed)
        return [FeedSet(_fed_batch(feeds, batched), feeds)], notes

    if not batched:
        raise UsageError(
            "--batch needs an input whose first dimension is symbolic; every input of the original "
            "has a fixed first dimension",
            hint="export the model with a dynamic batch axis, or measure each size with --shape",
        )
    invalid = [b for b in batches if b < 1]
    if invalid:
        raise UsageError(f"--batch sizes must be at least 1, got {invalid[0]}")
    symbols = batch_symbols(specs)
    overridden = [symbol for symbol in symbols if symbol in dims]
    feed_sets: list[FeedSet] = []
    for batch in batches:
        batch_dims = {**dims, **dict.fromkeys(symbols, batch)}
        batch_specs, notes_for_batch = input_specs(
            model, shapes=shapes, dims=batch_dims, ranges=ranges, default_dim=default_dim
        )
        feeds = generate_inputs(with_batch(batch_specs, batched, batch), seed)
        feed_sets.append(FeedSet(batch, feeds))
    notes = notes_for_batch + [f"--batch sets dimension 0 of {', '.join(repr(n) for n in batched)}"]
    if overridden:
        notes.append(f"--batch overrides --dim for {', '.join(overridden)}")
    return feed_sets, notes


def feeds_for(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], role: str
) -> dict[str, np.ndarray]:
    """The subset of ``feeds`` that ``model`` takes; raise when it needs an input not there.

    Both models get the same arrays; the candidate may take fewer inputs than the original
    (an input that only fed a folded BatchNormalization parameter), never others.
    """
    names = [value.name for value in graph_inputs(model)]
    missing = [name for name in names if name not in feeds]
    if missing:
        raise UsageError(
            f"the {role} has inputs the original does not: {', '.join(missing)}",
            hint="bench compares two versions of one model; both must take the same inputs",
        )
    return {name: feeds[name] for name in names}


def _given_inputs(inputs: InputSource, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        expected = {spec.name for spec in specs}
        if set(inputs) != expected:
            raise UsageError(
                f"inputs do not match the model's inputs ({', '.join(sorted(expected))})",
                hint="pass one array per graph input, by name",
            )
        return {name: np.asarray(inputs[name]) for name in inputs}
    return load_inputs(inputs, specs)


def _fed_batch(feeds: Mapping[str, np.ndarray], batched: Sequence[str]) -> int | None:
    """The fed size of the batch axis when every batch-axis input agrees on it, else None."""
    sizes = {
        int(feeds[name].shape[0]) for name in batched if name in feeds and feeds[name].ndim > 0
    }
    return sizes.pop() if len(sizes) == 1 else None

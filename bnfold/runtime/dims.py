"""Concrete shapes for the graph inputs: options first, then sizes derived from the graph.

Per dim, in order: ``--shape name=AxBxC`` (whole shape), ``--dim symbol=N`` (by symbolic dim
name), the declared static size, ``--default-dim N`` when given, else a size chosen here.

Chosen sizes (no ``--default-dim``): axis 0, the batch, is 1. The other free dims (spatial
dims, sequence lengths) are set together to one size ``s``, the first rule that applies:

1. **The size the layers were built for**, when the graph fixes it (``builtfor.py``): a
   Gemm/MatMul whose weight fixes the feature count after a Flatten, a Reshape to a constant
   shape, a fixed-kernel pool ending the spatial path. ResNet-50 with a 7×7 AveragePool after
   a stride-32 path: 224.
2. **224 for an image input** (``IMAGE_SIZE``): rank 4 with at most 4 channels on axis 1
   (NCHW) or axis 3 (NHWC) and both spatial axes free, the input size of most vision models.
3. Otherwise, when the graph has spatial ops (Conv, ConvTranspose, pooling), **twice the
   smallest size they accept**: those need an input at least as large as their receptive
   field, which depends on every kernel, stride, dilation and pad on the way. Rather than
   re-derive each op's arithmetic, ``s`` takes each size of ``SIZE_LADDER`` in turn and onnx's
   strict shape inference is run: ``n_min`` is the first size at which inference succeeds
   with every inferred dim positive, and ``s`` the first ladder size ``>= 2·n_min`` that passes
   too, so the deepest layer sees more than one position (border and interior). When no
   ladder size passes, ``s = 1``.
4. Otherwise (an MLP, a sequence model): 1.

A chosen size is capped so that no input gets more than ``CHOSEN_ELEMENTS_CAP`` elements
(halved until it fits; the note says so). Each input with a chosen dim gets one note
(``ShapeNote``) saying its shape and why; reports print these before their tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod

import onnx

from ..errors import UsageError
from .builtfor import ShapesAt, built_for
from .shapeprobe import all_positive, infer, sized_copy, weightless
from .specs import declared_shape, fmt_declared, fmt_shape

# Sizes tried for spatial dims: powers of two (divisible by every stride product) and the
# input sizes common vision models are exported for (a Flatten->Gemm fixes the size).
SIZE_LADDER: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 224, 256, 299, 320, 384, 512, 640)
# What an image input's free spatial dims default to when the graph does not fix them.
IMAGE_SIZE = 224
# Most channels an input may have on its channel axis to count as an image.
IMAGE_MAX_CHANNELS = 4
SPATIAL_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "ConvInteger",
        "QLinearConv",
        "DeformConv",
        "MaxPool",
        "AveragePool",
        "LpPool",
        "MaxRoiPool",
    }
)
# A generated input larger than this is a usage error, not a MemoryError later.
MAX_INPUT_ELEMENTS = 1 << 28
# A size chosen here keeps every input within this many elements (64 MiB of float32).
CHOSEN_ELEMENTS_CAP = 1 << 24
OVERRIDE_HINT = "override with --dim NAME=N, --shape INPUT=AxBxC or --default-dim N"

# A free dim: (input name, axis, symbol or None for an unnamed/unknown dim).
FreeDim = tuple[str, int, str | None]


class ShapeNote(str):
    """A note saying how an input's shape was chosen: reports print these before their
    tables (a plain ``str`` everywhere else, in JSON too)."""

    __slots__ = ()


@dataclass(frozen=True)
class Choice:
    """One size for a group of free dims, and why."""

    size: int
    why: str


def resolve_shapes(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    shapes: dict[str, tuple[int, ...]],
    dims: dict[str, int],
    default_dim: int | None,
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """``{input: concrete shape}`` and one ``ShapeNote`` per input with a dim not given."""
    resolved: dict[str, list[int]] = {}
    free: list[FreeDim] = []
    for vi in inputs:
        declared = declared_shape(vi)
        if vi.name in shapes:
            resolved[vi.name] = list(_checked_shape(vi.name, declared, shapes[vi.name]))
            continue
        if declared is None:
            raise UsageError(
                f"input {vi.name!r} has no declared shape (not even its rank)",
                hint=f"pass --shape {vi.name}=AxBxC or --inputs FILE.npz",
            )
        shape: list[int] = []
        for axis, dim in enumerate(declared):
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(int(dims[dim]))
            else:
                shape.append(0)
                free.append((vi.name, axis, dim))
        resolved[vi.name] = shape

    notes: list[str] = []
    if free:
        chosen = _choose(model, inputs, resolved, free, default_dim)
        for name, axis, symbol in free:
            resolved[name][axis] = chosen[_label((name, axis, symbol))].size
        notes = [_note(name, resolved[name], free, chosen) for name in resolved]
        notes = [note for note in notes if note]
    result = {name: tuple(shape) for name, shape in resolved.items()}
    for name, final in result.items():
        _check_size(name, final)
    return result, notes


def _checked_shape(
    name: str, declared: tuple[int | str | None, ...] | None, shape: tuple[int, ...]
) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if declared is not None:
        if len(declared) != len(shape):
            raise UsageError(
                f"--shape {name}={fmt_shape(shape)} has rank {len(shape)}, the model declares rank {len(declared)}",
                hint=f"declared shape: {fmt_declared(declared)}",
            )
        for axis, (want, got) in enumerate(zip(declared, shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise UsageError(
                    f"--shape {name}={fmt_shape(shape)} sets dim {axis} to {got}, the model fixes it at {want}",
                    hint=f"declared shape: {fmt_declared(declared)}",
                )
    return shape


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    count = prod(shape)
    if count > MAX_INPUT_ELEMENTS:
        raise UsageError(
            f"input {name!r} would have shape {fmt_shape(shape)} ({count:,} elements), too large to generate",
            hint=f"set smaller sizes with --shape {name}=... or --dim NAME=N",
        )


def _label(free: FreeDim) -> str:
    name, axis, symbol = free
    return symbol if symbol is not None else f"{name}[{axis}]"


def _note(name: str, shape: list[int], free: list[FreeDim], chosen: Mapping[str, Choice]) -> str:
    """``input 'x' 1x3x224x224: N set to 1 (the batch); H, W set to 224 (...)``, or ''."""
    groups: dict[Choice, list[str]] = {}
    for free_dim in free:
        if free_dim[0] == name:
            label = _label(free_dim)
            labels = groups.setdefault(chosen[label], [])
            if label not in labels:
                labels.append(label)
    if not groups:
        return ""
    parts = [f"{', '.join(labels)} set to {c.size} ({c.why})" for c, labels in groups.items()]
    return ShapeNote(f"input {name!r} {fmt_shape(shape)}: {'; '.join(parts)}; {OVERRIDE_HINT}")


def _choose(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    resolved: dict[str, list[int]],
    free: list[FreeDim],
    default_dim: int | None,
) -> dict[str, Choice]:
    """A ``Choice`` per free dim label (see the module docstring for the rules)."""
    labels = list(dict.fromkeys(_label(f) for f in free))
    if default_dim is not None:
        return dict.fromkeys(labels, Choice(default_dim, "--default-dim"))
    batch = {_label(f) for f in free if f[1] == 0}
    chosen = dict.fromkeys(batch, Choice(1, "the batch"))
    others = [label for label in labels if label not in batch]
    if others:

        def shapes_at(size: int) -> dict[str, list[int]]:
            trial = {name: list(shape) for name, shape in resolved.items()}
            for free_dim in free:
                name, axis, _ = free_dim
                trial[name][axis] = 1 if _label(free_dim) in batch else size
            return trial

        # Many probes copy the model: copy one without its weights' values.
        skeleton = weightless(model)
        choice = _capped(_free_size(skeleton, inputs, free, set(others), shapes_at), shapes_at)
        chosen.update(dict.fromkeys(others, choice))
    return chosen


def _free_size(
    model: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    free: list[FreeDim],
    labels: set[str],
    shapes_at: ShapesAt,
) -> Choice:
    """Rules 1-4 of the module docstring, in order."""
    found = built_for(model, shapes_at)
    if found is not None:
        return Choice(found.size, found.reason())
    images = {f[0] for f in free if _label(f) in labels and f[1] in _spatial_axes(inputs, f[0])}
    if images:
        return Choice(IMAGE_SIZE, "the default for an image input, rank 4 with few channels")
    if any(node.op_type in SPATIAL_OPS for node in model.graph.node):
        return _ladder_size(model, shapes_at)
    return Choice(1, "no spatial op reads them")


def _spatial_axes(inputs: list[onnx.ValueInfoProto], name: str) -> tuple[int, ...]:
    """The H and W axes of input ``name`` when it is an image, else ().

    An image has rank 4, at most ``IMAGE_MAX_CHANNELS`` static channels on axis 1 (NCHW) or
    axis 3 (NHWC), and both other axes free: an attention mask ``[N, 1, 1, T]`` is no image.
    """
    declared = next((declared_shape(vi) for vi in inputs if vi.name == name), None)
    if declared is None or len(declared) != 4:
        return ()
    for channel, spatial in ((1, (2, 3)), (3, (1, 2))):
        dim = declared[channel]
        few_channels = isinstance(dim, int) and dim <= IMAGE_MAX_CHANNELS
        if few_channels and not any(isinstance(declared[axis], int) for axis in spatial):
            return spatial
    return ()


def _ladder_size(model: onnx.ModelProto, shapes_at: ShapesAt) -> Choice:
    """Smallest ladder size >= 2x the first size every op accepts (see module docstring)."""
    smallest: int | None = None
    for size in SIZE_LADDER:
        if smallest is not None and size < 2 * smallest:
            continue
        if _shapes_work(model, shapes_at(size)):
            if smallest is not None:
                return Choice(size, f"every Conv/pool accepts {smallest}; doubled")
            smallest = size
    if smallest is not None:
        return Choice(smallest, "the smallest size every Conv/pool accepts")
    return Choice(1, f"no size up to {SIZE_LADDER[-1]} passes shape inference")


def _capped(choice: Choice, shapes_at: ShapesAt) -> Choice:
    """``choice``, halved until no input exceeds ``CHOSEN_ELEMENTS_CAP`` elements."""
    size = choice.size
    while size > 1 and max(map(prod, shapes_at(size).values()), default=0) > CHOSEN_ELEMENTS_CAP:
        size //= 2
    if size == choice.size:
        return choice
    return Choice(
        size,
        f"{choice.why}, {choice.size}, capped so that no input exceeds"
        f" {CHOSEN_ELEMENTS_CAP:,} elements",
    )


def _shapes_work(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> bool:
    """onnx strict shape inference succeeds and every inferred dim is positive."""
    inferred = infer(sized_copy(model, shapes), strict=True)
    return inferred is not None and all_positive(inferred)

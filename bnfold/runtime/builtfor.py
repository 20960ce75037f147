"""The spatial size a model's layers were built for, read off the graph.

A network's head fixes what reaches it. A *head* is one of:

- a ``Gemm`` or ``MatMul`` whose constant weight takes ``K`` input features: the tensor fed
  to it must have ``K = C·h·w`` features (a Flatten/Reshape of the last feature map);
- a ``Reshape`` to a constant shape without ``0``/``-1``: its input must have exactly as many
  elements as that shape;
- a pool with a fixed kernel whose output only feeds Flatten/Reshape/Squeeze or is a graph
  output (ResNet's ``AveragePool`` 7×7 at the end): its input must be the kernel's size.

Each head's quantity ``q(s)`` (features, elements, or pooled size) is non-decreasing in the
input's spatial size ``s``: every Conv/pool output size
``floor((s + pads − dilation·(k − 1) − 1) / stride) + 1`` is. So the sizes that meet the head,
``q(s) = target``, form one interval ``[lo, hi]``, found by bisection with onnx shape inference.
Its width is the stride product of the path (``ceil(s/32) = 7`` for ``s`` in 193..224), and the
size chosen is the one inside it divisible by the largest power of two: the size whose strides
the head undoes (``224 = 7·32``). The head used is the first, in graph order, whose quantity
depends on the spatial size (probed at two sizes): a MatMul over a sequence's hidden features
does not, so a sequence model finds no head here. Pools come after the layer heads: a pool
ending in Flatten may still leave a 7×7 map to a Gemm (VGG's last MaxPool has a 2×2 kernel),
so the Gemm or Reshape behind it says more surely what was meant.

A size too small for some op's receptive field gives dims of zero or below (whose products may
be positive again), so any non-positive inferred dim counts as "too small" for the bisection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import prod

import onnx
from onnx import numpy_helper

from .shapeprobe import Dims, all_positive, infer, sized_copy

# Spatial sizes searched: up to 4096 pixels a side. Two probes above most receptive fields
# tell which heads depend on the size.
MAX_SIZE = 4096
PROBE_SIZES = (256, 512)
_ENDS_SPATIAL_PATH = frozenset({"Flatten", "Reshape", "Squeeze"})
_FIXED_KERNEL_POOLS = frozenset({"AveragePool", "MaxPool", "LpPool"})


@dataclass(frozen=True)
class BuiltFor:
    """The size found, the interval of sizes that meet the head, and the head that fixed it."""

    size: int
    low: int
    high: int
    head: str

    def reason(self) -> str:
        """Why this size, for the input note (the stride is the interval's width)."""
        stride = self.high - self.low + 1
        path = f" after a stride-{stride} path" if stride > 1 else ""
        return f"the size {self.head} expects{path}"


@dataclass(frozen=True)
class _Head:
    """A node that fixes a quantity: ``measure(dims)`` reads it from inferred dims."""

    label: str
    target: int
    measure: Callable[[Mapping[str, Dims]], int | None]


# Shapes of the inputs at a spatial size ``s`` (the caller fills every free spatial dim with s).
ShapesAt = Callable[[int], Mapping[str, Sequence[int]]]


def built_for(model: onnx.ModelProto, shapes_at: ShapesAt) -> BuiltFor | None:
    """The size the first size-dependent head of ``model`` expects, or None when no head
    depends on the size or no size up to ``MAX_SIZE`` meets it."""
    heads = _heads(model)
    if not heads:
        return None
    cache: dict[int, Mapping[str, Dims]] = {}

    def dims_at(size: int) -> Mapping[str, Dims]:
        if size not in cache:
            inferred = infer(sized_copy(model, shapes_at(size)), strict=False) or {}
            # Below some op's receptive field, dims go to zero or below (and their products
            # positive again): too small, like a failed inference.
            cache[size] = inferred if all_positive(inferred) else {}
        return cache[size]

    first, second = (dims_at(size) for size in PROBE_SIZES)
    for head in heads:
        low_probe, high_probe = head.measure(first), head.measure(second)
        if low_probe is None or high_probe is None or low_probe == high_probe:
            continue
        return _solve(head, dims_at)
    return None


def _solve(head: _Head, dims_at: Callable[[int], Mapping[str, Dims]]) -> BuiltFor | None:
    """Bisection for ``[lo, hi]`` where the head's quantity is its target (a quantity
    inference cannot tell, None, counts as too small: the input did not reach the head)."""

    def quantity(size: int) -> int | None:
        return head.measure(dims_at(size))

    def below(size: int, *, inclusive: bool) -> bool:
        value = quantity(size)
        return value is None or value < head.target or (inclusive and value == head.target)

    low = _first(lambda size: not below(size, inclusive=False))
    high = _first(lambda size: not below(size, inclusive=True)) - 1
    if low > min(high, MAX_SIZE) or quantity(low) != head.target:
        return None
    return BuiltFor(_most_even(low, high), low, high, head.label)


def _first(holds: Callable[[int], bool]) -> int:
    """The first size in 1..MAX_SIZE where the monotone ``holds`` is true (MAX_SIZE + 1: none)."""
    low, high = 1, MAX_SIZE + 1
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _most_even(low: int, high: int) -> int:
    """The size in ``[low, high]`` divisible by the largest power of two."""
    power = 1 << MAX_SIZE.bit_length()
    while power > 1:
        size = -(-low // power) * power  # the first multiple of power at or above low
        if size <= high:
            return size
        power //= 2
    return low


def _heads(model: onnx.ModelProto) -> list[_Head]:
    graph = model.graph
    constants = {t.name: tuple(t.dims) for t in graph.initializer}
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = tuple(node.attribute[0].t.dims)
            values[node.output[0]] = node.attribute[0].t
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    outputs = {value.name for value in graph.output}
    heads: list[_Head] = []
    pools: list[_Head] = []
    for node in graph.node:
        label = f"{node.op_type} {node.name or node.output[0]!r}"
        head = None
        if node.op_type in ("Gemm", "MatMul"):
            head = _matmul_head(node, label, constants)
        elif node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in values:
            head = _reshape_head(node, label, values[node.input[1]])
        elif node.op_type in _FIXED_KERNEL_POOLS:
            ends = all(op in _ENDS_SPATIAL_PATH for op in consumers.get(node.output[0], []))
            if ends or node.output[0] in outputs:
                head = _pool_head(node, label)
                pools += [head] if head is not None else []
                continue
        if head is not None:
            heads.append(head)
    return heads + pools


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _matmul_head(
    node: onnx.NodeProto, label: str, constants: Mapping[str, tuple[int, ...]]
) -> _Head | None:
    """Gemm: A's K axis (axis 0 with transA) against B's (axis 1 with transB); MatMul: A's last
    axis against a 2-D constant B's first."""
    weight = constants.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None or len(weight) != 2:
        return None
    data = node.input[0]
    if node.op_type == "Gemm":
        features = weight[1] if _attribute(node, "transB", 0) else weight[0]
        axis = 0 if _attribute(node, "transA", 0) else 1
    else:
        features, axis = weight[0], -1
    return _Head(label, features, lambda dims: _dim(dims.get(data), axis))


def _reshape_head(node: onnx.NodeProto, label: str, target: onnx.TensorProto) -> _Head | None:
    shape = [int(d) for d in numpy_helper.to_array(target).reshape(-1)]
    if any(d <= 0 for d in shape):
        return None  # 0 copies and -1 infers a dim: the element count is not fixed
    data = node.input[0]
    return _Head(label, prod(shape), lambda dims: _elements(dims.get(data)))


def _pool_head(node: onnx.NodeProto, label: str) -> _Head | None:
    kernel = _attribute(node, "kernel_shape", None)
    if not isinstance(kernel, list) or not kernel or kernel[0] <= 1:
        return None
    data = node.input[0]
    return _Head(label, int(kernel[0]), lambda dims: _dim(dims.get(data), 2))


def _dim(dims: Dims | None, axis: int) -> int | None:
    if dims is None or not -len(dims) <= axis < len(dims):
        return None
    return dims[axis]


def _elements(dims: Dims | None) -> int | None:
    if dims is None or any(d is None for d in dims):
        return None
    return prod(d for d in dims if d is not None)

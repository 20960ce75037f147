"""Affine sites: the places a per-channel ``s·x + t`` sits in a graph, whatever wrote it.

A site is a BatchNormalization node, or a chain of ``Mul``/``Add``/``Sub``/``Div`` by
constants that provably act per channel over one axis (tf2onnx writes Keras' BN this way:
``Mul`` then ``Add`` with constant vectors). Every fold works on sites, so the patterns do
not care which form the affine had.

Which elementwise chains count as sites, and why:

- at least one constant must be a per-channel *vector* (more than one channel): scalar chains
  are parts of other functions (GELU's ``·0.5``, ``x/√2``) whose removal would break
  onnxruntime's fusions of those functions;
- the chain's input must not come from a ``Div`` (the normalised value of a decomposed
  LayerNormalization, whose ``γ``/``β`` Mul/Add onnxruntime fuses back into one kernel);
- the rank of the data must be known (shape inference), so the axis is proven; the
  constants' dtype must be floating point (integer shape arithmetic is no affine).

A chain that reads as a BN in another form (a floating ``Mul``/``Div`` by a per-channel
vector, its constants all vectors along one axis when right-aligned) but whose data's rank is
unknown is no site, yet it is reported as kept (``axis-not-proven``, in ``all_sites``'
refusals): a BN-equivalent is either folded or reported, never silently left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from ..storage.dtypes import is_float_dtype
from .batchnorm import batchnorm_affine, is_batchnorm
from .elementwise import constant_operand, elementwise_affine
from .foldmath import Affine
from .graph import GraphView, node_label
from .outcomes import Skip
from .shapes import Shape

Shapes = Mapping[str, Shape]


@dataclass
class AffineSite:
    """``output = scale · input + shift`` over ``axis`` of a rank-``rank`` tensor.

    ``nodes`` are the nodes that compute it, in data order (one BN, or the chain).
    """

    nodes: list[onnx.NodeProto]
    input: str
    output: str
    affine: Affine
    axis: int
    rank: int | None
    is_batchnorm: bool
    # |γ| + |β| per channel for a BN (the size of its normalised output); None for a chain.
    output_scale: np.ndarray | None = None

    @property
    def label(self) -> str:
        return node_label(self.nodes[-1])

    @property
    def kind(self) -> str:
        return (
            "BatchNormalization" if self.is_batchnorm else "+".join(n.op_type for n in self.nodes)
        )

    @property
    def bn_like(self) -> bool:
        """A BN, or a chain that scales per channel (``Mul``/``Div``): a BN in another form
        (a chain of ``Add``/``Sub`` alone is a bias, not a BN)."""
        return self.is_batchnorm or (
            self.has_scale and any(node.op_type in ("Mul", "Div") for node in self.nodes)
        )

    @property
    def has_scale(self) -> bool:
        return not bool(np.all(self.affine.scale == 1.0))

    @property
    def has_shift(self) -> bool:
        return bool(np.any(self.affine.shift != 0.0))


def batchnorm_site(
    view: GraphView, node: onnx.NodeProto, opset: int, shapes: Callable[[], Shapes]
) -> AffineSite | Skip:
    affine = batchnorm_affine(view, node, opset)
    if isinstance(affine, Skip):
        return affine
    shape = shapes().get(node.input[0])
    rank = len(shape) if shape is not None else None
    gamma, beta = (view.constant_value(name) for name in node.input[1:3])
    assert gamma is not None and beta is not None  # batchnorm_affine proved them constant
    scale = np.abs(np.asarray(gamma, np.float64)) + np.abs(np.asarray(beta, np.float64))
    return AffineSite([node], node.input[0], node.output[0], affine, 1, rank, True, scale)


# A site refused before any pattern sees it: the node it is reported by (a BN, or a chain's
# last node), why, and its kind ("BatchNormalization", or the chain's ops: "Mul+Add").
Refusal = tuple[onnx.NodeProto, Skip, str]


def elementwise_sites(
    view: GraphView, shapes: Callable[[], Shapes], refused: dict[str, Refusal] | None = None
) -> list[AffineSite]:
    """Every maximal chain of per-channel constant ops that qualifies as a site (see module
    doc); BN-like chains that do not qualify go into ``refused`` with their reason."""
    sites: list[AffineSite] = []
    if view.opset < 7:
        return sites  # legacy broadcast/axis semantics: not read as affines
    for node in view.graph.node:
        if constant_operand(view, node) is None or _continues_chain(view, node):
            continue
        chain = [node]
        while True:
            output = chain[-1].output[0]
            reader = view.only_consumer(output)
            if (
                reader is None
                or view.is_graph_output(output)
                or constant_operand(view, reader) is None
            ):
                break
            chain.append(reader)
        site = _chain_site(view, chain, shapes())
        if isinstance(site, AffineSite):
            sites.append(site)
        elif isinstance(site, Skip) and refused is not None:
            kind = "+".join(step.op_type for step in chain)
            refused[chain[-1].output[0]] = (chain[-1], site, kind)
    return sites


def _data_input(view: GraphView, node: onnx.NodeProto) -> str:
    operand = constant_operand(view, node)
    assert operand is not None
    return node.input[1 - operand[0]]


def _continues_chain(view: GraphView, node: onnx.NodeProto) -> bool:
    data = _data_input(view, node)
    producer = view.producer.get(data)
    return (
        producer is not None
        and constant_operand(view, producer) is not None
        and view.only_consumer(data) is node
        and not view.is_graph_output(data)
    )


def _chain_site(
    view: GraphView, chain: list[onnx.NodeProto], shapes: Mapping[str, Shape]
) -> AffineSite | Skip | None:
    """The site ``chain`` is; a refusal when it is BN-like (``_bn_like_chain``) but cannot
    be one; None when it is no BN in another form."""
    data = _data_input(view, chain[0])
    producer = view.producer.get(data)
    if producer is not None and producer.op_type == "Div":
        return None
    shape = shapes.get(data)
    if shape is None:
        if not _bn_like_chain(view, chain):
            return None
        return Skip(
            "axis-not-proven",
            f"rank of {data!r} is unknown: cannot prove {'+'.join(n.op_type for n in chain)} "
            "acts per channel",
        )
    rank = len(shape)
    located = _channel_axis(view, chain, rank)
    if located is None:
        return None
    axis, channels = located
    if shape[axis] != channels:
        # x[N,1,H,W]·c[1,C,1,1] broadcasts x *up* to C channels: it is no per-channel affine
        # of x, and a layer that reads C channels cannot read x instead.
        return None
    total = Affine.identity(channels)
    for node in chain:
        step = elementwise_affine(view, node, rank=rank, axis=axis, channels=channels)
        if step is None or isinstance(step, Skip):
            return None  # a NaN, a zero divisor, c / x: no affine, so no BN in another form
        total = total.then(step)
    return AffineSite(chain, data, chain[-1].output[0], total, axis, rank, False)


def _bn_like_chain(view: GraphView, chain: list[onnx.NodeProto]) -> bool:
    """Whether ``chain`` reads as a BN in another form whatever the data's rank: floating
    constants, each a vector along one common axis (right-aligned), and a ``Mul``/``Div``
    by one with more than one channel (a bias or a scalar scale is no BN)."""
    constants = []
    for node in chain:
        operand = constant_operand(view, node)
        assert operand is not None
        constants.append(np.asarray(operand[1]))
    if not all(is_float_dtype(value.dtype) for value in constants):
        return False
    rank = max(value.ndim for value in constants)
    if _channel_axis(view, chain, rank) is None:
        return False
    return any(
        node.op_type in ("Mul", "Div") and value.size > 1
        for node, value in zip(chain, constants, strict=True)
    )


def _channel_axis(
    view: GraphView, chain: list[onnx.NodeProto], rank: int
) -> tuple[int, int] | None:
    """The one axis on which the chain's constants are vectors, and its length."""
    found: tuple[int, int] | None = None
    for node in chain:
        operand = constant_operand(view, node)
        assert operand is not None
        constant = operand[1]
        if constant.ndim > rank:
            return None
        dims = (1,) * (rank - constant.ndim) + tuple(constant.shape)
        wide = [(axis, dim) for axis, dim in enumerate(dims) if dim != 1]
        if len(wide) > 1 or (found and wide and wide[0] != found):
            return None
        if wide:
            found = wide[0]
    return found


def all_sites(
    view: GraphView, opset: int, shapes: Callable[[], Shapes]
) -> tuple[list[AffineSite], dict[str, Refusal]]:
    """The sites in graph order (BNs first), and the BNs and BN-like chains that are no site
    (with why), by output."""
    refused: dict[str, Refusal] = {}
    sites: list[AffineSite] = []
    for node in view.graph.node:
        if is_batchnorm(node):
            site = batchnorm_site(view, node, opset, shapes)
            if isinstance(site, Skip):
                refused[node.output[0]] = (node, site, "BatchNormalization")
            else:
                sites.append(site)
    sites.extend(elementwise_sites(view, shapes, refused))
    return sites, refused

"""Fold sites: tensors that exist in both models by name, compared besides the graph outputs.

Final outputs can hide a wrong fold: a softmax on random inputs is one-hot, a sigmoid
saturates, a ReLU zeroes the corrupted channel. A fold keeps the folded BatchNormalization's
output name (the layer it was folded into now produces it), so that tensor can be read from
both models and compared directly.

``verify`` takes two files, not a fold report, so sites are derived from names alone:

- a *site* is a name produced by a node of the top-level graph in both models, that is not a
  graph input, initializer or graph output (outputs are compared anyway);
- a *fold site* is a site whose producer in the original is a BatchNormalization that the
  candidate no longer has there (the fold into its producer keeps its output name), or
  reaches one through tensors the candidate no longer has (the fold into its consumer keeps
  the consumer's output name; a chain BN -> Mul -> Add keeps the chain's last name);
- ``--sites folds`` (default) compares fold sites, ``all`` every site, ``none`` no site.
  ``all`` assumes every shared name keeps its value; a rewrite that scales a tensor and keeps
  its name (not a fold bnfold makes) would show as a difference there.

Sites are exposed as extra graph outputs on copies of both models (onnxruntime infers their
types), in the original's topological order, while their estimated size over all input sets
fits ``budget_bytes``; the rest is left out and named in a note. Tensors inside subgraphs
(If/Loop/Scan bodies) cannot be exposed and are noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import UsageError
from ..runtime.specs import declared_shape, graph_inputs
from ..storage.naming import node_label

SITE_MODES = ("folds", "all", "none")
DEFAULT_SITE_MODE = "folds"
DEFAULT_BUDGET_BYTES = 256 * 2**20
_BN = "BatchNormalization"


@dataclass(frozen=True)
class SiteChoice:
    """Which sites verify compares (a ``SITE_MODES`` mode) and the bytes their tensors may
    take over all input sets."""

    mode: str = DEFAULT_SITE_MODE
    budget_bytes: int = DEFAULT_BUDGET_BYTES

    @classmethod
    def of(
        cls, mode: str = DEFAULT_SITE_MODE, budget_bytes: int = DEFAULT_BUDGET_BYTES
    ) -> SiteChoice:
        if mode not in SITE_MODES:
            raise UsageError(
                f"unknown --sites mode {mode!r}", hint=f"use one of {', '.join(SITE_MODES)}"
            )
        return cls(mode, budget_bytes)


@dataclass
class Site:
    """One tensor compared in both models; ``bn``/``into`` label a fold site."""

    name: str
    position: int  # index of its producer in the original's (topologically sorted) node list
    bn: str | None = None
    into: str | None = None
    estimated_bytes: int | None = None

    def label(self) -> str:
        if self.bn is None:
            return f"`{self.name}`"
        return f"`{self.name}` (BN `{self.bn}` folded into `{self.into}`)"


@dataclass
class SitePlan:
    """The sites exposed, those left out over the budget, and notes for the report."""

    mode: str
    sites: list[Site] = field(default_factory=list)
    left_out: list[Site] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_positions: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [site.name for site in self.sites]

    def position(self, name: str) -> int:
        """Topological position of a site or graph output (graph outputs after their producer)."""
        for site in self.sites:
            if site.name == name:
                return site.position
        return self.output_positions.get(name, 1 << 30)

    def by_name(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)


def _producers(graph: onnx.GraphProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    return {out: (i, node) for i, node in enumerate(graph.node) for out in node.output if out}


def _subgraph_batchnorms(graph: onnx.GraphProto) -> int:
    count = 0
    for node in graph.node:
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in bodies:
                count += sum(1 for n in body.node if n.op_type == _BN)
                count += _subgraph_batchnorms(body)
    return count


def _folded_batchnorms(
    node: onnx.NodeProto, producers: dict[str, tuple[int, onnx.NodeProto]], removed: set[str]
) -> list[onnx.NodeProto]:
    """BatchNormalizations the candidate folded into what now produces ``node``'s output.

    ``node`` itself when it is a BN, else every BN reached walking back from ``node`` through
    tensors the candidate no longer has: a fold into the producer keeps the BN's output name,
    a fold into the consumer keeps the consumer's, and a chain (BN -> Mul -> Add) keeps the
    last name of the chain.
    """
    found: list[onnx.NodeProto] = []
    stack, seen = [node], {id(node)}
    while stack and len(seen) < 256:
        current = stack.pop()
        if current.op_type == _BN:
            found.append(current)
        for name in current.input:
            if name in removed:
                upstream = producers[name][1]
                if id(upstream) not in seen:
                    seen.add(id(upstream))
                    stack.append(upstream)
    return found


def find_sites(
    original: onnx.ModelProto, candidate: onnx.ModelProto, mode: str
) -> tuple[list[Site], dict[str, int], list[str]]:
    """(sites in topological order, positions of graph outputs, notes) for ``mode``."""
    orig, cand = _producers(original.graph), _producers(candidate.graph)
    outputs = {vi.name for vi in original.graph.output}
    positions = {name: orig[name][0] for name in outputs if name in orig}
    notes: list[str] = []
    nested = _subgraph_batchnorms(original.graph)
    if nested:
        notes.append(
            f"{nested} BatchNormalization node(s) inside subgraphs (If/Loop/Scan bodies) not"
            " compared as sites: onnxruntime cannot expose a subgraph's tensors"
        )
    if mode == "none":
        return [], positions, notes
    fed = {vi.name for vi in graph_inputs(original)} | {t.name for t in original.graph.initializer}
    # Tensors the fold removed: produced in the original, in no form in the candidate.
    removed = {name for name in orig if name not in cand and name not in fed}
    sites: list[Site] = []
    for name, (index, node) in sorted(orig.items(), key=lambda item: item[1][0]):
        if name not in cand or name in outputs or name in fed:
            continue
        into_node = cand[name][1]
        folded = [] if into_node.op_type == _BN else _folded_batchnorms(node, orig, removed)
        if folded:
            labels = ", ".join(node_label(bn) for bn in folded)
            sites.append(Site(name, index, labels, node_label(into_node)))
        elif mode == "all":
            sites.append(Site(name, index))
    return sites, positions, notes


def plan_sites(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    mode: str,
    input_shapes: dict[str, tuple[int, ...]],
    runs: int,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> SitePlan:
    """Pick the sites to expose: ``find_sites`` capped by ``budget_bytes`` over ``runs`` sets."""
    sites, positions, notes = find_sites(original, candidate, mode)
    plan = SitePlan(mode, notes=notes, output_positions=positions)
    if not sites:
        if mode != "none":
            plan.notes.append(
                f"no {'fold ' if mode == 'folds' else ''}site found in both models"
                " (only the graph outputs are compared)"
            )
        return plan
    sizes = _estimated_bytes(original, input_shapes, [s.name for s in sites])
    known = [v for v in sizes.values() if v is not None]
    fallback = max(known) if known else _input_bytes(input_shapes)
    spent = 0
    for site in sites:
        size = sizes.get(site.name)
        site.estimated_bytes = size
        cost = (size if size is not None else fallback) * max(runs, 1)
        if spent + cost <= budget_bytes:
            plan.sites.append(site)
            spent += cost
        else:
            plan.left_out.append(site)
    if plan.left_out:
        shown = ", ".join(f"`{s.name}`" for s in plan.left_out[:5])
        more = f" and {len(plan.left_out) - 5} more" if len(plan.left_out) > 5 else ""
        plan.notes.append(
            f"{len(plan.left_out)} of {len(sites)} sites left out to stay within"
            f" {budget_bytes / 2**20:.0f} MiB of compared tensors ({runs} input set(s)): {shown}{more}"
        )
    return plan


def _input_bytes(input_shapes: dict[str, tuple[int, ...]]) -> int:
    return max((int(np.prod(s, dtype=np.int64)) * 4 for s in input_shapes.values()), default=4)


def _estimated_bytes(
    model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]], names: list[str]
) -> dict[str, int | None]:
    """Bytes of each named tensor for these input shapes, from onnx shape inference (or None)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for vi in probe.graph.input:
        if vi.name in input_shapes and vi.type.HasField("tensor_type"):
            shape = vi.type.tensor_type.shape
            shape.ClearField("dim")
            for dim in input_shapes[vi.name]:
                shape.dim.add().dim_value = dim
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except Exception:  # noqa: BLE001 - only an estimate
        return dict.fromkeys(names)
    infos = {vi.name: vi for vi in inferred.graph.value_info}
    result: dict[str, int | None] = {}
    for name in names:
        vi = infos.get(name)
        result[name] = None
        if vi is None or not vi.type.HasField("tensor_type"):
            continue
        shape = declared_shape(vi)
        if shape is None or not all(isinstance(d, int) for d in shape):
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 8
        result[name] = int(np.prod([int(d) for d in shape], dtype=np.int64)) * itemsize  # type: ignore[arg-type]
    return result


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``names`` (types left to onnxruntime to infer)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {vi.name for vi in exposed.graph.output}
    for name in names:
        if name not in present:
            exposed.graph.output.append(onnx.ValueInfoProto(name=name))
    return exposed

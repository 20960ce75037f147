"""Fold sites: tensors compared in both models besides the graph outputs, and which ones.

Final outputs can hide a wrong fold: a softmax on random inputs is one-hot, a sigmoid
saturates, a ReLU zeroes the corrupted channel, an ArgMax keeps its label. So verify also
compares, for every fold, the tensor that carries the fold's own function in both models.

``verify`` takes two files, not a fold report, and never asks the fold engine: sites are
derived from the two graphs alone (top-level graph; If/Loop/Scan bodies cannot be exposed).

**Affine sites of the original.** A BatchNormalization, or a Mul/Add/Sub/Div by a constant
that varies along at most one axis (a BN exported as ``Mul+Add``, ``Sub+Mul+Add``, a bias
``Add`` after a linear layer). Consecutive ones whose tensors between them have one consumer
form one *chain* (``BN -> Mul -> Add``, ``Mul -> Add``).

**Same node.** A node of the candidate producing name ``t`` is the *same* as the original's
producer of ``t`` when op, domain, attributes and every input agree: the same name, or, for a
constant (initializer or ``Constant``), the same value. Otherwise it is *rewired* (only
computed-input names differ), *subgraph* (only an If/Loop/Scan body differs) or *written*
(op, attributes or a constant value differ: the layer a fold went into, a node it inserted).

**Fold sites** (the ``folds`` mode), for every chain the candidate changed:

- *producer fold*, *merge*, *lowering*: the last tensor of the chain that the candidate still
  produces with a different node (the chain's end: the fold keeps its name);
- *consumer fold*: the chain's end is gone; walking forward in the original from it through
  nodes the candidate has unchanged or only rewired (MaxPool, Transpose, Reshape: they now
  read pre-BN values), the first written node's output, extended through a bias ``Add``/``Sub``
  the candidate also wrote (the fold moved the shift there): the last node the fold wrote.

**Meaning shared** (``all`` compares exactly these): walking the candidate in order, a name is

- *same* when its node is the same and every computed input is *same* (identical function);
- *claimed* when it is a fold site, a subgraph node's output, or its node is the same and its
  inputs are *same* or *claimed* (downstream of a fold, the values must agree again);
- *changed* otherwise: a tensor the fold passed through (the MatMul output before the bias
  Add that took the shift, the MaxPool output between a BN and the Gemm it folded into, a
  layer output scaled before a layout op and the BN it absorbed), anything downstream of one
  that does not reach a fold site, and every name the candidate produces with a node that is
  no fold site. These are never compared: their values differ by design.

``--sites folds`` (default) compares fold sites, ``all`` every *same* or *claimed* tensor,
``none`` no site. A weak graph output (``evidence.py``) is *covered* when every difference
between the models upstream of it ends at a compared site or a strong output
(``SitePlan.uncovered``); an uncovered one makes the result inconclusive.

Sites are exposed as extra graph outputs on copies of both models (onnxruntime infers their
types), in the original's topological order, while their estimated size over all input sets
fits ``budget_bytes``; the rest is left out and named in a note. The conditions of the
top-level If nodes are exposed on the original only (``probes``) to report which branches ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UsageError
from ..runtime.specs import declared_shape, graph_inputs
from ..storage.lazyio import tensor_array
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
    """One tensor compared in both models; ``bn``/``into``/``kind`` label a fold site."""

    name: str
    position: int  # index of its producer in the original's (topologically sorted) node list
    bn: str | None = None
    into: str | None = None
    estimated_bytes: int | None = None
    kind: str = _BN

    def label(self) -> str:
        if self.bn is None:
            return f"`{self.name}`"
        what = self.kind.replace(_BN, "BN")
        return f"`{self.name}` ({what} `{self.bn}` folded into `{self.into}`)"


@dataclass
class SitePlan:
    """The sites exposed, those left out over the budget, and notes for the report."""

    mode: str
    sites: list[Site] = field(default_factory=list)
    left_out: list[Site] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_positions: dict[str, int] = field(default_factory=dict)
    analysis: SiteAnalysis | None = None
    # (If node, condition tensor) of the top-level Ifs; ``probes``: those exposed on the
    # original only (computed conditions), to report which branches ran.
    conditions: list[tuple[str, str]] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)

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

    def branches(
        self, reference: list[dict[str, Any]], input_sets: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Per top-level If: how many input sets took its then and its else branch, read from
        the exposed condition (``probes``) or the input feeding it; ``None`` when unknown."""
        rows = []
        for node, condition in self.conditions:
            values = [
                run.get(condition, feeds.get(condition))
                for run, feeds in zip(reference, input_sets, strict=False)
            ]
            known = [bool(np.asarray(v).reshape(-1)[0]) for v in values if v is not None]
            taken = len(known) == len(values) and bool(values)
            rows.append(
                {
                    "node": node,
                    "condition": condition,
                    "then_runs": sum(known) if taken else None,
                    "else_runs": len(known) - sum(known) if taken else None,
                }
            )
        return rows

    def uncovered(self, weak: list[str], strong: list[str], sites_compared: bool) -> list[str]:
        """Weak outputs no compared site or strong output shields (``SiteAnalysis.uncovered``)."""
        if self.analysis is None:
            return list(weak)
        compared = set(strong) | (set(self.names) if sites_compared else set())
        return self.analysis.uncovered(weak, compared)


SAME, CLAIMED, CHANGED = "same", "claimed", "changed"
REWIRED, SUBGRAPH, WRITTEN = "rewired", "subgraph", "written"
_AFFINE_OPS = frozenset({"Mul", "Add", "Sub", "Div"})
_BIAS_OPS = frozenset({"Add", "Sub"})
_WALK_LIMIT = 512
_SHAPE_KEEPING = frozenset({"Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten"})


class _Side:
    """One model's top-level graph: producers, consumers, constants, fed inputs."""

    def __init__(self, model: onnx.ModelProto, base_dir: Path | None) -> None:
        graph = model.graph
        self.base_dir = base_dir
        self.producers = {o: (i, n) for i, n in enumerate(graph.node) for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in dict.fromkeys(i for i in node.input if i):
                self.consumers.setdefault(name, []).append(node)
        self.fed = {vi.name for vi in graph_inputs(model)}
        self.initializers = {t.name: t for t in graph.initializer if t.name not in self.fed}
        self.constant_nodes = {
            n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output
        }
        self.outputs = [vi.name for vi in graph.output]
        # Constant expressions (Unsqueeze of an initializer, as exporters write a BN's scale):
        # nodes whose every input is constant, compared by their structure.
        self.derived: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            inputs = [i for i in node.input if i]
            if (
                inputs
                and node.domain in ("", "ai.onnx")
                and not node.op_type.startswith("Random")
                and not any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute)
                and all(self.is_constant(i) for i in inputs)
            ):
                self.derived.update({o: node for o in node.output if o})
        self._digests: dict[str, bytes | None] = {}

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes or name in self.derived

    def constant_shape(self, name: str) -> tuple[int, ...] | None:
        """The dims of a constant other than 1 (all that the affine test needs), or None."""
        if name in self.initializers:
            return tuple(int(d) for d in self.initializers[name].dims if d != 1)
        node = self.constant_nodes.get(name)
        for attr in node.attribute if node is not None else ():
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                return tuple(int(d) for d in attr.t.dims if d != 1)
            if attr.name in ("value_float", "value_int"):
                return ()
        node = self.derived.get(name)
        if node is not None and node.op_type == "ConstantOfShape":
            dims = self.digest_array(node.input[0])
            return None if dims is None else tuple(int(d) for d in dims.tolist() if d != 1)
        if node is None or node.op_type not in _SHAPE_KEEPING:
            return None
        source = self.constant_shape(node.input[0])
        if node.op_type != "Reshape" or source is None:
            return source
        target = self.digest_array(node.input[1]) if len(node.input) > 1 else None
        if target is None or 0 in target.tolist():
            return None
        size = int(np.prod(source, dtype=np.int64))
        wanted = [int(d) for d in target.tolist()]
        known = int(np.prod([d for d in wanted if d != -1], dtype=np.int64)) or 1
        resolved = [size // known if d == -1 else d for d in wanted]
        return tuple(d for d in resolved if d != 1)

    def digest_array(self, name: str) -> np.ndarray | None:
        """A small initializer's value (a Reshape's target), else None."""
        tensor = self.initializers.get(name)
        if tensor is None or int(np.prod(tensor.dims, dtype=np.int64)) > 64:
            return None
        try:
            return np.asarray(tensor_array(tensor, self.base_dir)).reshape(-1)
        except Exception:  # noqa: BLE001 - an unreadable shape is only "unknown"
            return None

    def digest(self, name: str) -> bytes | None:
        """A digest of a constant's value (None: unreadable, never equal to anything)."""
        if name not in self._digests:
            self._digests[name] = self._compute_digest(name)
        return self._digests[name]

    def _compute_digest(self, name: str) -> bytes | None:
        expression = self.derived.get(name) if name not in self.initializers else None
        if expression is not None:
            parts = [expression.op_type.encode(), str(list(expression.output).index(name)).encode()]
            parts += [a.SerializeToString() for a in expression.attribute]
            for source in expression.input:
                digest = self.digest(source) if source else b"-"
                if digest is None:
                    return None
                parts.append(digest)
            return b"expr:" + hashlib.sha256(b"|".join(parts)).digest()
        tensor = self.initializers.get(name)
        node = self.constant_nodes.get(name)
        if tensor is None and node is not None:
            value = [a for a in node.attribute if a.name == "value" and a.type == a.TENSOR]
            if not value:
                return b"attr:" + b"".join(a.SerializeToString() for a in node.attribute)
            tensor = value[0].t
        if tensor is None:
            return None
        try:
            array = np.ascontiguousarray(tensor_array(tensor, self.base_dir))
        except Exception:  # noqa: BLE001 - unreadable means "not shown equal", never a crash
            return None
        head = f"{array.dtype.str}{array.shape}".encode()
        if array.dtype.kind in "USO":
            return head + repr(array.tolist()).encode()
        return head + hashlib.sha256(array.tobytes()).digest()


def _attributes(node: onnx.NodeProto) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(plain attributes, graph attributes) of ``node``, each serialized, by name."""
    plain: dict[str, bytes] = {}
    graphs: dict[str, bytes] = {}
    for attr in node.attribute:
        is_graph = attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        (graphs if is_graph else plain)[attr.name] = attr.SerializeToString()
    return plain, graphs


class _Pair:
    """The original and the candidate side by side, with node comparisons cached."""

    def __init__(self, orig: _Side, cand: _Side) -> None:
        self.orig, self.cand = orig, cand
        self._kinds: dict[tuple[int, int], str] = {}

    def kind(self, name: str) -> str | None:
        """How the candidate's producer of ``name`` relates to the original's (None: absent)."""
        if name not in self.orig.producers or name not in self.cand.producers:
            return None
        index_o, node_o = self.orig.producers[name]
        index_c, node_c = self.cand.producers[name]
        key = (index_o, index_c)
        if key not in self._kinds:
            self._kinds[key] = self._compare(node_o, node_c)
        return self._kinds[key]

    def _compare(self, node_o: onnx.NodeProto, node_c: onnx.NodeProto) -> str:
        if (node_o.op_type, node_o.domain) != (node_c.op_type, node_c.domain):
            return WRITTEN
        plain_o, graphs_o = _attributes(node_o)
        plain_c, graphs_c = _attributes(node_c)
        if plain_o != plain_c or set(graphs_o) != set(graphs_c):
            return WRITTEN
        if len(node_o.input) != len(node_c.input):
            return WRITTEN
        rewired = False
        for a, b in zip(node_o.input, node_c.input, strict=True):
            const_a, const_b = self.orig.is_constant(a), self.cand.is_constant(b)
            if const_a or const_b:
                if not (const_a and const_b):
                    return WRITTEN
                digest = self.orig.digest(a)
                if digest is None or digest != self.cand.digest(b):
                    return WRITTEN
            elif a != b:
                rewired = True
        if graphs_o != graphs_c:
            return SUBGRAPH
        return REWIRED if rewired else SAME


def _is_affine(node: onnx.NodeProto, side: _Side) -> bool:
    """A BN, or Mul/Add/Sub/Div of one computed tensor by a constant varying along <= 1 axis."""
    if node.domain not in ("", "ai.onnx") or not node.input or not node.output:
        return False
    if node.op_type == _BN:
        return not side.is_constant(node.input[0])
    if node.op_type not in _AFFINE_OPS or len(node.input) != 2:
        return False
    constant = [i for i in node.input if side.is_constant(i)]
    if len(constant) != 1 or (node.op_type == "Div" and node.input[1] != constant[0]):
        return False
    shape = side.constant_shape(constant[0])
    return shape is not None and sum(1 for d in shape if d != 1) <= 1


def _computed_input(node: onnx.NodeProto, side: _Side) -> str:
    if node.op_type == _BN:
        return node.input[0]
    return next(i for i in node.input if not side.is_constant(i))


def _chains(side: _Side) -> list[list[onnx.NodeProto]]:
    """Maximal runs of affine nodes joined by tensors with one consumer (the next of the run)."""
    graph_outputs = set(side.outputs)
    nxt: dict[int, onnx.NodeProto] = {}
    has_previous: set[int] = set()
    affine = [n for _, n in sorted(side.producers.values(), key=lambda p: p[0])]
    affine = list({id(n): n for n in affine if _is_affine(n, side)}.values())
    affine_ids = {id(n) for n in affine}
    for node in affine:
        out = node.output[0]
        users = side.consumers.get(out, [])
        if out in graph_outputs or len(users) != 1 or id(users[0]) not in affine_ids:
            continue
        if _computed_input(users[0], side) == out:
            nxt[id(node)] = users[0]
            has_previous.add(id(users[0]))
    chains = []
    for node in affine:
        if id(node) in has_previous:
            continue
        chain = [node]
        while id(chain[-1]) in nxt and len(chain) < 64:
            chain.append(nxt[id(chain[-1])])
        chains.append(chain)
    return chains


@dataclass
class _End:
    """A fold site found in the graphs: the chain folded (labels, kind) and where."""

    name: str
    chain: list[onnx.NodeProto]


def _consumer_ends(pair: _Pair, end: str) -> list[str]:
    """Walk forward from a chain's vanished ``end``: the last node each consumer fold wrote."""
    orig = pair.orig
    found: list[str] = []
    frontier, seen, steps = [end], {end}, 0
    while frontier and steps < _WALK_LIMIT:
        current = frontier.pop()
        for node in orig.consumers.get(current, []):
            steps += 1
            for out in (o for o in node.output if o and o not in seen):
                seen.add(out)
                kind = pair.kind(out)
                if out not in pair.cand.producers or kind in (SAME, REWIRED):
                    frontier.append(out)  # gone, or reads what the fold left: walk on
                    continue
                while True:  # the bias Add/Sub the fold moved its shift into
                    users = orig.consumers.get(out, [])
                    if (
                        len(users) == 1
                        and users[0].op_type in _BIAS_OPS
                        and _is_affine(users[0], orig)
                        and pair.kind(users[0].output[0]) == WRITTEN
                        and out not in orig.outputs
                    ):
                        out = users[0].output[0]
                        seen.add(out)
                    else:
                        break
                found.append(out)
    return found


def _fold_ends(pair: _Pair) -> dict[str, _End]:
    """Every fold site: chain ends of producer folds, last written nodes of consumer folds.

    A chain the candidate still has node for node, each with its own op and only constants
    changed, is a fold's *target* (a bias Add that took a shift), not a fold: no site of its
    own. A producer fold's label wins over a consumer walk that reaches the same tensor.
    """
    ends: dict[str, _End] = {}
    consumer_ends: list[_End] = []
    cand = pair.cand
    for chain in _chains(pair.orig):
        outs = [node.output[0] for node in chain]
        changed = [o for o in outs if pair.kind(o) not in (None, SAME)]
        vanished = any(o not in cand.producers for o in outs)
        in_place = all(
            cand.producers[o][1].op_type == node.op_type
            for o, node in zip(outs, chain, strict=True)
            if o in changed
        )
        if changed and (vanished or not in_place):
            ends.setdefault(changed[-1], _End(changed[-1], chain))
        if outs[-1] not in cand.producers:
            consumer_ends += [_End(n, chain) for n in _consumer_ends(pair, outs[-1])]
    for end in consumer_ends:
        ends.setdefault(end.name, end)
    return ends


def _statuses(pair: _Pair, ends: dict[str, _End]) -> dict[str, str]:
    """SAME / CLAIMED / CHANGED for every name both models produce (module docstring)."""
    orig, cand = pair.orig, pair.cand
    status: dict[str, str] = {}

    def input_status(name: str) -> str:
        if name in cand.fed:
            return SAME if name in orig.fed else CHANGED
        if cand.is_constant(name):
            return SAME
        return status.get(name, CHANGED)

    for node in cand.producers.values():
        c_node = node[1]
        for out in (o for o in c_node.output if o and o not in status):
            kind = pair.kind(out)
            if kind is None:
                status[out] = CHANGED
            elif kind == SAME:
                seen = {input_status(i) for i in c_node.input if i and not cand.is_constant(i)}
                status[out] = CHANGED if CHANGED in seen else CLAIMED if CLAIMED in seen else SAME
            else:
                status[out] = CLAIMED if out in ends or kind == SUBGRAPH else CHANGED
    return status


@dataclass
class SiteAnalysis:
    """What the two graphs say: the fold sites, each shared name's status (module docstring)."""

    pair: _Pair
    ends: dict[str, _End]
    status: dict[str, str]

    def uncovered(self, weak: list[str], compared: set[str]) -> list[str]:
        """The weak outputs some difference between the models reaches without passing a
        compared tensor (a site, or a strong output): nothing shows a wrong fold there."""
        orig = self.pair.orig
        result = []
        for output in weak:
            stack, seen = [output], {output}
            while stack:
                name = stack.pop()
                if (name != output and name in compared) or self.status.get(name) == SAME:
                    continue
                if name in orig.fed or orig.is_constant(name):
                    continue
                if self.pair.kind(name) != SAME:
                    result.append(output)
                    break
                for upstream in orig.producers[name][1].input:
                    if upstream and upstream not in seen:
                        seen.add(upstream)
                        stack.append(upstream)
        return result


def _chain_label(chain: list[onnx.NodeProto]) -> tuple[str, str]:
    """(node labels, kind): ``bn1``, ``BatchNormalization``; ``m, a``, ``Mul+Add``."""
    return ", ".join(node_label(n) for n in chain), "+".join(n.op_type for n in chain)


def analyse(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    base_dirs: tuple[Path | None, Path | None] = (None, None),
) -> SiteAnalysis:
    """Fold sites and the status of every shared name (the rules of the module docstring)."""
    pair = _Pair(_Side(original, base_dirs[0]), _Side(candidate, base_dirs[1]))
    ends = _fold_ends(pair)
    return SiteAnalysis(pair, ends, _statuses(pair, ends))


def if_conditions(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(If node label, condition tensor) for each If of the top-level graph."""
    return [(node_label(n), n.input[0]) for n in model.graph.node if n.op_type == "If" and n.input]


def find_sites(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    mode: str,
    base_dirs: tuple[Path | None, Path | None] = (None, None),
) -> tuple[list[Site], dict[str, int], list[str]]:
    """(sites in topological order, positions of graph outputs, notes) for ``mode``."""
    sites, positions, notes, _ = _find(original, candidate, mode, base_dirs)
    return sites, positions, notes


def _find(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    mode: str,
    base_dirs: tuple[Path | None, Path | None],
) -> tuple[list[Site], dict[str, int], list[str], SiteAnalysis]:
    analysis = analyse(original, candidate, base_dirs)
    orig = analysis.pair.orig
    outputs = set(orig.outputs)
    positions = {name: orig.producers[name][0] for name in outputs if name in orig.producers}
    notes: list[str] = []
    nested = _subgraph_batchnorms(original.graph)
    if nested:
        notes.append(
            f"{nested} BatchNormalization node(s) inside subgraphs (If/Loop/Scan bodies) not"
            " compared as sites: onnxruntime cannot expose a subgraph's tensors"
        )
    if mode == "none":
        return [], positions, notes, analysis
    sites: list[Site] = []
    for name, (index, _node) in sorted(orig.producers.items(), key=lambda item: item[1][0]):
        if name in outputs or name in orig.fed or orig.is_constant(name):
            continue
        end = analysis.ends.get(name)
        if end is not None and name in analysis.pair.cand.producers:
            labels, kind = _chain_label(end.chain)
            into = node_label(analysis.pair.cand.producers[name][1])
            sites.append(Site(name, index, labels, into, kind=kind))
        elif mode == "all" and analysis.status.get(name) in (SAME, CLAIMED):
            sites.append(Site(name, index))
    return sites, positions, notes, analysis


def _subgraph_batchnorms(graph: onnx.GraphProto) -> int:
    count = 0
    for node in graph.node:
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in bodies:
                count += sum(1 for n in body.node if n.op_type == _BN)
                count += _subgraph_batchnorms(body)
    return count


def plan_sites(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    mode: str,
    input_shapes: dict[str, tuple[int, ...]],
    runs: int,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    base_dirs: tuple[Path | None, Path | None] = (None, None),
) -> SitePlan:
    """Pick the sites to expose: ``find_sites`` capped by ``budget_bytes`` over ``runs`` sets;
    ``base_dirs``: the models' folders, to read constants kept in external files."""
    sites, positions, notes, analysis = _find(original, candidate, mode, base_dirs)
    plan = SitePlan(mode, notes=notes, output_positions=positions, analysis=analysis)
    plan.conditions = if_conditions(original)
    fed = analysis.pair.orig
    plan.probes = list(
        dict.fromkeys(c for _, c in plan.conditions if c in fed.producers and c not in fed.outputs)
    )
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

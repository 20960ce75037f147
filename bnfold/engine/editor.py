"""The only place that edits a graph: applies a fold's plan, keeps the invariants, cleans up.

Invariants, checked here once for every pattern:

- **copy-on-write from the complete set of uses**: a tensor is overwritten in place only when
  the slot being set is its only use (not a graph output, not captured by a subgraph, not
  read in another slot of the same node, not overridable); otherwise a new tensor is made;
- **one value field per tensor**: a rewritten tensor holds ``raw_data`` and nothing else
  (typed fields such as ``float_data`` and external references are cleared);
- **nodes valid in the model's opset**: the broadcasting ``Add``/``Mul`` a plan inserts exist
  from opset 7 on (before, they need ``broadcast``/``axis`` attributes with other rules); such
  plans are refused (``unsupported-opset``), never written;
- **no overlap**: two plans of one round never read or rewrite the same node (the second
  waits for the next round, which sees the graph as it now is).

Edits keep everything the user did not ask to change: node order (new nodes go right next to
the node they belong to, so the graph stays topologically sorted), names of kept nodes and
tensors, graph inputs and outputs. Only what a fold made dead is removed (``cleanup``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from ..storage.recipes import ScaledTensor, store_recipe
from .constants import NONDETERMINISTIC_OPS
from .graph import GraphView, Use, captured_names, is_standard, subgraphs
from .outcomes import Fold, Skip
from .plan import (
    AddConstant,
    InsertNode,
    Name,
    Plan,
    RemoveNodes,
    SetConstant,
    SetFloatAttribute,
    SetInput,
    SetOutput,
)

# Broadcasting elementwise ops: opset 7 changed them from legacy (broadcast/axis attributes)
# to numpy rules. Plans that insert them are refused below opset 7.
BROADCASTING_OPS = frozenset({"Add", "Mul", "Sub", "Div"})
NUMPY_BROADCAST_OPSET = 7

# Every field of a TensorProto that can hold its values.
VALUE_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
    "external_data",
)


class NameAllocator:
    """Fresh tensor and node names that collide with nothing anywhere in the model
    (every graph and subgraph, sparse initializers, local functions, training info)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.taken: set[str] = set()

        def collect_nodes(nodes: Iterable[onnx.NodeProto]) -> None:
            for node in nodes:
                self.taken.update(node.input)
                self.taken.update(node.output)
                self.taken.add(node.name)
                for sub in subgraphs(node):
                    collect(sub)

        def collect(graph: onnx.GraphProto) -> None:
            self.taken.update(
                value.name for value in [*graph.input, *graph.output, *graph.value_info]
            )
            self.taken.update(tensor.name for tensor in graph.initializer)
            self.taken.update(tensor.values.name for tensor in graph.sparse_initializer)
            collect_nodes(graph.node)

        collect(model.graph)
        for function in model.functions:
            self.taken.update(function.input)
            self.taken.update(function.output)
            collect_nodes(function.node)
        for info in model.training_info:
            collect(info.algorithm)
            collect(info.initialization)

    def new(self, base: str) -> str:
        name, counter = base, 1
        while name in self.taken:
            name = f"{base}_{counter}"
            counter += 1
        self.taken.add(name)
        return name


def store_value(tensor: onnx.TensorProto, value: np.ndarray | ScaledTensor) -> None:
    """Let ``tensor`` hold ``value`` (same name) in ``raw_data`` and no other value field.

    A recipe (``ScaledTensor``) is stored as one instead: an external reference to its
    source bytes with its factors, evaluated while the model is written (``bnfold.storage.recipes``).
    """
    for name in VALUE_FIELDS:
        tensor.ClearField(name)
    if isinstance(value, ScaledTensor):
        store_recipe(tensor, value)
        return
    tensor.ClearField("data_location")
    tensor.ClearField("dims")
    tensor.dims.extend(value.shape)
    tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    tensor.raw_data = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()


class GraphEditor:
    """Applies plans to ``view.graph`` within one round and remembers what may be dead."""

    def __init__(
        self,
        view: GraphView,
        names: NameAllocator,
        on_new_tensor: Callable[[str, str], None] | None = None,
    ) -> None:
        self.view = view
        self.graph = view.graph
        self.names = names
        self.cache = view.cache
        self.maybe_dead: list[str] = []
        self.touched: set[int] = set()
        self._on_new_tensor = on_new_tensor
        self._uses: dict[str, list[Use]] = {name: list(uses) for name, uses in view.uses.items()}
        self._fresh: dict[int, str] = {}

    # ---- plans -------------------------------------------------------------------------
    def refusal(self, plan: Plan) -> Skip | None:
        """Why ``plan`` must not be written in this model, checked before any edit."""
        if self.view.opset < NUMPY_BROADCAST_OPSET:
            legacy = sorted(plan.new_op_types & BROADCASTING_OPS)
            if legacy:
                return Skip(
                    "unsupported-opset",
                    f"the fold needs a new {legacy[0]}, whose opset-{self.view.opset} form "
                    "broadcasts by other rules",
                )
        return None

    def overlaps(self, plan: Plan) -> bool:
        return any(id(node) in self.touched for node in plan.nodes)

    def apply(self, plan: Plan) -> Fold:
        """Perform ``plan``'s edits in order; return its fold with ``into`` as now written."""
        if self.overlaps(plan):
            raise AssertionError("two plans of one round touch the same node")
        self._fresh = {}
        for edit in plan.edits:
            if isinstance(edit, SetConstant):
                self._set_constant(edit)
            elif isinstance(edit, AddConstant):
                self._add_constant(self._name(edit.name), edit.value, before=edit.anchor)
            elif isinstance(edit, SetInput):
                self._set_input(edit.node, edit.slot, self._name(edit.name))
            elif isinstance(edit, SetOutput):
                self._set_output(edit)
            elif isinstance(edit, InsertNode):
                self._insert(edit)
            elif isinstance(edit, SetFloatAttribute):
                _set_float_attribute(edit.node, edit.name, edit.value)
            elif isinstance(edit, RemoveNodes):
                self.remove(edit.nodes, keep_value_info=edit.keep_value_info)
        self.touched.update(id(node) for node in plan.nodes)
        if plan.target is not None:
            plan.fold.into = plan.into_label()
        return plan.fold

    def _name(self, name: Name) -> str:
        if isinstance(name, str):
            return name
        if id(name) not in self._fresh:
            self._fresh[id(name)] = self.names.new(name.base)
        return self._fresh[id(name)]

    def new_tensor_like(self, name: Name, like: str) -> str:
        resolved = self._name(name)
        if self._on_new_tensor is not None:
            self._on_new_tensor(resolved, like)
        return resolved

    # ---- constants ---------------------------------------------------------------------
    def _set_constant(self, edit: SetConstant) -> None:
        node, slot, value = edit.node, edit.slot, edit.value
        current = node.input[slot] if slot < len(node.input) else ""
        tensor = self.view.initializers.get(current) if current else None
        if (
            tensor is not None
            and self._uses.get(current, []) == [Use(node, slot)]
            and not self.view.is_overridable(current)
            and tuple(tensor.dims) == value.shape
            and tensor.data_type == onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        ):
            store_value(tensor, value)
            self.cache.forget([current])
            return
        name = self.names.new(edit.base)
        self._add_constant(name, value, before=node)
        while len(node.input) <= slot:
            node.input.append("")
        self._set_input(node, slot, name)

    def _add_constant(
        self, name: str, value: np.ndarray | ScaledTensor, *, before: onnx.NodeProto
    ) -> None:
        if isinstance(value, ScaledTensor) and self.view.ir_version >= 4:
            tensor = onnx.TensorProto(name=name)
            store_value(tensor, value)
        else:
            array = value.evaluate() if isinstance(value, ScaledTensor) else value
            tensor = numpy_helper.from_array(array, name)
        if self.view.ir_version >= 4:
            self.graph.initializer.append(tensor)
            self.view.initializers[name] = self.graph.initializer[-1]
            return
        # Below IR 4 every initializer must also be a graph input; a Constant node adds none.
        constant = onnx.helper.make_node(
            "Constant", [], [name], name=self.names.new(f"{name}_const"), value=tensor
        )
        self._insert_node(before, constant, after=False)

    # ---- wiring ------------------------------------------------------------------------
    def _set_input(self, node: onnx.NodeProto, slot: int, name: str) -> None:
        while len(node.input) <= slot:  # an optional input the node did not have (a bias)
            node.input.append("")
        old = node.input[slot]
        if old:
            self._drop_use(old, Use(node, slot))
            self.maybe_dead.append(old)
        node.input[slot] = name
        if name:
            self._uses.setdefault(name, []).append(Use(node, slot))

    def _set_output(self, edit: SetOutput) -> None:
        old = edit.node.output[edit.slot]
        name = self._name(edit.name)
        if edit.like is not None:
            self.new_tensor_like(name, edit.like)
        edit.node.output[edit.slot] = name
        self.drop_value_info([old])

    def _insert(self, edit: InsertNode) -> None:
        outputs = []
        for index, output in enumerate(edit.outputs):
            name = self._name(output)
            if index in edit.like:
                self.new_tensor_like(name, edit.like[index])
            outputs.append(name)
        node = onnx.helper.make_node(
            edit.op_type,
            [self._name(name) for name in edit.inputs],
            outputs,
            name=self._name(edit.name),
            **edit.attributes,  # type: ignore[arg-type]
        )
        self._insert_node(edit.anchor, node, after=edit.after)

    def _insert_node(self, anchor: onnx.NodeProto, node: onnx.NodeProto, *, after: bool) -> None:
        index = self._index_of(anchor) + (1 if after else 0)
        self.graph.node.insert(index, node)
        inserted = self.graph.node[index]
        for slot, name in enumerate(inserted.input):
            if name:
                self._uses.setdefault(name, []).append(Use(inserted, slot))

    def _index_of(self, node: onnx.NodeProto) -> int:
        for index, candidate in enumerate(self.graph.node):
            if candidate is node:
                return index
        raise ValueError(f"node {node.name!r} is not in the graph")

    def _drop_use(self, name: str, use: Use) -> None:
        uses = self._uses.get(name, [])
        if use in uses:
            uses.remove(use)

    def remove(
        self, nodes: Iterable[onnx.NodeProto], *, keep_value_info: Iterable[str] = ()
    ) -> None:
        """Remove ``nodes``; their inputs become candidates for cleanup."""
        doomed = {id(node) for node in nodes}
        dropped_outputs: list[str] = []
        for index in range(len(self.graph.node) - 1, -1, -1):
            node = self.graph.node[index]
            if id(node) in doomed:
                for slot, name in enumerate(node.input):
                    if name:
                        self._drop_use(name, Use(node, slot))
                        self.maybe_dead.append(name)
                dropped_outputs.extend(name for name in node.output if name)
                del self.graph.node[index]
        kept = set(keep_value_info)
        self.drop_value_info(name for name in dropped_outputs if name not in kept)

    def drop_value_info(self, names: Iterable[str]) -> None:
        gone = set(names) - {value.name for value in self.graph.output}
        if not gone:
            return
        kept = [value for value in self.graph.value_info if value.name not in gone]
        if len(kept) != len(self.graph.value_info):
            del self.graph.value_info[:]
            self.graph.value_info.extend(kept)

    # ---- cleanup -----------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove constants and constant-recipe nodes that folds left without readers.

        Only names a fold let go of are considered, so dead code the user had stays. Graph
        inputs (and, below IR 4, the initializers listed among them) are never removed.
        """
        pending = list(dict.fromkeys(self.maybe_dead))
        self.maybe_dead.clear()
        while pending:
            used = self._used_names()
            producers = {name: node for node in self.graph.node for name in node.output if name}
            inputs = {value.name for value in self.graph.input}
            next_round: list[str] = []
            dead_nodes: list[onnx.NodeProto] = []
            dead_initializers: set[str] = set()
            for name in pending:
                if name in used or name in inputs:
                    continue
                node = producers.get(name)
                if node is not None:
                    if self._removable(node, used) and all(
                        node is not other for other in dead_nodes
                    ):
                        dead_nodes.append(node)
                        next_round.extend(n for n in node.input if n)
                else:
                    dead_initializers.add(name)
            if dead_initializers:
                # Delete in place from the back: rebuilding the list would copy every kept tensor.
                for index in range(len(self.graph.initializer) - 1, -1, -1):
                    if self.graph.initializer[index].name in dead_initializers:
                        del self.graph.initializer[index]
                self.cache.forget(dead_initializers)
            if dead_nodes:
                self.remove(dead_nodes)
                self.maybe_dead.clear()
            pending = list(dict.fromkeys(next_round))

    def _used_names(self) -> set[str]:
        used = {value.name for value in self.graph.output}
        for node in self.graph.node:
            used.update(name for name in node.input if name)
            for sub in subgraphs(node):
                used |= captured_names(sub)
        return used

    @staticmethod
    def _removable(node: onnx.NodeProto, used: set[str]) -> bool:
        """A standard, side-effect-free node none of whose outputs is read."""
        if not is_standard(node) or node.op_type in NONDETERMINISTIC_OPS:
            return False
        return not any(name in used for name in node.output if name)


def _set_float_attribute(node: onnx.NodeProto, name: str, value: float) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.f = value
            return
    node.attribute.append(onnx.helper.make_attribute(name, value))


__all__ = ["GraphEditor", "NameAllocator", "store_value"]

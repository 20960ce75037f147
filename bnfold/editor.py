"""In-place edits of one graph, and the one cleanup that follows them.

Edits keep everything the user did not ask to change: node order (new nodes go right next to
the node they belong to, so the graph stays topologically sorted without a re-sort), names of
kept nodes and tensors, graph inputs and outputs. Only what a fold made dead is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from .graph import NONDETERMINISTIC_OPS, ConstantCache, GraphView, names_used_inside, subgraphs


class NameAllocator:
    """Fresh tensor and node names that collide with nothing anywhere in the model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.taken: set[str] = set()

        def collect(graph: onnx.GraphProto) -> None:
            self.taken.update(
                value.name for value in [*graph.input, *graph.output, *graph.value_info]
            )
            self.taken.update(tensor.name for tensor in graph.initializer)
            for node in graph.node:
                self.taken.update(node.input)
                self.taken.update(node.output)
                self.taken.add(node.name)
                for sub in subgraphs(node):
                    collect(sub)

        collect(model.graph)

    def new(self, base: str) -> str:
        name, counter = base, 1
        while name in self.taken:
            name = f"{base}_{counter}"
            counter += 1
        self.taken.add(name)
        return name


class GraphEditor:
    """Writes folds into ``view.graph`` and remembers what may have become dead."""

    def __init__(
        self,
        view: GraphView,
        names: NameAllocator,
        cache: ConstantCache,
        on_new_tensor: Callable[[str, str], None] | None = None,
    ) -> None:
        self.view = view
        self.graph = view.graph
        self.names = names
        self.cache = cache
        self.maybe_dead: list[str] = []
        self._on_new_tensor = on_new_tensor

    def new_tensor_like(self, base: str, like: str) -> str:
        """A fresh name for a run-time tensor of the same shape and type as ``like``.

        Later folds in the same run need its shape (they do not re-infer shapes).
        """
        name = self.names.new(base)
        if self._on_new_tensor is not None:
            self._on_new_tensor(name, like)
        return name

    # ---- constants ---------------------------------------------------------------------
    def set_constant(
        self, node: onnx.NodeProto, index: int, value: np.ndarray, base_name: str
    ) -> str:
        """Make ``node.input[index]`` the constant ``value``; return the tensor name used.

        An initializer read by this node alone is overwritten under its own name. Anything
        else (a weight shared with another node, a ``Constant`` node, a constant subgraph, a
        missing optional input) gets a new, uniquely named tensor, so no other reader changes.
        """
        current = node.input[index] if index < len(node.input) else ""
        view = self.view
        tensor = view.initializers.get(current) if current else None
        if (
            tensor is not None
            and view.is_private(current, node)
            and not view.is_overridable(current)
            and tuple(tensor.dims) == value.shape
        ):
            # Same name, dims and type: only the bytes change (no copy of a whole new proto).
            if (
                value.dtype == onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
                and value.dtype.kind == "f"
            ):
                tensor.ClearField("external_data")
                tensor.ClearField("data_location")
                tensor.raw_data = np.ascontiguousarray(
                    value, dtype=value.dtype.newbyteorder("<")
                ).tobytes()
            else:
                tensor.CopyFrom(numpy_helper.from_array(value, current))
            self.cache.forget([current])
            return current
        name = self.names.new(base_name)
        self.add_constant(name, value, before=node)
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = name
        if current:
            self.maybe_dead.append(current)
        return name

    def add_constant(self, name: str, value: np.ndarray, *, before: onnx.NodeProto) -> None:
        tensor = numpy_helper.from_array(value, name)
        if self.view.ir_version >= 4:
            self.graph.initializer.append(tensor)
            return
        # Below IR 4 every initializer must also be a graph input; a Constant node adds none.
        constant = onnx.helper.make_node(
            "Constant", [], [name], name=self.names.new(f"{name}_const"), value=tensor
        )
        self.insert_before(before, constant)

    # ---- nodes -------------------------------------------------------------------------
    def index_of(self, node: onnx.NodeProto) -> int:
        for index, candidate in enumerate(self.graph.node):
            if candidate is node:
                return index
        raise ValueError(f"node {node.name!r} is not in the graph")

    def insert_before(self, anchor: onnx.NodeProto, node: onnx.NodeProto) -> onnx.NodeProto:
        index = self.index_of(anchor)
        self.graph.node.insert(index, node)
        return self.graph.node[index]

    def insert_after(self, anchor: onnx.NodeProto, node: onnx.NodeProto) -> onnx.NodeProto:
        index = self.index_of(anchor) + 1
        self.graph.node.insert(index, node)
        return self.graph.node[index]

    def remove(
        self, nodes: Iterable[onnx.NodeProto], *, keep_value_info: Iterable[str] = ()
    ) -> None:
        """Remove ``nodes``; their inputs become candidates for cleanup.

        Value infos of their outputs go too, except ``keep_value_info`` (a name another node
        is about to produce).
        """
        doomed = {id(node) for node in nodes}
        dropped_outputs: list[str] = []
        for index in range(len(self.graph.node) - 1, -1, -1):
            node = self.graph.node[index]
            if id(node) in doomed:
                self.maybe_dead.extend(name for name in node.input if name)
                dropped_outputs.extend(name for name in node.output if name)
                del self.graph.node[index]
        kept = set(keep_value_info)
        self.drop_value_info(name for name in dropped_outputs if name not in kept)

    def rename_output(self, node: onnx.NodeProto, old: str, new: str) -> None:
        """Let ``node`` produce ``new`` instead of ``old`` (``old``'s only reader is going away)."""
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new
        self.drop_value_info([old])

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
                used |= names_used_inside(sub)
        return used

    @staticmethod
    def _removable(node: onnx.NodeProto, used: set[str]) -> bool:
        """A standard, side-effect-free node none of whose outputs is read."""
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC_OPS:
            return False
        return not any(name in used for name in node.output if name)

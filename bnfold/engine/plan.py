"""A fold's edits as plain data: what a pattern decided, before anything is written.

Patterns match, check and compute; they never touch the protobuf. They return a ``Plan``:
the fold as the report will show it, the nodes it reads or rewrites, and a list of edits in
the order they apply. Only ``GraphEditor.apply`` performs edits, and it enforces the
invariants in one place (copy-on-write from the complete set of uses, one value field per
tensor, nodes valid in the model's opset, no two plans of a round touching one node).

Names a plan creates are ``Fresh`` placeholders, resolved to unique names when it is applied,
so a plan can be printed (``--dry-run``), tested and refused without side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..storage.recipes import ScaledTensor
from .graph import node_label
from .outcomes import Fold
from .sites import AffineSite


@dataclass(frozen=True, eq=False)
class Fresh:
    """A name the editor allocates when the plan is applied (``base``, made unique)."""

    base: str

    def __str__(self) -> str:
        return f"<new {self.base}>"


Name = str | Fresh


@dataclass(frozen=True, eq=False)
class SetConstant:
    """``node.input[slot]`` becomes a constant holding ``value``.

    The editor overwrites the current tensor in place only when this slot is its only use;
    otherwise a new tensor named after ``base`` is made (copy-on-write).
    """

    node: onnx.NodeProto
    slot: int
    value: np.ndarray | ScaledTensor  # a recipe for a large weight still in its file
    base: str

    def describe(self) -> str:
        return (
            f"set {node_label(self.node)} input {self.slot} to a constant "
            f"{list(self.value.shape)} {self.value.dtype}"
        )


@dataclass(frozen=True, eq=False)
class AddConstant:
    """A new constant tensor ``name`` (below IR 4 a ``Constant`` node before ``anchor``)."""

    name: Fresh
    value: np.ndarray
    anchor: onnx.NodeProto

    def describe(self) -> str:
        return f"add constant {self.name} {list(self.value.shape)} {self.value.dtype}"


@dataclass(frozen=True, eq=False)
class SetInput:
    """``node.input[slot]`` reads ``name``."""

    node: onnx.NodeProto
    slot: int
    name: Name

    def describe(self) -> str:
        return f"rewire {node_label(self.node)} input {self.slot} to {self.name}"


@dataclass(frozen=True, eq=False)
class SetOutput:
    """``node.output[slot]`` becomes ``name`` (the old name's readers are gone or rewired)."""

    node: onnx.NodeProto
    slot: int
    name: Name
    like: str | None = None  # a new run-time tensor has the shape and type of ``like``

    def describe(self) -> str:
        return f"let {node_label(self.node)} output {self.slot} be {self.name}"


@dataclass(frozen=True, eq=False)
class InsertNode:
    """A new standard node right after (or before) ``anchor``."""

    op_type: str
    inputs: tuple[Name, ...]
    outputs: tuple[Name, ...]
    name: Fresh
    anchor: onnx.NodeProto
    after: bool = True
    like: dict[int, str] = field(default_factory=dict)  # output index -> tensor it resembles
    attributes: dict[str, object] = field(default_factory=dict)  # e.g. a Conv's group

    def describe(self) -> str:
        inputs = ", ".join(str(name) for name in self.inputs)
        outputs = ", ".join(str(name) for name in self.outputs)
        where = "after" if self.after else "before"
        return f"insert {self.op_type}({inputs}) -> {outputs} {where} {node_label(self.anchor)}"


@dataclass(frozen=True, eq=False)
class SetFloatAttribute:
    node: onnx.NodeProto
    name: str
    value: float

    def describe(self) -> str:
        return f"set {node_label(self.node)}.{self.name} = {self.value}"


@dataclass(frozen=True, eq=False)
class RemoveNodes:
    """Remove ``nodes``; value infos of their outputs go too, except ``keep_value_info``."""

    nodes: tuple[onnx.NodeProto, ...]
    keep_value_info: tuple[str, ...] = ()

    def describe(self) -> str:
        return "remove " + ", ".join(node_label(node) for node in self.nodes)


Edit = (
    SetConstant | AddConstant | SetInput | SetOutput | InsertNode | SetFloatAttribute | RemoveNodes
)


@dataclass
class Plan:
    """A checked fold: the report's ``fold``, the ``nodes`` it reads or rewrites, its ``edits``.

    ``target`` is the node the fold went into: the report names it by its label *after* the
    edits (an unnamed node is labelled by its output, which a fold may rename).
    ``site_output`` identifies the site in its scope (names are unique per scope).
    """

    fold: Fold
    nodes: list[onnx.NodeProto]
    edits: list[Edit]
    target: onnx.NodeProto | None
    site_output: str
    # Further nodes it went into (a fold into several layers): ``into`` lists them all.
    more_targets: tuple[onnx.NodeProto, ...] = ()

    def into_label(self) -> str:
        """The report's ``into``: the targets' labels as they are now."""
        nodes = [node for node in (self.target, *self.more_targets) if node is not None]
        return ", ".join(node_label(node) for node in nodes)

    def describe(self) -> list[str]:
        """One line per edit, in order (``bnfold optimize --dry-run`` prints them)."""
        return [edit.describe() for edit in self.edits]

    @property
    def new_op_types(self) -> set[str]:
        return {edit.op_type for edit in self.edits if isinstance(edit, InsertNode)}


def combined_plan(
    plans: list[Plan],
    site: AffineSite,
    *,
    pattern: str,
    direction: str,
    through: list[str],
    edits: list[Edit],
    nodes: tuple[onnx.NodeProto, ...] = (),
) -> Plan:
    """One fold of ``site`` made of several layers' plans (a Concat's slices, a BN's several
    readers).

    ``edits`` are the merged edits; the plan touches ``nodes`` and every node the parts touch,
    reports every part's target, and costs the worst part's rounding.
    """
    fold = Fold(
        bn=site.label,
        into=", ".join(plan.fold.into for plan in plans),
        pattern=pattern,
        direction=direction,
        through=through,
        dtype=plans[0].fold.dtype,
        rounding_error=max(plan.fold.rounding_error for plan in plans),
        kind=site.kind,
    )
    return Plan(
        fold,
        [*nodes, *(node for plan in plans for node in plan.nodes)],
        edits,
        target=plans[0].target,
        site_output=site.output,
        more_targets=tuple(plan.target for plan in plans[1:] if plan.target is not None),
    )

"""Local judging of quantized tensors (and float tensors they bound): each layer on the
original's own quantized inputs.

A QDQ model re-quantizes every activation. An exact fold rounds the int32 bias once more
(at most half a bias step), which moves a few elements of its own layer's quantized output
by one step; the next layer reads those moved integers and rounds again, so end to end the
moves spread and grow (the 4-layer 64-channel model: 0.03 % of layer 0 by 1 step, 7 % of the
output by up to 3). Judged end to end, that exact fold fails; a wrong fold is told apart from
it only where it starts.

So every quantized *unit* (a ``QuantizeLinear`` output both models produce, a fold site or a
graph output with a quantization grid, ``quantized.py``) is judged **locally**: its *region* is
what computes it from the nearest other units or graph inputs (its *boundaries*), in each model
alone (walked back, constants included; at most ``MAX_REGION_NODES`` nodes, none with a
subgraph). Both regions become small models, both are fed the *original's* values of the
boundaries (one extra run of the original at ``disable`` exposes them) and run on CPU at the
level judged; the unit passes when no element moved more than ``MAX_STEPS`` and at most
``SHARE_BOUND`` moved (``quantized.py``). A unit is *covered* when it is judged locally and
every boundary is a graph input or a covered unit: then by induction every difference that
reaches it is some unit's own local move carried forward by identical arithmetic.

A *float* tensor downstream of quantized activations (a site or graph output without a grid,
e.g. the last layer's BN and its float output after ``Relu``) inherits those moves too: one
step of an activation is far beyond the float tolerance end to end (the 4-layer model ending in
float: 74 % of the output out of tolerance for the exact fold). So a float site or output whose
regions (walked back the same way, to the nearest quantized units or graph inputs) start at
least at one quantized unit is a *float unit*: judged locally by the **float** rule of its
dtype on the original's boundary values (``compare.py``: ``compare_outputs`` for a graph
output, ``compare_sites`` for a site; ``atol``/``rtol`` overrides from ``LocalJudge.tolerance``),
its atol widened by half a step of the integer biases its region dequantizes
(``bias_half_step``: what re-quantizing a folded bias may move, which the float rule ignores).
The exact fold's re-quantized int32 bias still moves it a little (that model: max error
6.4e-5, 0.58 of the tolerance); one channel's weight scale x 1.05 in the last layer uses ~470
times the tolerance. A float unit is covered like a quantized one; float units bound no region.

A covered tensor passes when every local judgement in its closure passes (steps for quantized
units, the float rule for float units), whatever its end to end moves (reported); it fails,
naming the first unit whose local judgement failed, when one does. A tensor not covered (a
region too large, a boundary the original does not produce, a non-CPU provider) keeps the
end-to-end rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..runtime.session import REFERENCE_LEVEL, ModelWithData, create_session, run_session
from ..storage.dtypes import is_float_dtype
from ..storage.lazyio import tensor_array
from .compare import OutputComparison, StepJudgement, compare_outputs, compare_sites
from .quantized import MAX_STEPS, SHARE_BOUND, QuantGrid, quant_grids, step_judgement
from .sites import with_outputs

MAX_REGION_NODES = 64


@dataclass
class Region:
    """What computes ``unit`` in one model from its ``boundaries`` (nodes in graph order)."""

    unit: str
    nodes: list[onnx.NodeProto]
    boundaries: list[str]
    constants: list[str]


@dataclass
class LocalResult:
    """One unit judged locally at one level (merged over input sets): a quantized unit in
    ``steps``, a float unit by the float rule (``comparison``); ``failing_run``: the first
    input set where it failed."""

    unit: str
    steps: StepJudgement | None = None
    failing_run: int | None = None
    comparison: OutputComparison | None = None

    @property
    def passed(self) -> bool:
        if self.comparison is not None:
            return self.comparison.passed
        assert self.steps is not None
        return self.steps.max_steps <= MAX_STEPS and self.steps.share <= SHARE_BOUND

    @property
    def used(self) -> float:
        """How much of its allowance the unit used (1: all of it)."""
        if self.comparison is not None:
            used = self.comparison.tolerance_used
            return 0.0 if used is None else used
        assert self.steps is not None
        return max(self.steps.max_steps / MAX_STEPS, self.steps.share / SHARE_BOUND)

    def to_dict(self) -> dict[str, Any]:
        head = {"passed": self.passed, "failing_run": self.failing_run}
        if self.comparison is None:
            assert self.steps is not None
            return {**head, "kind": "quantized", **self.steps.to_dict()}
        c = self.comparison
        return {
            **head,
            "kind": "float",
            "max_abs_error": c.max_abs_error,
            "tolerance_used": c.tolerance_used,
            "atol": c.atol,
            "rtol": c.rtol,
            "mismatched": c.mismatched,
            "total": c.total,
        }


@dataclass
class LocalPlan:
    """The units of a model pair, their regions in each model and the original's order."""

    grids: dict[str, QuantGrid]
    original: dict[str, Region]
    candidate: dict[str, Region]
    order: list[str]
    graph_inputs: set[str]
    notes: list[str] = field(default_factory=list)
    # Float units (a site or graph output without a grid whose regions are bounded by
    # quantized units) and which of them are graph outputs (judged as outputs, not sites).
    floats: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)

    @property
    def units(self) -> list[str]:
        return [u for u in self.order if u in self.original and u in self.candidate]

    def boundaries(self, unit: str) -> set[str]:
        return set(self.original[unit].boundaries) | set(self.candidate[unit].boundaries)

    def closure(self, unit: str) -> list[str] | None:
        """The units ``unit`` depends on through regions (itself included, original order);
        None when it is not covered."""
        seen: set[str] = set()
        stack = [unit]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            if current not in self.original or current not in self.candidate:
                return None
            seen.add(current)
            for name in self.boundaries(current):
                if name not in self.graph_inputs:
                    stack.append(name)
        return [u for u in self.order if u in seen]


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {t.values.name for t in graph.sparse_initializer}
    return names


def _region(graph: onnx.GraphProto, unit: str, stops: set[str]) -> Region | None:
    producer = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output if out}
    constants = _constant_names(graph)
    taken: dict[int, onnx.NodeProto] = {}
    boundaries: list[str] = []
    used_constants: list[str] = []
    stack = [unit]
    first = True
    while stack:
        name = stack.pop()
        if not first and name in stops:
            if name not in boundaries:
                boundaries.append(name)
            continue
        if name in constants:
            if name not in used_constants:
                used_constants.append(name)
            continue
        if name not in producer:
            return None  # a graph input that is no unit boundary: not judged locally
        first = False
        index, node = producer[name]
        if index in taken:
            continue
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            return None
        taken[index] = node
        if len(taken) > MAX_REGION_NODES:
            return None
        stack.extend(n for n in node.input if n)
    if not boundaries:
        return None
    nodes = [taken[i] for i in sorted(taken)]
    return Region(unit, nodes, boundaries, used_constants)


def plan_local(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    names: list[str],
    base_dir: Path | None = None,
) -> LocalPlan:
    """The units (``names`` with a grid plus every ``QuantizeLinear`` output both models
    produce; float units: the other ``names`` whose regions in both models start at a
    quantized unit) and their regions."""
    produced_c = {out for node in candidate.graph.node for out in node.output if out}
    q_outputs = [
        node.output[0]
        for node in original.graph.node
        if node.op_type == "QuantizeLinear" and node.output and node.output[0] in produced_c
    ]
    grids = quant_grids(original, list(dict.fromkeys([*names, *q_outputs])), base_dir)
    graph_inputs = {vi.name for vi in original.graph.input} - _constant_names(original.graph)
    position = {out: i for i, node in enumerate(original.graph.node) for out in node.output}
    others = [n for n in dict.fromkeys(names) if n not in grids and n in position]
    order = sorted([*grids, *others], key=lambda n: position.get(n, -1))
    # Only integer tensors bound a region: a Q -> DQ -> Conv -> Relu -> Q region is what
    # onnxruntime fuses into one QLinearConv, so the fused kernels are judged too.
    stops = {n for n, g in grids.items() if g.kind == "quantized"} | graph_inputs
    plan = LocalPlan(grids, {}, {}, order, graph_inputs)
    plan.outputs = {vi.name for vi in original.graph.output}
    for unit in order:
        mine = _region(original.graph, unit, stops)
        theirs = _region(candidate.graph, unit, stops)
        if mine is None or theirs is None:
            continue
        if unit not in grids:
            # A float unit only where a quantized unit bounds it: downstream of the
            # re-quantized activations (a float region fed by graph inputs alone is the
            # end-to-end comparison again).
            if not any(b not in graph_inputs for b in [*mine.boundaries, *theirs.boundaries]):
                continue
            plan.floats.add(unit)
        plan.original[unit] = mine
        plan.candidate[unit] = theirs
    plan.order = [u for u in order if u in grids or u in plan.floats]
    return plan


def _value_info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
    return helper.make_tensor_value_info(name, elem, list(np.asarray(value).shape))


def region_model(
    model: onnx.ModelProto, region: Region, example: Mapping[str, Any]
) -> onnx.ModelProto:
    """``region`` of ``model`` as a model of its own: boundaries in, the unit out (types
    from ``example``, the original's values)."""
    wanted = set(region.constants)
    graph = helper.make_graph(
        list(region.nodes),
        f"local_{region.unit}",
        [_value_info(n, example[n]) for n in region.boundaries],
        [_value_info(region.unit, example[region.unit])],
        [t for t in model.graph.initializer if t.name in wanted],
        sparse_initializer=[t for t in model.graph.sparse_initializer if t.values.name in wanted],
    )
    sub = helper.make_model(
        graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    sub.functions.extend(model.functions)
    return sub


def bias_half_step(region: Region, graph: onnx.GraphProto, base_dir: Path | None) -> float:
    """Half the largest step of an integer bias the region dequantizes (0.0 if none).

    A quantized layer's bias is an int32 tensor at scale ``x_scale·w_scale``; a fold into it
    re-quantizes the bias at the new weight scale, which moves each channel's bias by at most
    half a step, and that reaches the layer's float output unchanged (through Relu and the
    like, which shrink no difference's bound). The original rounded its own bias the same
    way: what a float unit after such a layer may differ by, beyond the float rule.
    """
    constants = {t.name: t for t in graph.initializer}
    half = 0.0
    for node in region.nodes:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        data, scale = constants.get(node.input[0]), constants.get(node.input[1])
        if data is None or scale is None or data.data_type != onnx.TensorProto.INT32:
            continue
        step = np.asarray(tensor_array(scale, base_dir), dtype=np.float64)
        if step.size:
            half = max(half, 0.5 * float(np.max(np.abs(step))))
    return half


class LocalJudge:
    """Local judgements of one model pair on the input sets, per CPU level (cached)."""

    def __init__(
        self,
        plan: LocalPlan,
        models: tuple[onnx.ModelProto, onnx.ModelProto],
        data_dirs: tuple[Path | None, Path | None],
        values: list[dict[str, Any]],
        session_arguments: dict[str, Any],
        tolerance: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.plan = plan
        self.models = models
        self.data_dirs = data_dirs
        self.values = values
        self.session_arguments = session_arguments
        # ``(atol, rtol)`` overrides of the float rule for float units (None: the defaults).
        self.tolerance = tolerance
        self.levels: dict[str, dict[str, LocalResult]] = {}

    @classmethod
    def build(
        cls,
        plan: LocalPlan,
        models: tuple[onnx.ModelProto, onnx.ModelProto],
        data_dirs: tuple[Path | None, Path | None],
        input_sets: list[dict[str, np.ndarray]],
        session_arguments: dict[str, Any],
        tolerance: tuple[float | None, float | None] = (None, None),
    ) -> LocalJudge | None:
        """Runs the original once more at ``disable`` with every unit exposed."""
        if not plan.units:
            return None
        exposed = with_outputs(models[0], plan.units)
        attempt = create_session(
            ModelWithData(exposed, data_dirs[0]),
            "cpu",
            REFERENCE_LEVEL,
            role="original with its quantized tensors exposed",
            **session_arguments,
        )
        if attempt.status != "ok" or attempt.session is None:
            return None
        try:
            values = [{**feeds, **run_session(attempt.session, feeds)} for feeds in input_sets]
        except Exception:  # noqa: BLE001 - then nothing is judged locally
            return None
        return cls(plan, models, data_dirs, values, session_arguments, tolerance)

    def at(self, level: str) -> dict[str, LocalResult]:
        """Every unit judged locally at ``level`` (a unit whose regions do not run: absent)."""
        if level not in self.levels:
            self.levels[level] = {
                unit: judged
                for unit in self.plan.units
                if (judged := self._judge(unit, level)) is not None
            }
        return self.levels[level]

    def _run(self, side: int, unit: str, level: str) -> list[Any] | None:
        regions = (self.plan.original, self.plan.candidate)[side]
        region = regions[unit]
        if any(n not in self.values[0] for n in [*region.boundaries, unit]):
            return None
        try:
            sub = region_model(self.models[side], region, self.values[0])
            attempt = create_session(
                ModelWithData(sub, self.data_dirs[side]),
                "cpu",
                level,
                role=f"region of `{unit}`",
                **self.session_arguments,
            )
            if attempt.status != "ok" or attempt.session is None:
                return None
            return [
                run_session(attempt.session, {n: v[n] for n in region.boundaries})[unit]
                for v in self.values
            ]
        except Exception:  # noqa: BLE001 - a region that does not run is not judged locally
            return None

    def _judge(self, unit: str, level: str) -> LocalResult | None:
        if unit in self.plan.floats:
            value = self.values[0].get(unit)
            if not isinstance(value, np.ndarray) or not is_float_dtype(value.dtype):
                return None
        ref = self._run(0, unit, level)
        cand = self._run(1, unit, level) if ref is not None else None
        if ref is None or cand is None:
            return None
        if unit in self.plan.floats:
            return self._judge_float(unit, ref, cand)
        grid = self.plan.grids[unit]
        result: LocalResult | None = None
        for index, (r, c) in enumerate(zip(ref, cand, strict=True)):
            judged = step_judgement(grid, r, c)
            if judged is None:
                return None
            if result is None:
                result = LocalResult(unit, judged)
            else:
                assert result.steps is not None
                result.steps = result.steps.merge(judged)
            if result.failing_run is None and not result.passed:
                result.failing_run = index
        return result

    def _judge_float(self, unit: str, ref: list[Any], cand: list[Any]) -> LocalResult | None:
        """A float unit by the float rule of its dtype: a graph output's tolerance, or a
        site's (``compare_sites``: atol scaled by the reference's size), widened by half a
        step of every integer bias in the candidate's region (``bias_half_step``)."""
        compare = compare_outputs if unit in self.plan.outputs else compare_sites
        atol, rtol = self.tolerance
        # An explicit --atol is the caller's rule, as for the float64 judge.
        widen = (
            0.0
            if atol is not None
            else bias_half_step(self.plan.candidate[unit], self.models[1].graph, self.data_dirs[1])
        )
        result: LocalResult | None = None
        for index, (r, c) in enumerate(zip(ref, cand, strict=True)):
            base = compare({unit: r}, {unit: r}, atol=atol, rtol=rtol).get(unit)
            unit_atol = None if base is None or base.atol is None else base.atol + widen
            judged = compare_outputs({unit: r}, {unit: c}, atol=unit_atol, rtol=rtol).get(unit)
            if judged is None or judged.max_abs_error is None:
                return None  # a dtype or shape that differs: the end-to-end rule decides
            if result is None:
                result = LocalResult(unit, comparison=judged)
            else:
                assert result.comparison is not None
                result.comparison = result.comparison.merge(judged)
            if result.failing_run is None and not judged.passed:
                result.failing_run = index
        return result

    def decide(
        self, comparisons: dict[str, OutputComparison], level: str, index: int
    ) -> dict[str, OutputComparison]:
        """The quantized ``comparisons`` of input set ``index``, and those of float units,
        decided by the local judgements of their closures where covered (the module
        docstring)."""
        decided = dict(comparisons)
        for name, comparison in comparisons.items():
            if comparison.steps is not None or name in self.plan.floats:
                decided[name] = self._decide(name, comparison, level, index)
        return decided

    def _decide(
        self, name: str, comparison: OutputComparison, level: str, index: int
    ) -> OutputComparison:
        closure = self.plan.closure(name)
        local = self.at(level)
        if closure is None or any(u not in local for u in closure):
            return comparison
        used = max(local[u].used for u in closure)
        failed = next((u for u in closure if not local[u].passed), None)
        if failed is None or local[failed].failing_run != index:
            return replace(
                comparison,
                passed=True,
                reason=None,
                mismatched=0,
                nonfinite_mismatched=0,
                tolerance_used=used,
            )
        bad, wrong = local[failed].steps, local[failed].comparison
        if wrong is not None:
            reason = (
                f"judged locally (the candidate's layer on the original's quantized inputs,"
                f" float tolerance) at `{failed}`: {wrong.mismatched} of {wrong.total} elements"
                f" out of tolerance (atol={wrong.atol:g}, rtol={wrong.rtol:g}), max error"
                f" {wrong.max_abs_error:.3g}"
            )
        else:
            assert bad is not None
            reason = (
                f"judged locally (the candidate's layer on the original's quantized inputs, in"
                f" quantization steps) at `{failed}`: {bad.moved} of {bad.total} elements"
                f" ({bad.share:.2%}) moved, at most {bad.max_steps} step(s) (pass: at most"
                f" {MAX_STEPS} step and {SHARE_BOUND:.0%} of the elements)"
            )
        if comparison.reason:
            reason += f"; end to end {comparison.reason}"
        return replace(comparison, passed=False, reason=reason, tolerance_used=used)

    def first_moves(self, level: str) -> str | None:
        """The first unit (original order) whose local judgement moved any element."""
        local = self.at(level)
        return next(
            (u for u in self.plan.units if u in local and (s := local[u].steps) and s.moved),
            None,
        )

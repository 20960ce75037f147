"""Issue 22 (functions, scopes, attribute references): graphs nobody on the project wrote
found these; each is written fresh here.

- scope identity: IR-10 function overloads share ``domain.name``, and several If nodes may
  have '' as their first output: each body must fold with its own constants;
- attribute references: a node in a local function reads ``epsilon=$eps``, ``pads=$p``,
  ``transB=$t`` or ``perm=$p``: resolved per call site (the function inlined) or refused;
- modules as functions (torch's ``export_modules_as_functions``): weights and BN parameters
  are function inputs bound to initializers at every call, and the BN and its layer sit in
  different functions: each call site folds.

Each ``CASES`` entry builds an ``EdgeCase`` whose ``extra`` checks the BNs that run per
inference afterwards (``bnfold.engine.functions.batchnorms_per_call``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import helper

from tests.builders.edges.build import EdgeCase, array, bn_params, build_model, value, weights

LOCAL = "local"


def _ref(name: str, ref: str, kind: int) -> onnx.AttributeProto:
    """Attribute ``name`` that takes the caller's attribute ``ref`` (``name=$ref``)."""
    attr = helper.make_attribute_ref(name, kind)  # type: ignore[arg-type]
    attr.ref_attr_name = ref
    return attr


def _const(name: str, values: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=array(values, name))


def _function(
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    nodes: Sequence[onnx.NodeProto],
    *,
    attributes: Sequence[str] = (),
    defaults: Sequence[onnx.AttributeProto] = (),
    overload: str = "",
) -> onnx.FunctionProto:
    function = helper.make_function(
        LOCAL,
        name,
        list(inputs),
        list(outputs),
        list(nodes),
        [helper.make_opsetid("", 17)],
        list(attributes),
        attribute_protos=list(defaults),
    )
    function.overload = overload
    return function


def _call(
    function: str,
    inputs: Sequence[str],
    output: str,
    name: str,
    overload: str = "",
    attrs: dict[str, object] | None = None,
) -> onnx.NodeProto:
    node = helper.make_node(function, list(inputs), [output], name=name, domain=LOCAL)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in (attrs or {}).items())
    node.overload = overload
    return node


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[tuple[str, Sequence[int]]],
    functions: Sequence[onnx.FunctionProto],
    initializers: Sequence[onnx.TensorProto] = (),
    *,
    ir_version: int = 8,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "functions",
        list(inputs),
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s)) for n, s in outputs],
        list(initializers),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(LOCAL, 1)],
        functions=list(functions),
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def _per_call(expected: int) -> Callable[[onnx.ModelProto, object], None]:
    def check(_original: onnx.ModelProto, result: object) -> None:
        from bnfold.engine.functions import batchnorms_per_call

        found = batchnorms_per_call(result.model)  # type: ignore[attr-defined]
        assert found == expected, f"{found} BNs run per inference, expected {expected}"

    return check


def _conv_bn_body(seed: int, channels: int = 3) -> list[onnx.NodeProto]:
    """``Conv(x, W) → BN`` with W, g, b, m, v as ``Constant`` nodes (same names in every body
    built here, values from ``seed``)."""
    rng = np.random.default_rng(seed)
    params = [_const(t.name, onnx.numpy_helper.to_array(t)) for t in bn_params(rng, channels)]
    return [
        _const("W", weights(rng, [channels, channels, 1, 1])),
        *params,
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn"),
    ]


def overloads_share_a_name() -> EdgeCase:
    """IR 10: two overloads of ``local.Block`` with the same tensor names and different
    weights and statistics. A cache keyed by ``domain.name`` folds the second with the
    first's constants."""
    functions = [
        _function("Block", ["x"], ["y"], _conv_bn_body(seed), overload=overload)
        for seed, overload in ((41, "a"), (42, "b"))
    ]
    nodes = [
        _call("Block", ["x"], "h", "call_a", overload="a"),
        _call("Block", ["h"], "out", "call_b", overload="b"),
    ]
    model = _model(
        nodes, [value("x", [1, 3, 4, 4])], [("out", [1, 3, 4, 4])], functions, ir_version=10
    )
    rng = np.random.default_rng(43)
    return EdgeCase(
        "function-overloads-share-a-name",
        model,
        [{"x": rng.standard_normal([1, 3, 4, 4]).astype(np.float32)}],
        {"local.Block:a/bn": frozenset({"folded"}), "local.Block:b/bn": frozenset({"folded"})},
        extra=_per_call(0),
    )


def function_body_constants() -> EdgeCase:
    """``local.Block`` (Conv + BN on its own ``Constant`` nodes) called twice: one fold in
    the body serves both calls; nothing is inlined."""
    function = _function("Block", ["x"], ["y"], _conv_bn_body(44))
    nodes = [_call("Block", ["x"], "h", "call0"), _call("Block", ["h"], "out", "call1")]
    model = _model(nodes, [value("x", [1, 3, 4, 4])], [("out", [1, 3, 4, 4])], [function])
    rng = np.random.default_rng(45)
    return EdgeCase(
        "function-body-constants",
        model,
        [{"x": rng.standard_normal([1, 3, 4, 4]).astype(np.float32)}],
        {"local.Block/bn": frozenset({"folded"})},
        extra=_per_call(0),
    )


def unnamed_if_outputs() -> EdgeCase:
    """Two unnamed If nodes whose first output is '' (unused), each branch a Conv + BN with
    the same tensor names and different values: a scope keyed by the first output shares
    one cache and one shape table between them."""

    def body(seed: int) -> onnx.GraphProto:
        rng = np.random.default_rng(seed)
        inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
        nodes = [
            helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[1, 1]),
            helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"]),
            helper.make_node("Relu", ["y"], ["unused"]),
        ]
        outs = [helper.make_tensor_value_info(n, 1, [1, 3, 4, 4]) for n in ("unused", "y")]
        return helper.make_graph(nodes, f"branch{seed}", [], outs, inits)

    def identity(seed: int) -> onnx.GraphProto:
        nodes = [
            helper.make_node("Identity", ["x"], [f"i{seed}"]),
            helper.make_node("Identity", ["x"], [f"j{seed}"]),
        ]
        outs = [helper.make_tensor_value_info(f"{n}{seed}", 1, [1, 3, 4, 4]) for n in "ij"]
        return helper.make_graph(nodes, f"other{seed}", [], outs)

    nodes = [
        helper.make_node("If", ["cond"], ["", "y1"], then_branch=body(51), else_branch=identity(1)),
        helper.make_node("If", ["cond"], ["", "y2"], then_branch=body(52), else_branch=identity(2)),
        helper.make_node("Add", ["y1", "y2"], ["out"]),
    ]
    model = build_model(
        nodes, [value("x", [1, 3, 4, 4]), value("cond", [], onnx.TensorProto.BOOL)], ["out"]
    )
    rng = np.random.default_rng(53)
    x = rng.standard_normal([1, 3, 4, 4]).astype(np.float32)
    return EdgeCase(
        "unnamed-if-outputs",
        model,
        [{"x": x, "cond": np.array(flag)} for flag in (True, False)],
        {"<BatchNormalization:y>": frozenset({"folded"})},
        extra=_per_call(0),
    )


def _attribute_case(name: str, kind: str) -> EdgeCase:
    """``local.Block`` reads one attribute from its caller; two calls set it differently."""
    rng = np.random.default_rng(sum(map(ord, kind)))
    params = [_const(t.name, onnx.numpy_helper.to_array(t)) for t in bn_params(rng, 4)]
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn")
    attrs: list[dict[str, object]]
    if kind == "epsilon":
        eps = _ref("epsilon", "eps", onnx.AttributeProto.FLOAT)
        bn.attribute.append(eps)
        layer = [_const("W", weights(rng, [4, 4])), helper.make_node("MatMul", ["x", "W"], ["c"])]
        shape, attrs = [2, 4], [{"eps": 1e-3}, {"eps": 0.5}]
    elif kind == "transB":
        gemm = helper.make_node("Gemm", ["x", "W"], ["c"], name="gemm")
        gemm.attribute.append(_ref("transB", "t", onnx.AttributeProto.INT))
        layer = [_const("W", weights(rng, [4, 4])), gemm]
        shape, attrs = [2, 4], [{"t": 0}, {"t": 1}]
    elif kind == "perm":
        transpose = helper.make_node("Transpose", ["t0"], ["c"], name="transpose")
        transpose.attribute.append(_ref("perm", "p", onnx.AttributeProto.INTS))
        layer = [
            _const("W", weights(rng, [4, 4, 1, 1])),
            helper.make_node("Conv", ["x", "W"], ["t0"], name="conv", kernel_shape=[1, 1]),
            transpose,
        ]
        shape, attrs = [1, 4, 4, 4], [{"p": [0, 1, 2, 3]}, {"p": [0, 1, 3, 2]}]
    else:  # pads: the BN feeds a Conv that pads at one call only
        conv = helper.make_node("Conv", ["y0", "W"], ["c"], name="conv", kernel_shape=[3, 3])
        conv.attribute.append(_ref("pads", "p", onnx.AttributeProto.INTS))
        layer = [
            helper.make_node("Relu", ["x"], ["r"]),
            _const("W", weights(rng, [4, 4, 3, 3])),
        ]
        first_bn = helper.make_node(
            "BatchNormalization", ["r", "g", "b", "m", "v"], ["y0"], name="bn"
        )
        bn = helper.make_node("Identity", ["c"], ["y"])
        layer += [first_bn, conv]
        shape, attrs = [1, 4, 6, 6], [{"p": [0, 0, 0, 0]}, {"p": [1, 1, 1, 1]}]
    refs = sorted(attrs[0])
    function = _function("Block", ["x"], ["y"], [*params, *layer, bn], attributes=refs)
    out_shapes = [shape, shape] if kind != "pads" else [[1, 4, 4, 4], [1, 4, 6, 6]]
    nodes = [_call("Block", ["x"], f"y{i}", f"call{i}", attrs=attrs[i]) for i in range(2)]
    outputs = [(f"y{i}", s) for i, s in enumerate(out_shapes)]
    model = _model(nodes, [value("x", shape)], outputs, [function])
    feeds = [{"x": rng.standard_normal(shape).astype(np.float32)}]
    # pads: the call with pads=[1,1,1,1] keeps its BN (padded-consumer), the other folds.
    return EdgeCase(name, model, feeds, {}, extra=_per_call(1 if kind == "pads" else 0))


def attribute_reference_epsilon() -> EdgeCase:
    return _attribute_case("function-attribute-epsilon", "epsilon")


def attribute_reference_transb() -> EdgeCase:
    return _attribute_case("function-attribute-transB", "transB")


def attribute_reference_perm() -> EdgeCase:
    return _attribute_case("function-attribute-perm", "perm")


def attribute_reference_pads() -> EdgeCase:
    return _attribute_case("function-attribute-pads", "pads")


def modules_as_functions(*, one_call_from_input: bool = False) -> EdgeCase:
    """Torch-style: ``Linear(x, W, C)`` and ``BatchNorm1d(h, g, b, m, v)`` are functions
    whose weights and parameters are inputs, bound at each of two calls to that call's own
    initializers. ``one_call_from_input``: the second call's γ is a graph input instead (it
    can change at run time: that BN must stay, with a true reason)."""
    linear = _function(
        "Linear",
        ["x", "W", "C"],
        ["y"],
        [helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="gemm", transB=1)],
    )
    batchnorm = _function(
        "BatchNorm1d",
        ["x", "g", "b", "m", "v"],
        ["y"],
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")],
    )
    rng = np.random.default_rng(61)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    inputs = [value("x", [2, 4])]
    current = "x"
    for i in range(2):
        w, c = f"l{i}.weight", f"l{i}.bias"
        inits += [
            array(weights(rng, [4, 4]), w),
            array(rng.standard_normal(4).astype(np.float32), c),
        ]
        params = [t for t in bn_params(rng, 4)]
        for t in params:
            t.name = f"bn{i}.{t.name}"
        inits += params
        names = [t.name for t in params]
        if one_call_from_input and i == 1:
            inits = [t for t in inits if t.name != names[0]]
            inputs.append(value(names[0], [4]))
        nodes.append(_call("Linear", [current, w, c], f"h{i}", f"linear{i}"))
        nodes.append(_call("BatchNorm1d", [f"h{i}", *names], f"o{i}", f"batchnorm{i}"))
        current = f"o{i}"
    model = _model(nodes, inputs, [(current, [2, 4])], [linear, batchnorm], inits)
    feeds = {"x": rng.standard_normal([2, 4]).astype(np.float32)}
    if one_call_from_input:
        feeds["bn1.g"] = rng.uniform(0.5, 2, 4).astype(np.float32)
    name = "modules-as-functions" + ("-one-call-from-input" if one_call_from_input else "")
    return EdgeCase(name, model, [feeds], {}, extra=_per_call(1 if one_call_from_input else 0))


def modules_as_functions_one_call_from_input() -> EdgeCase:
    return modules_as_functions(one_call_from_input=True)


CASES = [
    function_body_constants,
    overloads_share_a_name,
    attribute_reference_epsilon,
    attribute_reference_transb,
    attribute_reference_perm,
    attribute_reference_pads,
    modules_as_functions,
    modules_as_functions_one_call_from_input,
]


# ---- the fuzzer's class (``fuzz.edge_graphs``, kind ``functions``) -----------------------


def random_function_model(
    integer: Callable[[int, int], int], rng: np.random.Generator
) -> tuple[str, onnx.ModelProto, list[dict[str, np.ndarray]]]:
    """A random model of this module's classes: ``integer(low, high)`` draws the structure
    (kept small so a failing example shrinks), ``rng`` the values. Torch-style calls (1 to 3,
    each binding its own initializers, one maybe a graph input; the BN and its layer in one
    function or two), attribute references set per call (``epsilon``, ``transB``, ``perm``,
    ``pads``), IR-10 overloads, or one body with its own constants."""
    variant = integer(0, 3)
    if variant == 1:
        kind = ("epsilon", "transB", "perm", "pads")[integer(0, 3)]
        case = _attribute_case(f"functions/attribute-{kind}", kind)
        return case.name, case.model, case.feeds
    if variant == 2:
        seeds = (integer(0, 1000), integer(0, 1000))
        functions = [
            _function("Block", ["x"], ["y"], _conv_bn_body(seed), overload=o)
            for seed, o in zip(seeds, ("a", "b"), strict=True)
        ]
        nodes = [
            _call("Block", ["x"], "h", "", overload="a"),
            _call("Block", ["h"], "out", "", overload="b"),
        ]
        model = _model(
            nodes, [value("x", [1, 3, 4, 4])], [("out", [1, 3, 4, 4])], functions, ir_version=10
        )
        feeds = [{"x": rng.standard_normal([1, 3, 4, 4]).astype(np.float32)}]
        return "functions/overloads", model, feeds
    if variant == 3:
        function = _function("Block", ["x"], ["y"], _conv_bn_body(integer(0, 1000)))
        calls = integer(1, 3)
        nodes = [
            _call("Block", ["x" if i == 0 else f"h{i - 1}"], f"h{i}", f"c{i}") for i in range(calls)
        ]
        model = _model(
            nodes, [value("x", [1, 3, 4, 4])], [(f"h{calls - 1}", [1, 3, 4, 4])], [function]
        )
        feeds = [{"x": rng.standard_normal([1, 3, 4, 4]).astype(np.float32)}]
        return "functions/body-constants", model, feeds
    return _random_modules(integer, rng)


def _random_modules(
    integer: Callable[[int, int], int], rng: np.random.Generator
) -> tuple[str, onnx.ModelProto, list[dict[str, np.ndarray]]]:
    split, calls, channels = integer(0, 1) == 1, integer(1, 3), integer(1, 4)
    from_input = integer(-1, calls - 1)  # this call's γ is a graph input (-1: none)
    gemm = helper.make_node("Gemm", ["x", "W", "C"], ["h"], name="gemm", transB=1)
    bn = helper.make_node("BatchNormalization", ["h", "g", "b", "m", "v"], ["y"], name="bn")
    if split:
        gemm.output[0], bn.input[0] = "y", "x"
        functions = [
            _function("Linear", ["x", "W", "C"], ["y"], [gemm]),
            _function("BatchNorm1d", ["x", "g", "b", "m", "v"], ["y"], [bn]),
        ]
    else:
        functions = [_function("LinearBN", ["x", "W", "C", "g", "b", "m", "v"], ["y"], [gemm, bn])]
    inits: list[onnx.TensorProto] = []
    inputs = [value("x", [2, channels])]
    feeds = {"x": rng.standard_normal([2, channels]).astype(np.float32)}
    nodes: list[onnx.NodeProto] = []
    current = "x"
    for i in range(calls):
        w, c = f"l{i}.weight", f"l{i}.bias"
        inits += [
            array(weights(rng, [channels, channels]), w),
            array(rng.standard_normal(channels).astype(np.float32), c),
        ]
        params = bn_params(rng, channels, prefix=f"bn{i}.")
        names = [t.name for t in params]
        if i == from_input:
            params = params[1:]
            inputs.append(value(names[0], [channels]))
            feeds[names[0]] = rng.uniform(0.5, 2, channels).astype(np.float32)
        inits += params
        if split:
            nodes.append(_call("Linear", [current, w, c], f"h{i}", ""))
            nodes.append(_call("BatchNorm1d", [f"h{i}", *names], f"o{i}", ""))
        else:
            nodes.append(_call("LinearBN", [current, w, c, *names], f"o{i}", ""))
        current = f"o{i}"
    model = _model(nodes, inputs, [(current, [2, channels])], functions, inits)
    return f"functions/modules{'-split' if split else ''}", model, [feeds]

"""Class 2 (issue 10): names are lexically scoped. If/Loop/Scan bodies reuse a sibling's
tensor names or shadow outer ones; values, shapes, uses and "is a constant" must be resolved
in the scope that reads the name. Each body BN here folds exactly with its own statistics,
or is refused because in its scope the parameter really is computed at run time."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.builders.edges.build import (
    ANY_REASON,
    FOLDED,
    EdgeCase,
    array,
    bn_node,
    bn_params,
    branch,
    build_model,
    normal_feeds,
    outcome,
    value,
    weights,
)

BOOL, INT64 = TensorProto.BOOL, TensorProto.INT64


def _conv_bn_branch(seed: int, name: str, bn_name: str, layer: str = "Conv") -> object:
    """``Conv(x, W) → c → BN → y`` (or ``MatMul`` on ``x[2, 3]``) with the branch's own W,
    g, b, m, v (same names in every branch built here, different values)."""
    rng = np.random.default_rng(seed)
    if layer == "Conv":
        inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
        first = helper.make_node(
            "Conv", ["x", "W"], ["c"], name=f"{name}_conv", kernel_shape=[1, 1]
        )
        shape = [1, 3, 4, 4]
    else:
        inits = [array(weights(rng, [3, 3]), "W"), *bn_params(rng, 3)]
        first = helper.make_node("MatMul", ["x", "W"], ["c"], name=f"{name}_matmul")
        shape = [2, 3]
    return branch([first, bn_node("c", "y", name=bn_name)], [("y", shape)], inits, name=name)


def _both_ways(rng: np.random.Generator, shapes: dict) -> list[dict[str, np.ndarray]]:
    return [{**normal_feeds(rng, shapes), "cond": np.array(flag)} for flag in (True, False)]


def _if_siblings(name: str, layer: str, seed: int, shape: list[int]) -> EdgeCase:
    rng = np.random.default_rng(seed)
    branches = {
        "then_branch": _conv_bn_branch(seed + 1, "then", "then_bn", layer),
        "else_branch": _conv_bn_branch(seed + 2, "else", "else_bn", layer),
    }
    nodes = [helper.make_node("If", ["cond"], ["out"], name="if", **branches)]
    model = build_model(nodes, [value("x", shape), value("cond", [], BOOL)], ["out"])
    return EdgeCase(
        name,
        model,
        _both_ways(rng, {"x": shape}),
        {"then_bn": outcome(FOLDED), "else_bn": outcome(FOLDED)},
    )


def if_branches_reuse_names() -> EdgeCase:
    """Both branches: Conv + BN with the same tensor names and different statistics."""
    return _if_siblings("if-branches-reuse-names", "Conv", 20, [1, 3, 4, 4])


def if_branches_reuse_names_matmul() -> EdgeCase:
    """As ``if_branches_reuse_names``, with MatMul + BN on ``x[2, 3]`` in both branches
    (found by the edge fuzzer: the else branch was folded with the then branch's values)."""
    return _if_siblings("if-branches-reuse-names-matmul", "MatMul", 33, [2, 3])


def branch_initializer_shadows_outer() -> EdgeCase:
    """The main graph's Conv + BN use W, g, b, m, v; a branch declares its own initializers of
    the same names (different values) for its own Conv + BN."""
    rng = np.random.default_rng(23)
    outer = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
    other = branch(
        [helper.make_node("Relu", ["x"], ["y"], name="else_relu")],
        [("y", [1, 3, 4, 4])],
        name="else",
    )
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c0"], name="conv", kernel_shape=[1, 1]),
        bn_node("c0", "z", name="bn"),
        helper.make_node(
            "If",
            ["cond"],
            ["out"],
            name="if",
            then_branch=_conv_bn_branch(24, "then", "then_bn"),
            else_branch=other,
        ),
    ]
    model = build_model(
        nodes, [value("x", [1, 3, 4, 4]), value("cond", [], BOOL)], ["z", "out"], outer
    )
    return EdgeCase(
        "branch-initializer-shadows-outer",
        model,
        _both_ways(rng, {"x": [1, 3, 4, 4]}),
        {"bn": outcome(FOLDED), "then_bn": outcome(FOLDED)},
    )


def _loop_body(seed: int) -> object:
    """Loop body ``(i, cond, h) → (cond, BN(Conv(h, W)))`` with its own W, g, b, m, v > 0."""
    rng = np.random.default_rng(seed)
    inits = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
        helper.make_node("Conv", ["h", "W"], ["hc"], name="body_conv", kernel_shape=[1, 1]),
        bn_node("hc", "h_out", name="body_bn"),
    ]
    inputs = [value("i", [], INT64), value("cond_in", [], BOOL), value("h", [1, 3, 4, 4])]
    return branch(nodes, [("cond_out", []), ("h_out", [1, 3, 4, 4])], inits, inputs, name="body")


def loop_body_reuses_outer_names() -> EdgeCase:
    """Outside: Conv + BN whose variance ``v`` is negative in one channel (refused,
    ``nonpositive-variance``); inside a Loop body: Conv + BN with a positive ``v`` of the same
    name (folds). A name-keyed cache refuses the body, and a second run then folds it."""
    rng = np.random.default_rng(25)
    variance = rng.uniform(0.2, 3.0, 3)
    variance[1] = -1.0
    outer = [
        array(weights(rng, [3, 3, 1, 1]), "W"),
        *bn_params(rng, 3, variance=variance),
        array(np.array(2, np.int64), "trips"),
    ]
    body = _loop_body(26)
    _set_output_types(body, {"cond_out": BOOL})
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "z", name="bn"),
        helper.make_node("Loop", ["trips", "", "x"], ["looped"], name="loop", body=body),
    ]
    model = build_model(nodes, [value("x", [1, 3, 4, 4])], ["z", ("looped", [1, 3, 4, 4])], outer)
    return EdgeCase(
        "loop-body-reuses-outer-names",
        model,
        [normal_feeds(rng, {"x": [1, 3, 4, 4]})],
        {"bn": outcome("nonpositive-variance"), "body_bn": outcome(FOLDED)},
    )


def loop_body_variance_named_like_a_folded_outer_constant() -> EdgeCase:
    """Outside: ``MatMul → Mul(v)`` where ``v`` is a negative per-feature constant that the
    first run folds into the MatMul (and so removes); inside a Loop body: ``MatMul → BN``
    whose positive variance is also named ``v``. A name-keyed lookup refuses the body BN in
    the first run (``nonpositive-variance``) and folds it in the second: it must fold in the
    first (the property's second run must fold nothing)."""
    rng = np.random.default_rng(32)
    body_inits = [array(weights(rng, [3, 3]), "W"), *bn_params(rng, 3)]
    body = branch(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("MatMul", ["h", "W"], ["hm"], name="body_matmul"),
            bn_node("hm", "h_out", name="body_bn"),
        ],
        [("cond_out", []), ("h_out", [2, 3])],
        body_inits,
        [value("i", [], INT64), value("cond_in", [], BOOL), value("h", [2, 3])],
        name="body",
    )
    _set_output_types(body, {"cond_out": BOOL})
    outer = [
        array(weights(rng, [3, 3]), "W"),
        array(-rng.uniform(0.5, 2.0, 3).astype(np.float32), "v"),
        array(np.array(2, np.int64), "trips"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
        helper.make_node("Mul", ["mm", "v"], ["z"], name="negative_scale"),
        helper.make_node("Loop", ["trips", "", "x"], ["looped"], name="loop", body=body),
    ]
    model = build_model(nodes, [value("x", [2, 3])], ["z", ("looped", [2, 3])], outer)
    return EdgeCase(
        "loop-body-variance-named-like-folded-outer-constant",
        model,
        [normal_feeds(rng, {"x": [2, 3]})],
        {"body_bn": outcome(FOLDED)},
    )


def if_inside_loop_resolves_each_name_in_its_scope() -> EdgeCase:
    """Three scopes: the main graph's Conv + BN use W, g, b, m, v; a Loop body declares its
    own W, b, m, v (other values, shadowing); inside it, an If's then-branch declares its own
    g and runs Conv(h, W) + BN(g, b, m, v): W, b, m, v come from the Loop body, g from the
    branch, nothing from the main graph. Every BN folds with the values of its own scope."""
    rng = np.random.default_rng(36)
    main = [array(weights(rng, [3, 3, 1, 1]), "W"), *bn_params(rng, 3)]
    middle = [array(weights(rng, [3, 3, 1, 1]), "W")]
    middle += [t for t in bn_params(rng, 3) if t.name != "g"]
    inner = [t for t in bn_params(rng, 3) if t.name == "g"]
    then = branch(
        [
            helper.make_node("Conv", ["h", "W"], ["tc"], name="then_conv", kernel_shape=[1, 1]),
            bn_node("tc", "t", name="then_bn"),
        ],
        [("t", [1, 3, 4, 4])],
        inner,
        name="then",
    )
    other = branch(
        [helper.make_node("Relu", ["h"], ["t"], name="else_relu")],
        [("t", [1, 3, 4, 4])],
        name="else",
    )
    body = branch(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node(
                "If", ["cond_in"], ["h_out"], name="inner_if", then_branch=then, else_branch=other
            ),
        ],
        [("cond_out", []), ("h_out", [1, 3, 4, 4])],
        middle,
        [value("i", [], INT64), value("cond_in", [], BOOL), value("h", [1, 3, 4, 4])],
        name="body",
    )
    _set_output_types(body, {"cond_out": BOOL})
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn_node("c", "z", name="bn"),
        helper.make_node("Loop", ["trips", "go", "x"], ["looped"], name="loop", body=body),
    ]
    inits = [*main, array(np.array(2, np.int64), "trips")]
    model = build_model(
        nodes,
        [value("x", [1, 3, 4, 4]), value("go", [], BOOL)],
        ["z", ("looped", [1, 3, 4, 4])],
        inits,
    )
    x = rng.standard_normal([1, 3, 4, 4]).astype(np.float32)
    feeds = [{"x": x, "go": np.array(flag)} for flag in (True, False)]
    return EdgeCase(
        "if-inside-loop-three-scopes",
        model,
        feeds,
        {"bn": outcome(FOLDED), "then_bn": outcome(FOLDED)},
    )


def loop_state_shadows_outer_initializer() -> EdgeCase:
    """A Loop-carried state named ``m`` (changing every iteration) is the body BN's mean,
    while the main graph has a constant initializer ``m``: in the body, ``m`` is not a
    constant, so the body BN must be refused (``param-not-constant``, or
    ``param-is-graph-input``: it is an input of the body graph)."""
    rng = np.random.default_rng(27)
    body_inits = [array(weights(rng, [3, 3, 1, 1]), "W"), array(np.ones(3, np.float32), "step")]
    body_inits += [t for t in bn_params(rng, 3) if t.name != "m"]
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
        helper.make_node("Conv", ["h", "W"], ["hc"], name="body_conv", kernel_shape=[1, 1]),
        bn_node("hc", "h_out", name="body_bn"),
        helper.make_node("Add", ["m", "step"], ["m_out"], name="next_mean"),
    ]
    inputs = [
        value("i", [], INT64),
        value("cond_in", [], BOOL),
        value("h", [1, 3, 4, 4]),
        value("m", [3]),
    ]
    body = branch(
        nodes,
        [("cond_out", []), ("h_out", [1, 3, 4, 4]), ("m_out", [3])],
        body_inits,
        inputs,
        name="body",
    )
    _set_output_types(body, {"cond_out": BOOL})
    outer = [*bn_params(rng, 3), array(np.array(3, np.int64), "trips")]
    outer_nodes = [
        bn_node("x", "z", name="bn_of_input"),
        helper.make_node(
            "Loop", ["trips", "", "x", "m"], ["looped", "m_final"], name="loop", body=body
        ),
    ]
    model = build_model(
        outer_nodes,
        [value("x", [1, 3, 4, 4])],
        ["z", ("looped", [1, 3, 4, 4]), ("m_final", [3])],
        outer,
    )
    return EdgeCase(
        "loop-state-shadows-outer-initializer",
        model,
        [normal_feeds(rng, {"x": [1, 3, 4, 4]})],
        {"body_bn": outcome("param-not-constant", "param-is-graph-input")},
    )


def scan_body_reuses_outer_names() -> EdgeCase:
    """Outside: MatMul + BN on ``u`` with W, g, b, m, v; a Scan body runs its own MatMul + BN
    on each ``[1, 4]`` slice of ``xs`` with different tensors of the same names."""
    rng = np.random.default_rng(28)
    body_rng = np.random.default_rng(29)
    body_inits = [array(weights(body_rng, [4, 3]), "W"), *bn_params(body_rng, 3)]
    body = branch(
        [
            helper.make_node("MatMul", ["s", "W"], ["smm"], name="body_matmul"),
            bn_node("smm", "s_out", name="body_bn"),
        ],
        [("s_out", [1, 3])],
        body_inits,
        [value("s", [1, 4])],
        name="body",
    )
    outer = [array(weights(rng, [4, 3]), "W"), *bn_params(rng, 3)]
    nodes = [
        helper.make_node("MatMul", ["u", "W"], ["mm"], name="matmul"),
        bn_node("mm", "z", name="bn"),
        helper.make_node("Scan", ["xs"], ["ys"], name="scan", body=body, num_scan_inputs=1),
    ]
    model = build_model(nodes, [value("u", [2, 4]), value("xs", [5, 1, 4])], ["z", "ys"], outer)
    return EdgeCase(
        "scan-body-reuses-outer-names",
        model,
        [normal_feeds(rng, {"u": [2, 4], "xs": [5, 1, 4]})],
        {"bn": outcome(FOLDED), "body_bn": outcome(FOLDED)},
    )


def _no_constant_claim(name: str):  # type: ignore[no-untyped-def]
    """Extra check: the kept BN's detail does not call its runtime input a constant."""

    def check(original: object, result: object) -> None:
        for skip in result.report.skipped:  # type: ignore[attr-defined]
            if skip.bn == name:
                assert "a constant" not in skip.detail, f"false statement: {skip.detail}"

    return check


def branch_bn_reads_outer_graph_input() -> EdgeCase:
    """An If branch normalises the main graph's input ``x``: kept, and its detail must not say
    ``x`` is a constant (class 7)."""
    rng = np.random.default_rng(30)
    then = branch(
        [bn_node("x", "y", name="then_bn")], [("y", [1, 3, 4, 4])], bn_params(rng, 3), name="then"
    )
    other = branch(
        [helper.make_node("Relu", ["x"], ["y"], name="else_relu")],
        [("y", [1, 3, 4, 4])],
        name="else",
    )
    nodes = [
        helper.make_node("If", ["cond"], ["out"], name="if", then_branch=then, else_branch=other)
    ]
    model = build_model(nodes, [value("x", [1, 3, 4, 4]), value("cond", [], BOOL)], ["out"])
    return EdgeCase(
        "branch-bn-reads-outer-graph-input",
        model,
        _both_ways(rng, {"x": [1, 3, 4, 4]}),
        {"then_bn": outcome("no-linear-producer", "consumer-input-is-graph-output")},
        extra=_no_constant_claim("then_bn"),
    )


def branch_bn_reads_outer_conv_output() -> EdgeCase:
    """An If branch normalises ``c``, which a Conv of the main graph computes (and the other
    branch reads too): folding into that Conv would apply the BN on both paths; the detail
    must not call ``c`` a constant."""
    rng = np.random.default_rng(31)
    then = branch(
        [bn_node("c", "y", name="then_bn")], [("y", [1, 3, 4, 4])], bn_params(rng, 3), name="then"
    )
    other = branch(
        [helper.make_node("Relu", ["c"], ["y"], name="else_relu")],
        [("y", [1, 3, 4, 4])],
        name="else",
    )
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("If", ["cond"], ["out"], name="if", then_branch=then, else_branch=other),
    ]
    inits = [array(weights(rng, [3, 3, 1, 1]), "W")]
    model = build_model(nodes, [value("x", [1, 3, 4, 4]), value("cond", [], BOOL)], ["out"], inits)
    return EdgeCase(
        "branch-bn-reads-outer-conv-output",
        model,
        _both_ways(rng, {"x": [1, 3, 4, 4]}),
        {"then_bn": outcome(ANY_REASON)},
        extra=_no_constant_claim("then_bn"),
    )


def _set_output_types(graph: object, types: dict[str, int]) -> None:
    for output in graph.output:  # type: ignore[attr-defined]
        if output.name in types:
            output.type.tensor_type.elem_type = types[output.name]


CASES = [
    if_branches_reuse_names,
    if_branches_reuse_names_matmul,
    branch_initializer_shadows_outer,
    loop_body_reuses_outer_names,
    loop_body_variance_named_like_a_folded_outer_constant,
    if_inside_loop_resolves_each_name_in_its_scope,
    loop_state_shadows_outer_initializer,
    scan_body_reuses_outer_names,
    branch_bn_reads_outer_graph_input,
    branch_bn_reads_outer_conv_output,
]

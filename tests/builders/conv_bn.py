"""The Conv + BatchNormalization graphs several suites fold: ``conv_bn_model`` (every producer
variant: spatial rank, groups, bias, dtype, Conv attributes) and ``conv_then`` (a Conv, nodes
after it, then a BN: the refusal cases).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from tests.builders.graphs import make_model, random_bn_params, tensor

BN_NAMES = ["gamma", "beta", "mean", "var"]


def bn(inp: str = "y", out: str = "z", **attrs: object) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [inp, *BN_NAMES], [out], name="bn", **attrs)


def conv_bn_model(
    *,
    spatial: int = 2,
    c_in: int = 4,
    c_out: int = 6,
    group: int = 1,
    bias: bool = True,
    dtype: type = np.float32,
    **conv_attrs: object,
) -> onnx.ModelProto:
    rng = np.random.default_rng(spatial * 100 + group)
    kernel = [3] * spatial
    weight = rng.standard_normal([c_out, c_in // group, *kernel]).astype(dtype)
    inits: list[np.ndarray] = [weight]
    names = ["W"]
    conv_inputs = ["x", "W"]
    if bias:
        inits.append(rng.standard_normal(c_out).astype(dtype))
        names.append("b")
        conv_inputs.append("b")
    inits += random_bn_params(rng, c_out, dtype)
    names += BN_NAMES
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Conv", conv_inputs, ["y"], name="conv", group=group, **conv_attrs),
        bn(epsilon=1e-3),
    ]
    return make_model(
        nodes,
        [tensor("x", ["N", c_in, *[9] * spatial], elem)],
        [tensor("z", None, elem)],
        inits,
        names=names,
    )


def conv_then(
    *after_conv: onnx.NodeProto,
    bn_attrs: dict[str, object] | None = None,
    bn_input: str = "y",
    bn_outputs: tuple[str, ...] = ("z",),
    outputs: tuple[str, ...] = ("z",),
    params: list[np.ndarray] | None = None,
    opset: int = 17,
    extra_inputs: tuple[onnx.ValueInfoProto, ...] = (),
    extra_inits: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = {"W": rng.standard_normal([4, 3, 3, 3]).astype(np.float32)}
    inits.update(
        zip(
            BN_NAMES,
            params if params is not None else random_bn_params(np.random.default_rng(0), 4),
            strict=True,
        )
    )
    inits.update(extra_inits or {})
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        *after_conv,
        helper.make_node(
            "BatchNormalization",
            [bn_input, *BN_NAMES],
            list(bn_outputs),
            name="bn",
            **(bn_attrs or {}),
        ),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, 3, 6, 6]), *extra_inputs],
        [tensor(name, None) for name in outputs],
        list(inits.values()),
        names=list(inits),
        opset=opset,
    )

"""Read a BatchNormalization node as a per-channel affine, or say why it is not one.

The checklist, in order (each failure is a ``Skip`` with a stable reason code):

1. inference mode: BN-1/6 need ``is_test=1`` (default 0 means training); BN-7/9 with more
   than one output is the training form; BN-14/15 need ``training_mode=0``;
2. ``spatial=1`` (BN-1/6/7; ``spatial=0`` normalises per activation, not per channel);
3. optional outputs (running mean/var...) unread and not graph outputs;
4. scale, B, mean, var are constants and not overridable graph inputs;
5. floating-point parameters of matching length ``C``;
6. finite values and ``var + epsilon > 0``.

Spec: https://onnx.ai/onnx/operators/onnx__BatchNormalization.html
"""

from __future__ import annotations

import numpy as np
import onnx

from ..storage.dtypes import is_float_dtype
from .constants import describe_not_constant
from .foldmath import Affine, bn_to_affine
from .graph import AttributeReference, GraphView, attribute, float_attribute
from .outcomes import Skip

DEFAULT_EPSILON = 1e-5
PARAM_NAMES = ("scale", "B", "mean", "var")


def is_batchnorm(node: onnx.NodeProto) -> bool:
    return node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx")


def batchnorm_affine(view: GraphView, node: onnx.NodeProto, opset: int) -> Affine | Skip:
    """``BN(x) = s·x + t`` with ``s = γ/sqrt(σ²+ε)``, ``t = β − μ·s``; or why not."""
    try:
        return _affine(view, node, opset)
    except AttributeReference as ref:  # epsilon=$eps in a function body: set per call
        return Skip("attribute-reference", str(ref))


def _affine(view: GraphView, node: onnx.NodeProto, opset: int) -> Affine | Skip:
    mode = _mode_skip(view, node, opset)
    if mode is not None:
        return mode
    if len(node.input) < 5:
        return Skip("param-missing", f"{len(node.input)} inputs, BatchNormalization needs 5")
    params = []
    for role, name in zip(PARAM_NAMES, node.input[1:5], strict=True):
        if view.is_overridable(name):
            return view.overridable_skip(
                name, f"{role} {name!r}", " and can be overridden at run time"
            )
        value = view.constant_value(name)
        if value is None:
            return Skip(
                "param-not-constant", f"{role} {name!r} {describe_not_constant(view, name)}"
            )
        if not is_float_dtype(value.dtype):
            return Skip("unsupported-dtype", f"{role} {name!r} has dtype {value.dtype}")
        params.append(value)
    channels = params[0].size
    if channels == 0 or any(p.size != channels or p.ndim != 1 for p in params):
        shapes = ", ".join(
            f"{role}{list(p.shape)}" for role, p in zip(PARAM_NAMES, params, strict=True)
        )
        return Skip("param-shape-mismatch", f"parameters must be 1-D of one length: {shapes}")
    as64 = [np.asarray(p, dtype=np.float64) for p in params]
    for role, value in zip(PARAM_NAMES, as64, strict=True):
        if not np.all(np.isfinite(value)):
            return Skip("param-not-finite", f"{role} contains NaN or Inf")
    epsilon = float_attribute(node, "epsilon", DEFAULT_EPSILON)
    if np.any(as64[3] + np.float32(epsilon) <= 0):
        return Skip("nonpositive-variance", "var + epsilon <= 0 for some channel")
    gamma, beta, mean, var = as64
    affine = bn_to_affine(gamma, beta, mean, var, epsilon)
    if not (np.all(np.isfinite(affine.scale)) and np.all(np.isfinite(affine.shift))):
        return Skip("param-not-finite", "scale / sqrt(var + epsilon) overflows")
    return affine


def _mode_skip(view: GraphView, node: onnx.NodeProto, opset: int) -> Skip | None:
    if opset < 7 and not attribute(node, "is_test", 0):
        return Skip(
            "training-mode", f"BatchNormalization-{opset} with is_test=0 uses batch statistics"
        )
    if opset < 9 and attribute(node, "spatial", 1) == 0:
        return Skip("spatial-off", "spatial=0 normalises per activation, not per channel")
    if opset >= 14 and attribute(node, "training_mode", 0):
        return Skip("training-mode", "training_mode=1 uses batch statistics")
    extra = [name for name in node.output[1:] if name]
    if 7 <= opset < 14 and extra:
        return Skip(
            "training-mode",
            f"BatchNormalization-{opset} with {1 + len(extra)} outputs is the training form",
        )
    for name in extra:
        if view.uses.get(name):
            return Skip("bn-outputs-used", f"optional output {name!r} is read")
    return None

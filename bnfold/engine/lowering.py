"""``--lower-standalone``: rewrite a BatchNormalization that nothing folds into.

``BN(x) = s·x + t``, in one of two forms (``LOWERING_FORMS``):

- ``mul-add``: ``Mul(x, s) → Add(·, t)`` with ``s``, ``t`` shaped ``[C, 1, …, 1]`` to broadcast
  over axis 1 of a rank-``r`` input;
- ``dwconv``: one depthwise ``Conv`` with a 1×…×1 kernel, ``group = C``, weight ``s`` shaped
  ``[C, 1, 1, …]`` and bias ``t``: output channel ``c`` is ``s[c]·x[c] + t[c]``, for inputs of
  rank 3 or more (a Conv needs a spatial axis). For NPUs and compilers without a BN kernel,
  and the form onnxruntime's NCHWc layout keeps in its Conv chain.

Off by default: whether these beat onnxruntime's own BN kernel depends on the runtime (see
the README's note and ``benchmarks/fold_shapes.md``).

A form is written only where onnxruntime's CPU provider has a kernel for each of its ops in
the BN's dtype (``CPU_KERNELS``); otherwise the other form, and where neither runs the BN
stays with the reason it was not folded. A lowered model must load wherever the input did.
"""

from __future__ import annotations

import numpy as np

from .foldmath import CANCELLATION_BOUND, LOW_PRECISION, cancellation, round_to
from .outcomes import Fold
from .plan import AddConstant, Edit, Fresh, InsertNode, Plan, RemoveNodes
from .sites import AffineSite

MUL_ADD, DWCONV = "mul-add", "dwconv"
LOWERING_FORMS = (MUL_ADD, DWCONV)

# The forms onnxruntime's CPU provider can load, per dtype of the BN. Measured with
# onnxruntime 1.31.1 by creating a session (CPUExecutionProvider, ORT_DISABLE_ALL) on a
# one-node Conv (1×1 depthwise, rank 4), Mul and Add model in each dtype at opsets 7, 9, 11,
# 13, 14, 17, 19, 21 and 22 (``tests/engine/test_lowering_kernels.py`` repeats it at rank 3-5
# and runs each form, so a runtime that changes fails there):
# - float32, float16: Conv, Mul and Add load at every opset;
# - float64: Mul and Add load, Conv does not ("Could not find an implementation for Conv");
# - bfloat16: none of them (Mul/Add NOT_IMPLEMENTED; Conv has no bfloat16 type before 22 and
#   no kernel at 22). onnxruntime has no bfloat16 BatchNormalization either.
# Other dtypes cannot be BN inputs. A dtype missing here lowers to nothing.
CPU_KERNELS: dict[str, tuple[str, ...]] = {
    "float32": (MUL_ADD, DWCONV),
    "float16": (MUL_ADD, DWCONV),
    "float64": (MUL_ADD,),
    "bfloat16": (),
}


def runnable_form(dtype: np.dtype | str, form: str) -> str | None:
    """``form`` where onnxruntime's CPU provider runs it in ``dtype``; else the other form
    where that runs; else None."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    kernels = CPU_KERNELS.get(name, ())
    if form in kernels:
        return form
    others = [other for other in LOWERING_FORMS if other != form and other in kernels]
    return others[0] if others else None


def lowering_plan(site: AffineSite, dtype: np.dtype, form: str = MUL_ADD) -> Plan | None:
    """Replace the BN of ``site`` by ``form`` (or the other form where onnxruntime has no
    kernel for ``form`` in ``dtype``); None when its rank or dtype allows neither."""
    chosen = runnable_form(dtype, form)
    if chosen is None:
        return None
    form = chosen
    if site.rank is None or site.rank < (3 if form == DWCONV else 2):
        return None
    if (
        np.dtype(dtype).name in LOW_PRECISION
        and site.output_scale is not None
        and cancellation(site.affine.shift, site.output_scale) > CANCELLATION_BOUND
    ):
        return None  # x·s + t would cancel in low precision where BN's (x − μ)·s does not
    channels = site.affine.channels
    shape: tuple[int, ...] = (channels,) + (1,) * (site.rank - 2)
    shift_shape: tuple[int, ...]
    if form == DWCONV:  # weight [C, 1, k…] with k = 1, bias [C]
        shape, shift_shape = (channels, 1) + (1,) * (site.rank - 2), (channels,)
    else:
        shift_shape = shape
    scale = round_to(site.affine.scale.reshape(shape), dtype)
    shift = round_to(site.affine.shift.reshape(shift_shape), dtype)
    bn = site.nodes[0]
    base = bn.name or site.output
    scale_name, shift_name = Fresh(f"{base}_scale"), Fresh(f"{base}_shift")
    fold = Fold(
        bn=site.label,
        into="Conv (1×1 depthwise)" if form == DWCONV else "Mul+Add",
        pattern="lower-standalone",
        direction="lowered",
        dtype=str(np.dtype(dtype)),
        rounding_error=max(scale.max_rel_error, shift.max_rel_error),
    )
    constants: list[Edit] = [
        AddConstant(scale_name, scale.value, anchor=bn),
        AddConstant(shift_name, shift.value, anchor=bn),
    ]
    remove = RemoveNodes((bn,), keep_value_info=(site.output,))
    if form == DWCONV:
        conv = InsertNode(
            "Conv",
            (site.input, scale_name, shift_name),
            (site.output,),
            Fresh(f"{base}_dwconv"),
            anchor=bn,
            after=False,
            attributes={"group": channels, "kernel_shape": [1] * (site.rank - 2)},
        )
        return Plan(fold, [bn], [*constants, conv, remove], target=None, site_output=site.output)
    scaled = Fresh(f"{site.output}_scaled")
    mul = InsertNode(
        "Mul",
        (site.input, scale_name),
        (scaled,),
        Fresh(f"{base}_mul"),
        anchor=bn,
        after=False,
        like={0: site.output},
    )
    add = InsertNode(
        "Add", (scaled, shift_name), (site.output,), Fresh(f"{base}_add"), anchor=bn, after=False
    )
    return Plan(fold, [bn], [*constants, mul, add, remove], target=None, site_output=site.output)

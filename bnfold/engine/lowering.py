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
"""

from __future__ import annotations

import numpy as np

from .foldmath import CANCELLATION_BOUND, LOW_PRECISION, cancellation, round_to
from .outcomes import Fold
from .plan import AddConstant, Edit, Fresh, InsertNode, Plan, RemoveNodes
from .sites import AffineSite

MUL_ADD, DWCONV = "mul-add", "dwconv"
LOWERING_FORMS = (MUL_ADD, DWCONV)


def lowering_plan(site: AffineSite, dtype: np.dtype, form: str = MUL_ADD) -> Plan | None:
    """Replace the BN of ``site`` by ``form``; None when its rank does not allow it."""
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

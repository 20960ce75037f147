"""``--lower-standalone``: rewrite a BatchNormalization that nothing folds into as Mul + Add.

``BN(x) = s·x + t`` with ``s``, ``t`` shaped ``[C, 1, …, 1]`` to broadcast over axis 1 of a
rank-``r`` input. Off by default: whether two elementwise kernels beat onnxruntime's one BN
kernel depends on the runtime (see the README's note and ``bnfold bench``).
"""

from __future__ import annotations

import numpy as np

from .foldmath import CANCELLATION_BOUND, LOW_PRECISION, cancellation, round_to
from .outcomes import Fold
from .plan import AddConstant, Edit, Fresh, InsertNode, Plan, RemoveNodes
from .sites import AffineSite


def lowering_plan(site: AffineSite, dtype: np.dtype) -> Plan | None:
    """Replace the BN of ``site`` by ``Mul`` and ``Add``; None when its rank is unknown."""
    if site.rank is None or site.rank < 2:
        return None
    if (
        np.dtype(dtype).name in LOW_PRECISION
        and site.output_scale is not None
        and cancellation(site.affine.shift, site.output_scale) > CANCELLATION_BOUND
    ):
        return None  # x·s + t would cancel in low precision where BN's (x − μ)·s does not
    shape = (site.affine.channels,) + (1,) * (site.rank - 2)
    scale = round_to(site.affine.scale.reshape(shape), dtype)
    shift = round_to(site.affine.shift.reshape(shape), dtype)
    bn = site.nodes[0]
    base = bn.name or site.output
    scale_name, shift_name = Fresh(f"{base}_scale"), Fresh(f"{base}_shift")
    scaled = Fresh(f"{site.output}_scaled")
    fold = Fold(
        bn=site.label,
        into="Mul+Add",
        pattern="lower-standalone",
        direction="lowered",
        dtype=str(np.dtype(dtype)),
        rounding_error=max(scale.max_rel_error, shift.max_rel_error),
    )
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
    edits: list[Edit] = [
        AddConstant(scale_name, scale.value, anchor=bn),
        AddConstant(shift_name, shift.value, anchor=bn),
        mul,
        add,
        RemoveNodes((bn,), keep_value_info=(site.output,)),
    ]
    return Plan(fold, [bn], edits, target=None, site_output=site.output)

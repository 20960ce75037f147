"""``--lower-standalone``: rewrite a BatchNormalization that nothing folds into as Mul + Add.

``BN(x) = s·x + t`` with ``s``, ``t`` shaped ``[C, 1, …, 1]`` to broadcast over axis 1 of a
rank-``r`` input. Off by default: whether two elementwise kernels beat onnxruntime's one BN
kernel depends on the runtime (see the README's note and ``bnfold bench``).
"""

from __future__ import annotations

import numpy as np
import onnx

from .editor import GraphEditor
from .foldmath import round_to
from .outcomes import Fold
from .sites import AffineSite


def lower_to_mul_add(editor: GraphEditor, site: AffineSite, dtype: np.dtype) -> Fold | None:
    """Replace the BN of ``site`` by ``Mul`` and ``Add``; None when its rank is unknown."""
    if site.rank is None or site.rank < 2:
        return None
    shape = (site.affine.channels,) + (1,) * (site.rank - 2)
    scale = round_to(site.affine.scale.reshape(shape), dtype)
    shift = round_to(site.affine.shift.reshape(shape), dtype)
    bn = site.nodes[0]
    base = bn.name or site.output
    scale_name = editor.names.new(f"{base}_scale")
    shift_name = editor.names.new(f"{base}_shift")
    scaled = editor.new_tensor_like(f"{site.output}_scaled", site.output)
    editor.add_constant(scale_name, scale.value, before=bn)
    editor.add_constant(shift_name, shift.value, before=bn)
    mul = onnx.helper.make_node(
        "Mul", [site.input, scale_name], [scaled], name=editor.names.new(f"{base}_mul")
    )
    add = onnx.helper.make_node(
        "Add", [scaled, shift_name], [site.output], name=editor.names.new(f"{base}_add")
    )
    editor.insert_before(bn, mul)
    editor.insert_before(bn, add)
    editor.remove([bn], keep_value_info={site.output})
    return Fold(
        bn=site.label,
        into="Mul+Add",
        pattern="lower-standalone",
        direction="lowered",
        dtype=str(np.dtype(dtype)),
        rounding_error=max(scale.max_rel_error, shift.max_rel_error),
    )

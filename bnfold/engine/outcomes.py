"""The two outcomes a fold attempt reports: a ``Fold`` done, or a ``Skip`` with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .weight_stats import WeightRange


@dataclass(frozen=True)
class Skip:
    """A refusal: ``reason`` is a stable code (listed in README), ``detail`` one line."""

    reason: str
    detail: str


@dataclass
class Fold:
    """One fold as the report shows it.

    ``kind`` is ``BatchNormalization`` or the ops of an elementwise affine (``Mul+Add``).
    ``direction`` is ``producer`` (into the layer that computes the BN input) or ``consumer``;
    ``through`` lists the op types between BN and that layer; ``rounding_error`` is the
    largest error rounding the float64 result to ``dtype`` introduced, relative to the
    largest magnitude of the rewritten tensor (measured for float16/bfloat16; 0 for
    float32/float64, whose rounding is within one ulp). ``edits`` lists what was written.

    ``via``: a fold merged into another BatchNormalization (``bn-affine``) that later folded
    on itself lists that BN (and any it went on through), as the input model labels them;
    ``into`` then names where it finally went (``merges.resolve_merges``).
    """

    bn: str
    into: str
    pattern: str
    direction: str
    through: list[str] = field(default_factory=list)
    dtype: str = "float32"
    rounding_error: float = 0.0
    kind: str = "BatchNormalization"
    # The plan's edits in words, in the order they were applied (``--dry-run`` shows them).
    edits: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)
    # A fold into a quantized (QDQ) layer whose bias was re-quantized to int32: the largest
    # rounding error of the bias, in quantization steps of the output (the scale of the
    # QuantizeLinear after the site; of the bias itself when none follows). None otherwise.
    quantization_steps: float | None = None
    # Under a profile that asks (``targets``): each float weight the fold rewrote, its range
    # and int8 rounding error per output channel before and after (``weight_stats``).
    weight_ranges: list[WeightRange] = field(default_factory=list)
    # bn-affine: the label of the BN merged into before and after the merge (which may rename
    # its output, an unnamed node's label). Not reported: ``resolve_merges`` reads it.
    merge_labels: tuple[str, str] | None = field(default=None, repr=False)

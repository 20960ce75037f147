"""The ordered default list of fold patterns; the first that matches a site folds it.

Order matters: a fold into the producing layer first (it removes the whole affine), then into
the reading layer (also the whole affine), and last the split through an activation (moves
only the scale and leaves the shift as one Add).
"""

from __future__ import annotations

from .base import Pattern
from .consumer import ConvConsumer, GemmConsumer, MatMulConsumer
from .conv_bn import ConvBatchNorm, ConvTransposeBatchNorm
from .gemm_bn import GemmBatchNorm
from .matmul_bn import MatMulBatchNorm

PRODUCERS = (ConvBatchNorm, ConvTransposeBatchNorm, GemmBatchNorm, MatMulBatchNorm)


def default_patterns() -> list[Pattern]:
    return [
        *(producer() for producer in PRODUCERS),
        MatMulConsumer(),
        GemmConsumer(),
        ConvConsumer(),
        *(producer(through_activations=True) for producer in PRODUCERS),
    ]


PATTERN_NAMES = tuple(pattern.name for pattern in default_patterns())

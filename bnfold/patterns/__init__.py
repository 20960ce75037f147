"""The ordered default list of fold patterns; the first that matches a BN folds it."""

from __future__ import annotations

from .base import Pattern
from .conv_bn import ConvBatchNorm, ConvTransposeBatchNorm
from .gemm_bn import GemmBatchNorm
from .matmul_bn import MatMulBatchNorm


def default_patterns() -> list[Pattern]:
    return [ConvBatchNorm(), ConvTransposeBatchNorm(), GemmBatchNorm(), MatMulBatchNorm()]


PATTERN_NAMES = tuple(pattern.name for pattern in default_patterns())

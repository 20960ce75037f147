"""The ordered default list of fold patterns; the first that matches a site folds it.

Order matters: a fold into the producing layer first (it removes the whole affine), then into
the reading layer or layers (also the whole affine), and last the split through an activation
(moves only the scale and leaves the shift as one Add).

Each pattern says which op it folds into (``op_type``) and on which side of the site
(``side``); the walks stop at exactly those ops (``target_ops``), so adding a pattern here is
all it takes for it to be reached. What an affine may pass on the way is ``optable``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from .base import Pattern
from .bn_bn import BatchNormAffine
from .concat_bn import ConcatBatchNorm
from .consumer import ConsumerFold, ConvConsumer, GemmConsumer, MatMulConsumer
from .conv_bn import ConvBatchNorm, ConvTransposeBatchNorm
from .gemm_bn import GemmBatchNorm
from .matmul_bn import MatMulBatchNorm
from .multi_consumer import MultiConsumerFold
from .producer import ProducerFold

PRODUCERS = (ConvBatchNorm, ConvTransposeBatchNorm, GemmBatchNorm, MatMulBatchNorm)
CONSUMERS = (MatMulConsumer, GemmConsumer, ConvConsumer)


def default_patterns(disabled: Iterable[str] = ()) -> list[Pattern]:
    """Every pattern not named in ``disabled``, in the order they are tried."""
    off = set(disabled)
    consumers: list[ConsumerFold] = [c() for c in CONSUMERS if c.name not in off]
    producers: list[ProducerFold] = [p() for p in PRODUCERS if p.name not in off]
    patterns: list[Pattern] = [
        *producers,
        BatchNormAffine(),
        ConcatBatchNorm(producers),
        *consumers,
        MultiConsumerFold(consumers),
        *(producer(through_activations=True) for producer in PRODUCERS),
    ]
    return [pattern for pattern in patterns if pattern.name not in off]


PATTERN_NAMES = tuple(pattern.name for pattern in default_patterns())


@cache
def target_ops(side: str) -> frozenset[str]:
    """Op types the default patterns fold into on ``side`` (``producer`` or ``consumer``):
    the walks stop at these, so a registered pattern is always reached."""
    return frozenset(p.op_type for p in default_patterns() if p.side == side)

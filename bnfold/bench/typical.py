"""The one statistic every comparing number of a report comes from.

The verdict judges ``d_k = ln(median(original_k) / median(candidate_k))`` over the pairs,
by its 20%-trimmed mean (``stats``). Each model's latency is shown as the same statistic
taken apart: over the pairs the trimmed mean keeps (sorted by ``d_k``, ``g = floor(0.2 K)``
dropped from each end), the geometric mean of that model's per-pair medians::

    latency(model) = exp( mean over kept k of ln median(model_k) )

so that ``latency(original) / latency(candidate) = exp(mean of kept d_k) = speedup``
exactly: no table can show a ratio the verdict does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .stats import trimmed_count


def kept_pairs(log_ratios: Sequence[float]) -> list[int]:
    """Indices of the pairs the trimmed mean keeps (the middle ``K - 2g`` by ``d_k``)."""
    order = sorted(range(len(log_ratios)), key=lambda k: log_ratios[k])
    g = trimmed_count(len(order))
    return sorted(order[g : len(order) - g])


def typical_latency(pair_medians_ms: Sequence[float], kept: Sequence[int]) -> float:
    """``exp(mean over kept k of ln median_k)`` in milliseconds."""
    return math.exp(float(np.mean([math.log(pair_medians_ms[k]) for k in kept])))

"""Where a fold merged into another BatchNormalization finally went.

``bn-affine`` merges a BN (or BN-like chain) into the BN before it; that BN is a site itself
and may fold on in a later round (into a layer, into yet another BN, or be lowered), so the
node the merge went into may not exist in the written model. ``resolve_merges`` rewrites the
report's folds so every statement is true of the written model:

- a merge whose BN folded on names where that BN finally went (``into``) and lists the BNs it
  went through (``via``, as the input model labels them);
- the later fold of a merged BN names it as the input model does: a merge renames the
  merged BN's output, which is an unnamed node's label (``<BatchNormalization:y>``).

A merge whose BN is kept keeps naming it (``into``): it is in the written model.
"""

from __future__ import annotations

from .outcomes import Fold


def resolve_merges(folds: list[Fold]) -> None:
    """Resolve ``bn-affine`` merges in ``folds`` (in the order they were applied), in place.

    Replays the renames: a fold's ``bn`` is its site's label when it was planned; a merge
    renames the BN it went into (``merge_labels``: before, after). Each label is unique at any
    one time (names are SSA per scope), so following them in order finds each node's label in
    the input and each merged BN's own later fold.
    """
    current: dict[str, str] = {}  # a label now -> the label that node has in the input
    sites: list[str] = []  # each fold's site, labelled as in the input
    merged_into: dict[int, str] = {}  # a merge -> the BN it went into, labelled as in the input
    for i, fold in enumerate(folds):
        sites.append(current.pop(fold.bn, fold.bn))
        if fold.merge_labels is not None:
            before, after = fold.merge_labels
            merged_into[i] = current.pop(before, before)
            current[after] = merged_into[i]
    own = {site: i for i, site in enumerate(sites)}  # each node folds once
    for i in sorted(merged_into, reverse=True):  # a later fold is resolved before its merges
        j = own.get(merged_into[i])
        if j is not None and j > i:  # the BN it merged into folded on itself
            folds[i].via = [merged_into[i], *folds[j].via]
            folds[i].into = folds[j].into
    for fold, site in zip(folds, sites, strict=True):
        fold.bn = site
        fold.merge_labels = None  # resolved: a second call changes nothing


def into_text(fold: Fold) -> str:
    """``into`` as the report tables show it: ``conv (via bn1)`` for a merge that folded on."""
    return f"{fold.into} (via {', '.join(fold.via)})" if fold.via else fold.into

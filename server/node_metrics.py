"""Combining what nodes report: example-weighted metrics and summed counts.

Nodes report aggregates only (counts per level, hidden-hardship counts, duplicate-aid
counts, evaluation metrics with their example count); nothing here sees a student.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["sum_counts", "weighted_metrics"]

_WEIGHT_KEY = "num_examples"


def weighted_metrics(per_node: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average every metric over nodes, weighted by ``num_examples``; sum the counts."""
    total = sum(float(m.get(_WEIGHT_KEY, 0.0)) for m in per_node.values())
    if total <= 0:
        return {}
    keys = sorted({k for m in per_node.values() for k in m if k != _WEIGHT_KEY})
    out = {_WEIGHT_KEY: total}
    for key in keys:
        num = sum(float(m[key]) * float(m.get(_WEIGHT_KEY, 0.0))
                  for m in per_node.values() if key in m)
        den = sum(float(m.get(_WEIGHT_KEY, 0.0)) for m in per_node.values() if key in m)
        if den > 0:
            out[key] = num / den
    return out


def sum_counts(per_node: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Sum every count over nodes (keys absent on a node, or suppressed there (-1), count
    as zero)."""
    keys = sorted({k for m in per_node.values() for k in m})
    return {k: float(sum(max(0.0, float(m.get(k, 0.0))) for m in per_node.values()))
            for k in keys}

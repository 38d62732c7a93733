"""Per-student reasons a reviewer can check: rule hits and the indicators that weighed most.

Contribution of an indicator = gradient x input of the hardship logit (``logit P(level > 0)``)
summed over the indicator's encoded columns (value or one-hot, and its missing mask); a
department's record column is a contribution of its own ("civil_affairs record": the student
is on that department's rolls). Only positive contributions (towards hardship) are listed,
largest first, phrased with the indicator's declared direction ("household_income_per_capita
low").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from fedid.model.features import FeatureLayout
from fedid.model.net import HardshipNet, split_outputs
from fedid.schema import Schema

__all__ = ["indicator_contributions", "reason_labels", "top_indicator_reasons"]

_PHRASE = {"harder_when_high": "high", "harder_when_low": "low", "neutral": "value"}


def reason_labels(schema: Schema, layout: FeatureLayout) -> list[tuple[str, str]]:
    """Per contribution column, (name, word towards hardship): indicators, then records."""
    labels = [(ind.name, _PHRASE.get(ind.direction, "value")) for ind in schema.indicators]
    return labels + [(f"{dep} record", "") for dep in layout.record_departments]


def indicator_contributions(
    net: HardshipNet, x: npt.NDArray[np.float32], layout: FeatureLayout, schema: Schema
) -> npt.NDArray[np.float64]:
    """Rows x (indicators, then record departments): gradient x input of the hardship logit."""
    net.eval()
    groups = [list(layout.columns_of(ind.name)) for ind in schema.indicators]
    groups += [[layout.record_column(dep)] for dep in layout.record_departments]
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    level_logits, _ = split_outputs(net(xt), net.n_levels)
    level_logits[:, 0].sum().backward()  # type: ignore[no-untyped-call]
    if xt.grad is None:
        return np.zeros((x.shape[0], len(groups)))
    gxi = (xt.grad * xt).detach().numpy().astype(np.float64)
    out = np.zeros((x.shape[0], len(groups)))
    for j, cols in enumerate(groups):
        out[:, j] = gxi[:, cols].sum(axis=1)
    return out


def top_indicator_reasons(
    contributions: npt.NDArray[np.float64], labels: list[tuple[str, str]], *, k: int = 3
) -> list[list[str]]:
    """Per row, up to ``k`` entries pushing towards hardship, e.g. ``"model:dibao high"``.

    ``labels``: :func:`reason_labels`, one per column of ``contributions``.
    """
    towards = [f"model:{n} {w}".rstrip() for n, w in labels]
    against = [f"model:{n} against" for n, _ in labels]
    order = np.argsort(-contributions, axis=1)[:, :k]
    out: list[list[str]] = []
    for row, idx in enumerate(order):
        reasons = [towards[j] for j in idx if contributions[row, j] > 0]
        if not reasons:  # nothing pushes towards hardship: name the strongest evidence against
            reasons = [against[int(np.argmin(contributions[row]))]]
        out.append(reasons)
    return out

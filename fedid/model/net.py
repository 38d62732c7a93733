"""The learned model: a small MLP with an ordinal level head and a multi-label dimension head.

Level head (CORAL, rank-consistent ordinal regression): one shared score ``s(x)`` and ``K - 1``
thresholds, ``logit_k = s(x) + b_k`` for ``P(level > k)``, k = 0..K-2. The thresholds are the
weights of a bias-free ``Linear(1, K-1)`` applied to a constant 1, so every parameter lives in
a layer Opacus computes per-sample gradients for. The dimension head gives one logit per flag.
The forward pass returns both heads concatenated: ``[batch, (K - 1) + flags]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fedid.errors import TrainingError

__all__ = ["HardshipNet", "check_weights", "per_sample_loss", "split_outputs"]


class HardshipNet(nn.Module):
    """MLP trunk, CORAL level head over ``n_levels`` levels, ``n_flags`` dimension logits."""

    def __init__(
        self, n_inputs: int, n_levels: int, n_flags: int, hidden: Sequence[int] = (64, 32)
    ) -> None:
        super().__init__()
        if n_inputs < 1 or n_levels < 2 or n_flags < 0 or any(h < 1 for h in hidden):
            raise TrainingError(
                "network needs >= 1 input, >= 2 levels, >= 0 flags, hidden widths >= 1"
                " (none: a linear model)."
                f" Got {n_inputs}, {n_levels}, {n_flags}, {list(hidden)}."
            )
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers) if layers else nn.Identity()
        self.score = nn.Linear(width, 1, bias=False)
        self.thresholds = nn.Linear(1, n_levels - 1, bias=False)
        self.flags = nn.Linear(width, max(n_flags, 1))
        self.n_levels = n_levels
        self.n_flags = n_flags
        self.trunk_inputs = n_inputs
        with torch.no_grad():  # start with ordered thresholds: P(level > k) decreasing in k
            self.thresholds.weight.copy_(-torch.linspace(1.0, 3.0, n_levels - 1).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
        levels = self.score(h) + self.thresholds(ones)
        flags = self.flags(h)[:, : self.n_flags]
        return torch.cat([levels, flags], dim=1)


def check_weights(net: HardshipNet, weights: Mapping[str, Any]) -> None:
    """Refuse weights that do not fit ``net`` (another schema, or an older input layout)."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(getattr(v, "shape", ())) for k, v in weights.items()}
    if expected != got:
        wrong = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        raise TrainingError(
            f"model weights do not fit this schema's {net.trunk_inputs} inputs: saved for"
            " another schema or by a fedid before the department record columns (retrain"
            f" the model). Mismatched: {', '.join(wrong[:4])}."
        )


def split_outputs(out: torch.Tensor, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cumulative level logits ``[B, K-1]``, flag logits ``[B, F]``)."""
    return out[:, : n_levels - 1], out[:, n_levels - 1 :]


def per_sample_loss(
    out: torch.Tensor,
    levels: torch.Tensor,
    flags: torch.Tensor,
    *,
    n_levels: int,
    flag_weight: float = 0.5,
    level_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Per-record loss: CORAL binary cross-entropies plus weighted flag cross-entropies.

    ``level_weights`` (one per level, indexed by the record's label level) scale the level
    term of each record: class weights fixed a priori, never estimated from the data.
    """
    level_logits, flag_logits = split_outputs(out, n_levels)
    ks = torch.arange(n_levels - 1).unsqueeze(0)
    cumulative = (levels.unsqueeze(1) > ks).to(out.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits
    loss = bce(level_logits, cumulative, reduction="none").sum(dim=1)
    if level_weights is not None:
        if len(level_weights) != n_levels:
            raise TrainingError(
                f"level_weights needs one weight per level ({n_levels}). Got {len(level_weights)}."
            )
        loss = loss * torch.as_tensor(level_weights, dtype=out.dtype)[levels]
    if flag_logits.shape[1]:
        loss = loss + flag_weight * bce(flag_logits, flags, reduction="none").sum(dim=1)
    return loss

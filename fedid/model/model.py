"""A trained hardship model: schema, architecture, weights; recommendations with reasons.

:meth:`HardshipModel.recommend` scores every student (not only applicants) and returns one
row per student: recommended level (the rule layer first, then the learned model), dimension
flags, P(hardship), whether an exclusion signal asks for review, and the reasons. It is a
recommendation for people to review, never a decision.

The learned level counts the cumulative probabilities ``P(level > k)`` that pass their
thresholds: ``hardship_threshold`` for ``P(level >= 1)`` (default: the schema's
:attr:`~fedid.schema.Schema.hardship_threshold`: its ``[labels] threshold``, or the correction
for a declared label process, :mod:`fedid.label_noise`, or 1/2), 1/2 for the higher levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fedid.errors import ConfigError
from fedid.model.features import ID_COLUMN, encode, feature_layout
from fedid.model.net import HardshipNet, check_weights, split_outputs
from fedid.model.reasons import indicator_contributions, reason_labels, top_indicator_reasons
from fedid.model.rules import apply_rules
from fedid.schema import Schema

__all__ = ["HardshipModel", "Scores"]


@dataclass(frozen=True, slots=True)
class Scores:
    """The learned model's outputs for a batch of students."""

    p_greater: npt.NDArray[np.float64]  # rows x (K-1): P(level > k)
    p_flags: npt.NDArray[np.float64]  # rows x flags

    @property
    def p_hardship(self) -> npt.NDArray[np.float64]:
        """P(level > 0)."""
        return self.p_greater[:, 0]

    @property
    def level(self) -> npt.NDArray[np.int64]:
        """CORAL prediction: the number of thresholds passed with probability > 0.5."""
        return self.levels(0.5)

    def levels(self, hardship_threshold: float) -> npt.NDArray[np.int64]:
        """Levels with ``P(level >= 1) > hardship_threshold`` and ``P(level > k) > 0.5``, k >= 1.

        Rank-consistent for any threshold <= 0.5 (CORAL's ``P(level > k)`` decrease in k).
        """
        cuts = np.full(self.p_greater.shape[1], 0.5)
        if cuts.size:
            cuts[0] = hardship_threshold
        level: npt.NDArray[np.int64] = (self.p_greater > cuts).sum(axis=1).astype(np.int64)
        return level


@dataclass(frozen=True)
class HardshipModel:
    """Schema + architecture + weights (numpy arrays keyed like the torch state dict)."""

    schema: Schema
    hidden: tuple[int, ...]
    weights: Mapping[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    hardship_threshold: float | None = None  # None: the schema's threshold

    def __post_init__(self) -> None:
        if self.hardship_threshold is None:
            object.__setattr__(self, "hardship_threshold", self.schema.hardship_threshold)
        if not 0.0 < float(self.hardship_threshold or 0.0) < 1.0:
            raise ConfigError(
                f"hardship_threshold must be in (0, 1). Got {self.hardship_threshold}."
            )

    @property
    def threshold(self) -> float:
        """The decision threshold on ``P(level >= 1)`` in use."""
        return float(self.hardship_threshold or self.schema.hardship_threshold)

    def build_net(self) -> HardshipNet:
        """A fresh network; the stored weights loaded if there are any."""
        net = HardshipNet(
            feature_layout(self.schema).width,
            len(self.schema.levels.names),
            len(self.schema.dimension_flags),
            self.hidden,
        )
        if self.weights:
            check_weights(net, self.weights)
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights.items()})
        return net

    def score(self, inputs: pd.DataFrame) -> Scores:
        """Learned-model probabilities for every row of ``inputs``."""
        net = self.build_net().eval()
        x = torch.from_numpy(encode(inputs, self.schema))
        with torch.no_grad():
            level_logits, flag_logits = split_outputs(net(x), net.n_levels)
        return Scores(
            p_greater=torch.sigmoid(level_logits).double().numpy(),
            p_flags=torch.sigmoid(flag_logits).double().numpy(),
        )

    def recommend(self, inputs: pd.DataFrame, *, top_k: int = 3) -> pd.DataFrame:
        """One row per student: level, flags, P(hardship), review flag, source and reasons."""
        schema = self.schema
        hits = apply_rules(inputs, schema)
        scores = self.score(inputs)
        rule_level = hits.levels()
        level = np.maximum(rule_level, scores.levels(self.threshold))
        flags = scores.p_flags > 0.5
        if "special_group" in schema.dimension_flags:
            flags[:, schema.dimension_flags.index("special_group")] |= hits.recognised
        layout = feature_layout(schema)
        contrib = indicator_contributions(self.build_net(), encode(inputs, schema), layout, schema)
        model_reasons = top_indicator_reasons(contrib, reason_labels(schema, layout), k=top_k)
        reasons = ["; ".join(hits.reasons(i) + model_reasons[i]) for i in range(len(inputs))]
        names = np.asarray(schema.levels.names, dtype=object)
        out = pd.DataFrame(
            {
                ID_COLUMN: inputs[ID_COLUMN].to_numpy()
                if ID_COLUMN in inputs.columns
                else np.arange(len(inputs)),
                "level": names[level],
                "level_index": level,
                "p_hardship": np.where(hits.recognised, 1.0, scores.p_hardship),
                "source": np.where(hits.recognised, "rule", "model"),
                "review": hits.review,
                "reasons": reasons,
            }
        )
        for j, flag in enumerate(schema.dimension_flags):
            out[f"flag_{flag}"] = flags[:, j]
        return out

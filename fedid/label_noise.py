"""Decision threshold corrected for class-conditional label noise, from PUBLISHED rates only.

Used only where a schema declares its label process (``[labels]`` with ``missed_rate``,
``wrong_aid_rate``, ``hardship_share``; the default schema does, a custom schema need not:
then the threshold is the schema's ``threshold`` or 1/2). For the default schema the training
labels are last year's recognition outcomes. The self-report process flips them with rates
that are published (the national plan's figures), not estimated from any private table:

- ``missed_rate`` (17 %): share of students in hardship NOT recognised (the 12.7 % who never
  apply are among them), so ``rho_pos = P(label none | in hardship) = missed_rate``;
- ``wrong_aid_rate`` (23 %): share of the aided who are NOT in hardship; with the published
  share of students in hardship ``pi`` (about 20 %: 10/20/30 % east/central/west senior high,
  about 20 % at universities) the flip rate of the other class is
  ``rho_neg = P(label aided | not in hardship)
  = wrong / (1 - wrong) x (1 - missed) x pi / (1 - pi)``.

When flips are independent of the features given the true class, the noisy posterior is
``eta_noisy = rho_neg + (1 - rho_pos - rho_neg) x eta_clean``, so the clean Bayes decision
``eta_clean > 1/2`` is ``eta_noisy > (1 - rho_pos + rho_neg) / 2`` (Natarajan et al., NeurIPS
2013, Thm. 9; Scott, AISTATS 2015). The model applies this threshold to its cumulative
``P(level >= 1)`` (hardship or not) only; the higher levels keep 1/2 (no published rate
describes their confusion). Post-processing of the released model: it costs no privacy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedid.errors import ConfigError

__all__ = ["PUBLISHED_SELF_REPORT", "LabelNoise"]


@dataclass(frozen=True, slots=True)
class LabelNoise:
    """Published self-report error rates and the threshold they imply."""

    missed_rate: float
    wrong_aid_rate: float
    hardship_share: float
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("missed_rate", "wrong_aid_rate", "hardship_share"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1). Got {value}.")
        if self.hardship_share <= 0.0:
            raise ConfigError(f"hardship_share must be > 0. Got {self.hardship_share}.")
        if self.rho_pos + self.rho_neg >= 1.0:
            raise ConfigError(
                "label flip rates must sum to < 1 (else labels carry no signal)."
                f" Got {self.rho_pos:.3f} + {self.rho_neg:.3f}."
            )

    @property
    def rho_pos(self) -> float:
        """P(labelled none | in hardship)."""
        return self.missed_rate

    @property
    def rho_neg(self) -> float:
        """P(labelled aided | not in hardship)."""
        w, pi = self.wrong_aid_rate, self.hardship_share
        return w / (1.0 - w) * (1.0 - self.missed_rate) * pi / (1.0 - pi)

    @property
    def hardship_threshold(self) -> float:
        """Threshold on the noisy ``P(level >= 1)`` equal to clean posterior 1/2."""
        return (1.0 - self.rho_pos + self.rho_neg) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived rates and threshold."""
        return {
            "missed_rate": self.missed_rate,
            "wrong_aid_rate": self.wrong_aid_rate,
            "hardship_share": self.hardship_share,
            "rho_pos": self.rho_pos,
            "rho_neg": self.rho_neg,
            "hardship_threshold": self.hardship_threshold,
            "source": self.source,
        }


#: The plan's published self-report figures: 17 % missed, 23 % wrongly aided,
#: about 20 % of students in hardship. Threshold (1 - 0.17 + 0.062) / 2 = 0.446.
PUBLISHED_SELF_REPORT = LabelNoise(
    missed_rate=0.17,
    wrong_aid_rate=0.23,
    hardship_share=0.20,
    source="national plan figures: 17 % of eligible missed, 23 % of aided wrongly"
    " aided; share aided about 10/20/30 % east/central/west, about 20 % at universities",
)

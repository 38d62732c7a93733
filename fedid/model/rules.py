"""The rule layer, before any learned score: direct recognition and exclusion signals.

Direct rules (the schema's ``[[rules.direct]]``: 低保, 特困, poverty monitoring, orphans,
martyrs' families, severe disability ...) set the top level. Exclusion rules (vehicles,
several properties, business ownership, high campus spending) do not change a level: they
flag the student for human review and are listed among the reasons. A missing value never
matches a rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.model.features import indicator_frame
from fedid.schema import Rule, Schema

__all__ = ["RuleHits", "apply_rules"]


def _values(col: pd.Series) -> npt.NDArray[np.generic]:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        numeric: npt.NDArray[np.generic] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return numeric
    obj = col.astype(object)
    objects: npt.NDArray[np.generic] = obj.where(obj.notna(), None).to_numpy(dtype=object)
    return objects


def _hits(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> npt.NDArray[np.bool_]:
    if not rules:
        return np.zeros((len(frame), 0), dtype=bool)
    return np.stack([rule.applies(_values(frame[rule.indicator])) for rule in rules], axis=1)


@dataclass(frozen=True, slots=True)
class RuleHits:
    """Per student, which direct and exclusion rules matched."""

    direct_names: tuple[str, ...]
    exclusion_names: tuple[str, ...]
    direct: npt.NDArray[np.bool_]  # rows x direct rules
    exclusion: npt.NDArray[np.bool_]  # rows x exclusion rules
    top_level: int

    @property
    def recognised(self) -> npt.NDArray[np.bool_]:
        """Students recognised directly (any direct rule matched)."""
        return np.asarray(self.direct.any(axis=1), dtype=bool)

    @property
    def review(self) -> npt.NDArray[np.bool_]:
        """Students with an exclusion signal, flagged for human review."""
        return np.asarray(self.exclusion.any(axis=1), dtype=bool)

    def levels(self) -> npt.NDArray[np.int64]:
        """The rule layer's level per student: the top level if recognised, else 0."""
        return np.where(self.recognised, self.top_level, 0).astype(np.int64)

    def reasons(self, row: int) -> list[str]:
        """Rule reasons of one student, e.g. ``"direct:dibao"``, ``"exclusion:owns_vehicle"``."""
        out = [
            f"direct:{n}" for n, hit in zip(self.direct_names, self.direct[row], strict=True) if hit
        ]
        out += [
            f"exclusion:{n}"
            for n, hit in zip(self.exclusion_names, self.exclusion[row], strict=True)
            if hit
        ]
        return out


def apply_rules(frame: pd.DataFrame, schema: Schema) -> RuleHits:
    """Evaluate the schema's rule layer on every row of ``frame`` (absent indicators: no hit)."""
    inds = indicator_frame(frame, schema)
    return RuleHits(
        direct_names=tuple(r.name for r in schema.direct_rules),
        exclusion_names=tuple(r.name for r in schema.exclusion_rules),
        direct=_hits(inds, schema.direct_rules),
        exclusion=_hits(inds, schema.exclusion_rules),
        top_level=len(schema.levels.names) - 1,
    )

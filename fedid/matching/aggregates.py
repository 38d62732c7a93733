"""Counts a home agency releases to the coordinator after a run (step 8).

Counts (per home agency):

* ``matched_students:<dept>``: students with a record of the department (own or a guardian's);
* ``students_matched_by_2plus``: students matched by at least two departments;
* ``duplicate_aid_overlap``: students aided by education (``label_level != "none"``) whose
  family also received civil-affairs temporary relief (``temporary_relief > 0``);
* ``hidden_hardship_candidates``: students with a positive special-group indicator
  (a special-group department's flag true or grade > 0) who did not apply.

Release: optional discrete-Laplace (two-sided geometric) noise, then cells below
``min_cell`` are suppressed (-1). One student changes each count by at most 1, so the L1
sensitivity of the vector is its length ``L``; each count gets noise of scale ``L/epsilon``
and the release is ``epsilon``-DP (pure) for the counts; ``epsilon`` is recorded.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedid.errors import ConfigError
from fedid.schema import Schema

__all__ = ["AggregateRelease", "ReleaseConfig", "compute_counts", "release_counts"]


@dataclass(frozen=True, slots=True)
class ReleaseConfig:
    """Suppression threshold and optional DP noise (``epsilon`` None: no noise)."""

    min_cell: int = 10
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.min_cell < 0:
            raise ConfigError(f"min_cell must be >= 0. Got {self.min_cell}.")
        if self.epsilon is not None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"epsilon must be > 0. Got {self.epsilon}.")


@dataclass(frozen=True, slots=True)
class AggregateRelease:
    names: tuple[str, ...]
    values: tuple[int, ...]
    epsilon: float
    noise_scale: float


def compute_counts(schema: Schema, resolved: pd.DataFrame, departments: tuple[str, ...]
                   ) -> dict[str, int]:
    """Exact counts from a home agency's resolved frame (see the module docstring)."""
    counts: dict[str, int] = {}
    matched = np.zeros((len(resolved), len(departments)), dtype=bool)
    for j, dep in enumerate(departments):
        col = resolved.get(f"matched_{dep}")
        if col is not None:
            matched[:, j] = col.to_numpy(dtype=bool)
        counts[f"matched_students:{dep}"] = int(matched[:, j].sum())
    counts["students_matched_by_2plus"] = int((matched.sum(axis=1) >= 2).sum())
    aided = resolved.get("label_level")
    relief = resolved.get("temporary_relief")
    if aided is not None and relief is not None:
        is_aided = aided.astype("string").fillna("none").to_numpy() != "none"
        has_relief = relief.astype("Float64").fillna(0).to_numpy(dtype=float) > 0
        counts["duplicate_aid_overlap"] = int((is_aided & has_relief).sum())
    special = np.zeros(len(resolved), dtype=bool)
    for ind in schema.indicators:
        if ind.dimension != "special_group" or ind.department not in departments:
            continue
        if ind.name not in resolved.columns:
            continue
        col = resolved[ind.name]
        if ind.type == "bool":
            special |= col.astype("boolean").fillna(False).to_numpy(dtype=bool)
        elif ind.is_numeric:
            special |= col.astype("Float64").fillna(0).to_numpy(dtype=float) > 0
    if "applied" in resolved.columns:
        applied = resolved["applied"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        counts["hidden_hardship_candidates"] = int((special & ~applied).sum())
    return counts


def _two_sided_geometric(scale: float, size: int) -> np.ndarray:
    rng = np.random.default_rng(secrets.randbits(128))
    p = 1.0 - math.exp(-1.0 / scale)
    return rng.geometric(p, size) - rng.geometric(p, size)


def release_counts(counts: dict[str, int], config: ReleaseConfig) -> AggregateRelease:
    """Noise (if configured), then suppress small cells."""
    names = tuple(sorted(counts))
    values = np.asarray([counts[n] for n in names], dtype=np.int64)
    eps = 0.0
    scale = 0.0
    if config.epsilon is not None and len(names):
        scale = len(names) / config.epsilon
        values = np.maximum(values + _two_sided_geometric(scale, len(names)), 0)
        eps = config.epsilon
    released = tuple(int(v) if v >= config.min_cell else -1 for v in values.tolist())
    return AggregateRelease(names=names, values=released, epsilon=eps, noise_scale=scale)

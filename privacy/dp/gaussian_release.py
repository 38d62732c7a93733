"""A Gaussian release of counts, charged to the same accountant as DP-SGD.

A vector of counts where one record changes each count by at most 1 and at most ``k``
counts in all has L2 sensitivity ``sqrt(k)``. Adding Gaussian noise of standard deviation
``noise_multiplier x sqrt(k)`` to every count is the Gaussian mechanism with that noise
multiplier, which is exactly one step of the subsampled Gaussian mechanism at sample rate
1: the history entry ``(noise_multiplier, 1.0, 1)``. So the release composes with the
node's DP-SGD history in one PRV (or RDP) accountant, and the node's one budget guard
covers both.

Noise comes from a numpy generator seeded from the OS CSPRNG unless a test passes its own;
released values are rounded to integers and floored at 0 (post-processing).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privacy.dp.accounting import HistoryEntry
from privacy.errors import AccountingError

__all__ = ["CountRelease", "count_release_entry", "release_counts_gaussian", "secure_rng"]


def secure_rng(seed: int | None = None) -> np.random.Generator:
    """A numpy generator seeded from the OS CSPRNG (``seed``: tests only)."""
    return np.random.default_rng(secrets.randbits(128) if seed is None else seed)


def count_release_entry(noise_multiplier: float) -> HistoryEntry:
    """The accountant entry of one Gaussian count release: ``(sigma, 1.0, 1)``."""
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise AccountingError(f"noise multiplier must be finite and > 0. Got {noise_multiplier}.")
    return (float(noise_multiplier), 1.0, 1)


@dataclass(frozen=True, slots=True)
class CountRelease:
    """Noised counts and how they were protected."""

    values: dict[str, float]
    noise_multiplier: float
    l2_sensitivity: float
    std: float


def release_counts_gaussian(
    counts: Mapping[str, float],
    *,
    noise_multiplier: float,
    max_counts_per_record: int,
    rng: np.random.Generator | None = None,
) -> CountRelease:
    """Gaussian mechanism on ``counts`` (see the module docstring for the sensitivity)."""
    count_release_entry(noise_multiplier)
    if max_counts_per_record < 1:
        raise AccountingError(
            f"max_counts_per_record must be >= 1. Got {max_counts_per_record}.")
    sens = math.sqrt(max_counts_per_record)
    std = noise_multiplier * sens
    gen = rng if rng is not None else secure_rng()
    names = sorted(counts)
    noise = gen.normal(0.0, std, size=len(names))
    values = {n: float(max(0, round(float(counts[n]) + float(z))))
              for n, z in zip(names, noise, strict=True)}
    return CountRelease(values=values, noise_multiplier=float(noise_multiplier),
                        l2_sensitivity=sens, std=std)

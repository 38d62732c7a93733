"""DP-SGD for the hardship model: accounting, the privacy budget, the Opacus trainer.

See :mod:`privacy.dp.accounting`, :mod:`privacy.dp.budget`, :mod:`privacy.dp.trainer`,
:mod:`privacy.dp.gaussian_release` (Gaussian count releases charged to the same accountant).
"""

from __future__ import annotations

from privacy.dp.accounting import (
    ACCOUNTANTS,
    MECHANISM,
    Accountant,
    HistoryEntry,
    PrivacySpend,
    calibrate_noise_multiplier,
    expected_batch_size,
    opacus_sample_rate,
    steps_per_epoch,
)
from privacy.dp.budget import PrivacyBudget, check_budget
from privacy.dp.gaussian_release import (
    CountRelease,
    count_release_entry,
    release_counts_gaussian,
    secure_rng,
)
from privacy.dp.trainer import (
    GRAD_SAMPLE_MODES,
    DPSGDConfig,
    DPTrainResult,
    PerSampleLoss,
    dp_train,
    planned_steps,
    poisson_mask,
)

__all__ = [
    "ACCOUNTANTS",
    "GRAD_SAMPLE_MODES",
    "MECHANISM",
    "Accountant",
    "CountRelease",
    "DPSGDConfig",
    "DPTrainResult",
    "HistoryEntry",
    "PerSampleLoss",
    "PrivacyBudget",
    "PrivacySpend",
    "calibrate_noise_multiplier",
    "check_budget",
    "count_release_entry",
    "dp_train",
    "expected_batch_size",
    "opacus_sample_rate",
    "planned_steps",
    "poisson_mask",
    "release_counts_gaussian",
    "secure_rng",
    "steps_per_epoch",
]

"""DP-SGD for the hardship model: accounting, the privacy budget, the Opacus trainer.

See :mod:`privacy.dp.accounting`, :mod:`privacy.dp.budget`, :mod:`privacy.dp.trainer`,
:mod:`privacy.dp.gaussian_release` (Gaussian count releases charged to the same accountant),
:mod:`privacy.dp.distributed_noise` (each party's share of the noise under a secure sum).
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
from privacy.dp.distributed_noise import (
    SHARED_MECHANISM,
    ForwardLoss,
    GradientShare,
    SharedEntry,
    SharedNoiseSpend,
    clipped_gradient_sum,
    fallback_history,
    noisy_gradient_share,
    share_noise,
    share_std,
    shared_noise_spend,
)
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
    "SHARED_MECHANISM",
    "Accountant",
    "CountRelease",
    "DPSGDConfig",
    "DPTrainResult",
    "ForwardLoss",
    "GradientShare",
    "HistoryEntry",
    "PerSampleLoss",
    "PrivacyBudget",
    "PrivacySpend",
    "SharedEntry",
    "SharedNoiseSpend",
    "calibrate_noise_multiplier",
    "check_budget",
    "clipped_gradient_sum",
    "count_release_entry",
    "dp_train",
    "expected_batch_size",
    "fallback_history",
    "noisy_gradient_share",
    "opacus_sample_rate",
    "planned_steps",
    "poisson_mask",
    "release_counts_gaussian",
    "secure_rng",
    "share_noise",
    "share_std",
    "shared_noise_spend",
    "steps_per_epoch",
]

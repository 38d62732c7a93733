"""The hardship model: schema features, rule layer, DP-trained network, evaluation, card.

Entry points the Flower apps call: :func:`build_inputs`, :func:`train_local` with a persisted
:class:`LocalState`, :class:`HardshipModel` ``.recommend``, :func:`evaluate`.
"""

from __future__ import annotations

from fedid.label_noise import PUBLISHED_SELF_REPORT, LabelNoise
from fedid.model.baselines import train_centralized, train_local_plain
from fedid.model.card import DP_CAVEATS, ModelCard, load_model, model_from_arrays, save_model
from fedid.model.evaluate import (
    core_metrics,
    evaluate,
    evaluate_levels,
    evaluate_recommendations,
    summary,
)
from fedid.model.features import (
    ID_COLUMN,
    FeatureLayout,
    build_inputs,
    encode,
    feature_layout,
    flag_targets,
    level_targets,
)
from fedid.model.model import HardshipModel, Scores
from fedid.model.net import HardshipNet, per_sample_loss
from fedid.model.rules import RuleHits, apply_rules
from fedid.model.train import (
    LocalResult,
    LocalState,
    TrainConfig,
    default_delta,
    new_local_state,
    train_local,
)

__all__ = [
    "DP_CAVEATS",
    "ID_COLUMN",
    "PUBLISHED_SELF_REPORT",
    "FeatureLayout",
    "HardshipModel",
    "HardshipNet",
    "LabelNoise",
    "LocalResult",
    "LocalState",
    "ModelCard",
    "RuleHits",
    "Scores",
    "TrainConfig",
    "apply_rules",
    "build_inputs",
    "core_metrics",
    "default_delta",
    "encode",
    "evaluate",
    "evaluate_levels",
    "evaluate_recommendations",
    "feature_layout",
    "flag_targets",
    "level_targets",
    "load_model",
    "model_from_arrays",
    "new_local_state",
    "per_sample_loss",
    "save_model",
    "summary",
    "train_centralized",
    "train_local",
    "train_local_plain",
]

"""Black-box membership inference on real student records: loss threshold and offline LiRA.

Targets: every labelled student of every education agency; each is in its agency's training
rows with probability 1/2, independently (the others are the non-members the attack must
tell apart). The target federation (:func:`simulations.audit_fed.federate`, the nodes' own
``train_local`` and FedAvg) releases its final model; the attacker only queries it.

- ``loss``: score = minus the record's training loss under the released model (Yeom et
  al. 2018), no shadow model.
- ``lira_offline``: the statistic is the logit of the model's likelihood of the record's
  labels, ``log p - log(1 - p)`` with ``p = exp(-loss)``; shadow federations trained the same
  way on a REFERENCE population (another draw of the province, "next year": none of the
  targets) give each target's statistic without it; the score is how far the target's
  statistic sits above that OUT distribution (:func:`privacy.audit.lira_offline_scores`).

Figures per agency, pooled, and per group of the fairness report (rural/urban, region, sex,
stage, as :func:`simulations.evaluation.group_gaps`): AUC and TPR at 0.1 % FPR; with fewer
than 1,000 non-members in a cell, 0.1 % FPR means no false positive at all. The one-run
bound from the same scores (the real records as canaries) is reported per agency.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fedid.model.features import encode, flag_targets, level_targets
from fedid.model.net import per_sample_loss
from fedid.model.train import TrainConfig
from fedid.schema import Schema
from privacy.audit import audit_scores, lira_offline_scores, roc_auc, tpr_at_fpr
from simulations.audit_fed import Weights, federate, hardship_net

__all__ = ["GROUPS", "LOW_FPR", "NONPRIVATE_CONTROL", "membership_inference", "record_losses"]

LOW_FPR = 0.001
# The non-private control: a larger model trained longer without DP, to show what the attacks
# find when nothing protects the records. On the default province (2026-12-06, BENCHMARKS.md)
# the project's own non-private recipe (32 hidden units, 5 rounds x 30 epochs of Adam) gave
# pooled AUCs of 0.510 (loss) and 0.519 (LiRA); this control (256 hidden units, 10 rounds x 10
# epochs) 0.512 and 0.531 (largest agency 0.548): FedAvg of small tabular nets memorises
# little, so the attacks have little to find even without DP.
NONPRIVATE_CONTROL = replace(TrainConfig(), hidden=(256,), rounds=10, plain_epochs=10)
GROUPS = ("rural", "region", "sex", "stage")
Progress = Callable[[str], None]


def record_losses(weights: Weights, frame: pd.DataFrame, schema: Schema,
                  config: TrainConfig) -> npt.NDArray[np.float64]:
    """Each record's training loss under ``weights`` (what a black-box attacker computes)."""
    net = hardship_net(schema, config)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(encode(frame, schema)))
        loss = per_sample_loss(out, torch.from_numpy(level_targets(frame, schema)),
                               torch.from_numpy(flag_targets(frame, schema)),
                               n_levels=len(schema.levels.names), flag_weight=config.flag_weight,
                               level_weights=config.level_weights)
    return loss.double().numpy()


def _logit_stat(loss: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    loss = np.clip(loss, 1e-12, None)
    return np.asarray(-loss - np.log(-np.expm1(-loss)), dtype=np.float64)


def _metrics(scores: npt.NDArray[np.float64], members: npt.NDArray[np.bool_]) -> dict[str, Any]:
    if members.all() or not members.any():
        return {"n": len(members)}
    return {"n": len(members), "members": int(members.sum()),
            "auc": roc_auc(scores, members), "tpr_at_0.1%_fpr": tpr_at_fpr(
                scores, members, fpr=LOW_FPR)}


def _figures(scores: npt.NDArray[np.float64], pool: pd.DataFrame, delta: float,
             confidence: float) -> dict[str, Any]:
    members = pool["member"].to_numpy(dtype=bool)
    out: dict[str, Any] = {"pooled": _metrics(scores, members), "per_agency": {},
                           "groups": {}}
    for agency, idx in pool.groupby("agency").indices.items():
        rec = _metrics(scores[idx], members[idx])
        rec["one_run"] = audit_scores(scores[idx], members[idx], delta=delta,
                                      confidence=confidence).to_dict()
        out["per_agency"][str(agency)] = rec
    for group in GROUPS:
        if group not in pool.columns:
            continue
        key = pool[group].map({True: "rural", False: "urban"}) if group == "rural" else \
            pool[group].astype(str)
        out["groups"][group] = {str(v): _metrics(scores[idx], members[idx])
                                for v, idx in pool.groupby(key.to_numpy()).indices.items()}
    return out


def membership_inference(
    *,
    targets: Mapping[str, pd.DataFrame],
    reference: Mapping[str, pd.DataFrame],
    truth: pd.DataFrame,
    schema: Schema,
    config: TrainConfig,
    epsilon: float | None,
    delta: float,
    shadows: int,
    seed: int,
    confidence: float,
    say: Progress,
) -> dict[str, Any]:
    """Attack a federation at ``epsilon`` (None: the same recipe without noise or clipping)."""
    rng = np.random.default_rng(seed)
    private = epsilon is not None
    eps = 1.0 if epsilon is None else epsilon  # unused by the non-private recipe
    if not private:
        config = NONPRIVATE_CONTROL
    pool = pd.concat([f.assign(agency=a) for a, f in sorted(targets.items())], ignore_index=True)
    pool["member"] = rng.random(len(pool)) < 0.5
    added = [g for g in GROUPS if g in truth.columns and g not in pool.columns]
    pool = pool.merge(truth[["student_id", *added]], on="student_id", how="left",
                      validate="many_to_one")
    train = {a: f[f["member"]].drop(columns=["agency", "member", *added])
             .reset_index(drop=True) for a, f in pool.groupby("agency")}
    label = "non-private" if epsilon is None else f"epsilon {epsilon:g}"
    say(f"membership inference ({label}): target federation")
    target_w = federate(frames=train, schema=schema, config=config, epsilon=eps, delta=delta,
                        seed=seed, private=private)
    loss = record_losses(target_w, pool, schema, config)
    shadow_stats = []
    for k in range(shadows):
        say(f"membership inference ({label}): shadow federation {k + 1}/{shadows}")
        half = {a: f[rng.random(len(f)) < 0.5].reset_index(drop=True)
                for a, f in reference.items()}
        w = federate(frames=half, schema=schema, config=config, epsilon=eps, delta=delta,
                     seed=seed + 1 + k, private=private)
        shadow_stats.append(_logit_stat(record_losses(w, pool, schema, config)))
    attacks = {
        "loss": _figures(-loss, pool, delta, confidence),
        "lira_offline": _figures(
            lira_offline_scores(_logit_stat(loss), np.stack(shadow_stats)), pool, delta,
            confidence),
    }
    return {
        "epsilon": epsilon,
        "targets": len(pool),
        "members": int(pool["member"].sum()),
        "shadows": shadows,
        "recipe": "non-private control: " + json.dumps(
            {"hidden": list(config.hidden), "rounds": config.rounds,
             "epochs_per_round": config.plain_epochs, "optimizer": "adam"})
        if not private else "the nodes' DP-SGD recipe (train_local)",
        "releases_used": ["the final global model's outputs on each target record"],
        "attacks": attacks,
    }


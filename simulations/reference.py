"""The centralized non-private reference: one model on the pooled plaintext join.

What a province would get by pooling every agency's records in one place (the thing
fedid exists to avoid): the education tables concatenated, each student's evidence
taken from the exact plaintext join in the ground truth, the same network trained
without DP (:func:`fedid.model.train.train_centralized` with ``budget=None``) on the
same training rows the nodes use (each agency's fixed split of its labelled rows,
without its held-out share), then scored on every student against the true level.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulations.evaluation import confusion, identification_metrics

__all__ = ["centralized_reference", "pooled_inputs", "train_reference", "truth_evidence"]


def truth_evidence(truth: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """Each student's evidence-side indicators from the exact plaintext join in the truth."""
    evidence_cols = [i.name for i in schema.indicators
                     if schema.departments[i.department].side == "evidence"]
    evidence = truth[["student_id", *[c for c in evidence_cols if c in truth.columns]]].copy()
    for ind in schema.indicators:
        if ind.type == "category" and ind.name in evidence.columns:
            col = evidence[ind.name].astype(object)
            evidence[ind.name] = col.where(col.notna(), None)
    return evidence


def pooled_inputs(
    *, sim_file: Path, truth: pd.DataFrame, schema_path: Path
) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    """Pooled model inputs and a mask of the rows the nodes train on."""
    from clients.training import holdout_split
    from fedid.model.features import build_inputs
    from fedid.schema import load_schema
    from fedid.tables import load_agency_table

    schema = load_schema(schema_path)
    sim = json.loads(sim_file.read_text(encoding="utf-8"))
    evidence = truth_evidence(truth, schema)
    frames, masks = [], []
    for agency in sim["agencies"]:
        if agency["kind"] != "education":
            continue
        edu = load_agency_table(Path(agency["data"]), schema=schema, kind="education").frame
        inputs = build_inputs(edu, evidence, schema)
        train = np.zeros(len(inputs), dtype=bool)
        if "label_level" in inputs.columns:  # an unlabelled agency only gets scored
            idx = np.flatnonzero(inputs["label_level"].notna().to_numpy())
            train[idx[~holdout_split(len(idx), float(agency.get("holdout", 0.2)))]] = True
        frames.append(inputs)
        masks.append(train)
    return pd.concat(frames, ignore_index=True), np.concatenate(masks)


def train_reference(
    *, sim_file: Path, schema: Path, truth: pd.DataFrame, seed: int,
) -> tuple[Any, pd.DataFrame, np.ndarray[Any, Any]]:
    """The pooled non-private model, the pooled inputs and the training-row mask."""
    from fedid.model.baselines import train_centralized
    from fedid.model.train import TrainConfig
    from fedid.schema import load_schema

    inputs, train = pooled_inputs(sim_file=sim_file, truth=truth, schema_path=schema)
    model, _ = train_centralized(inputs=inputs[train].reset_index(drop=True),
                                 schema=load_schema(schema), config=TrainConfig(),
                                 budget=None, seed=seed)
    return model, inputs, train


def centralized_reference(
    *, sim_file: Path, schema: Path, truth: pd.DataFrame, levels: Sequence[str], seed: int,
    trained: tuple[Any, pd.DataFrame, np.ndarray[Any, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics of the pooled non-private model against the true levels.

    ``trained``: :func:`train_reference`'s result when the caller already has it.
    """
    from fedid.model.rules import apply_rules

    model, inputs, train = trained or train_reference(
        sim_file=sim_file, schema=schema, truth=truth, seed=seed)
    # The recommendation's level (rule layer, then the learned score), without the
    # per-student reasons, which the reference does not need.
    level = np.maximum(apply_rules(inputs, model.schema).levels(),
                       model.score(inputs).levels(model.threshold))
    names = np.asarray(levels, dtype=object)
    joined = truth[["student_id", "true_level", "applied"]].merge(
        pd.DataFrame({"student_id": inputs["student_id"], "pred": names[level]}),
        on="student_id")
    hidden = (joined["true_level"] != levels[0]) & ~joined["applied"].astype(bool)
    out: dict[str, Any] = identification_metrics(
        joined["true_level"].tolist(), joined["pred"].tolist(), levels=levels,
        hidden=hidden.tolist())
    out["confusion"] = confusion(joined["true_level"].tolist(), joined["pred"].tolist(), levels)
    out["train_rows"] = int(train.sum())
    return out

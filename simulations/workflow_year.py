"""The review-queue evaluation of a simulated year: each node's queue against the alternatives.

Rebuilds, for every education agency, the ranking its node computes
(:func:`fedid.review.queue.rank_students` on the node's own inputs with the year's final
federated model), the same ranking from the centralized non-private model, and the rule
layer's queue, then hands them to :func:`simulations.workflow.workflow_curve` with the truth.
The node itself writes only the first ``capacity`` entries; the evaluation needs the whole
ranking to draw the curve over capacities. :func:`evaluate_scores` is the same evaluation for
any set of scorers (the model benchmark uses it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.workflow import Cohort, orders_from_rankings, rule_order, workflow_curve

__all__ = ["Scorer", "agency_inputs", "evaluate_scores", "evaluate_year", "final_model"]

#: (agency, that agency's inputs) -> rows x (levels - 1): P(level > k)
Scorer = Callable[[str, pd.DataFrame], npt.NDArray[np.float64]]


def agency_inputs(sim_file: Path) -> dict[str, pd.DataFrame]:
    """Each education node's model inputs, as the node builds them (table + matched evidence)."""
    from clients.config import NodeSettings
    from clients.training import inputs_of

    sim = json.loads(sim_file.read_text(encoding="utf-8"))
    return {a["agency-id"]: inputs_of(NodeSettings.from_mapping(a))
            for a in sim["agencies"] if a["kind"] == "education"}


def final_model(out: Path, schema: Any) -> Any:
    """The year's final federated model (``out/coordinator/final_model.npz``)."""
    from fedid.model import HardshipModel, TrainConfig

    with np.load(out / "coordinator" / "final_model.npz") as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    net = HardshipModel(schema=schema, hidden=TrainConfig().hidden).build_net()
    weights = {n: np.asarray(a, dtype=np.float32)
               for n, a in zip(net.state_dict(), arrays, strict=True)}
    return HardshipModel(schema=schema, hidden=TrainConfig().hidden, weights=weights)


def evaluate_scores(
    *, inputs: Mapping[str, pd.DataFrame], truth: pd.DataFrame, schema: Any,
    scorers: Mapping[str, Scorer], seed: int = 0, **curve: Any,
) -> dict[str, Any]:
    """The workflow curve of one queue per scorer, plus the rule-layer and random queues."""
    from fedid.model import apply_rules, level_targets
    from fedid.review import rank_students

    frames, offsets, rule_levels, exclusion = [], {}, [], []
    rankings: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in scorers}
    start = 0
    for agency, frame in inputs.items():
        # an agency with no recorded recognition (only scored): every student unrecognised
        recorded = (level_targets(frame, schema) if "label_level" in frame
                    else np.zeros(len(frame), dtype=np.int64))
        applied = frame["applied"].fillna(False).astype(bool).to_numpy() \
            if "applied" in frame else None
        hits = apply_rules(frame, schema)
        for name, scorer in scorers.items():
            rankings[name][agency] = rank_students(
                scorer(agency, frame), recorded=recorded, applied=applied,
                rule_level=hits.levels())
        offsets[agency] = np.arange(start, start + len(frame))
        start += len(frame)
        frames.append(pd.DataFrame({"student_id": frame["student_id"].to_numpy(),
                                    "agency": agency, "recorded": recorded}))
        rule_levels.append(hits.levels())
        exclusion.append(hits.review)
    rows = pd.concat(frames, ignore_index=True)
    names = {n: i for i, n in enumerate(schema.levels.names)}
    group_cols = [c for c in ("region", "sex", "stage") if c in truth.columns]
    rural_col = ["rural"] if "rural" in truth.columns else []  # a user's truth may lack it
    t = rows[["student_id"]].merge(truth[["student_id", "true_level", *rural_col, *group_cols]],
                                   on="student_id", how="left")
    if t["true_level"].isna().any():
        raise ValueError(f"{int(t['true_level'].isna().sum())} students have no ground truth")
    cohort = Cohort(agency=rows["agency"].to_numpy(dtype=object),
                    recorded=rows["recorded"].to_numpy(dtype=np.int64),
                    truth=t["true_level"].astype(str).map(names).to_numpy(dtype=np.int64),
                    rural=t["rural"].astype(bool).to_numpy() if rural_col else None,
                    groups={c: t[c].astype(str).to_numpy(dtype=object) for c in group_cols})
    queues = {name: orders_from_rankings(r, offsets) for name, r in rankings.items()}
    queues["rules"] = rule_order(cohort, rule_level=np.concatenate(rule_levels),
                                 exclusion=np.concatenate(exclusion),
                                 rng=np.random.default_rng(seed))
    return workflow_curve(cohort, queues, seed=seed, **curve)


def evaluate_year(
    *, out: Path, schema_path: Path, truth: pd.DataFrame, central: Any | None,
    central_inputs: pd.DataFrame | None = None, seed: int = 0,
) -> dict[str, Any]:
    """The workflow curve for the year in ``out`` (``central``: the non-private model or None).

    ``central_inputs``: the pooled inputs the centralized model is scored on (its evidence is
    the exact plaintext join), keyed by ``student_id``; default: each node's own inputs.
    """
    from fedid.schema import load_schema

    schema = load_schema(schema_path)
    model = final_model(out, schema)
    scorers: dict[str, Scorer] = {
        "federated": lambda _a, frame: np.asarray(model.score(frame).p_greater)}
    if central is not None:
        pooled = central_inputs.set_index("student_id") if central_inputs is not None else None

        def central_score(_agency: str, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
            rows = frame if pooled is None else pooled.loc[frame["student_id"]].reset_index()
            return np.asarray(central.score(rows).p_greater)

        scorers["centralized"] = central_score
    return evaluate_scores(inputs=agency_inputs(out / "simulation.json"), truth=truth,
                           schema=schema, scorers=scorers, seed=seed)

"""The privacy reviewer's view of a simulated year: everything computed, nothing assumed.

Reads what only a simulation can put side by side: the ground truth, each node's
recommendations (``DIR/nodes/<agency>/recommendations.parquet``), each node's own
privacy ledger, and the coordinator's year record. Produces the summary behind
``summary.json``:

- ``privacy``: per agency, epsilon after every round recomputed from the node's
  persisted accountant, the delta, and the node's budget;
- ``identification``: federated DP model, self-report baseline (last recorded
  recognition, i.e. applicants only) and a centralized non-private reference trained
  on the pooled plaintext join, each against the true level; ``operating_points``: how
  close the federated model's P(hardship) and the generator's noiseless rubric come to
  the rate targets (a third of the baseline's rates) at their best threshold, a
  diagnostic (:mod:`simulations.frontier`);
- ``fairness``: missed and wrong-aid rates by rural/urban, region, sex, stage and
  the gaps in points;
- ``matching``: coverage and duplicate aid per education agency, from the
  coordinator's aggregates;
- ``training``: per-round metrics and exclusions as the coordinator recorded them;
- ``review_queue``: missed, wrong aid and level accuracy after simulated reviewers resolve
  each agency's review queue, against self-report, random, rule-layer and centralized
  queues, over capacities and reviewer accuracies (:mod:`simulations.workflow`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulations.evaluation import confusion, group_gaps, identification_metrics
from simulations.frontier import operating_point
from simulations.province.truth import noiseless_score

__all__ = ["privacy_per_agency", "summarise"]


def privacy_per_agency(sim_file: Path) -> dict[str, dict[str, Any]]:
    """Epsilon per round per training agency, recomputed from each node's accountant."""
    from fedid.model.train import LocalState

    sim = json.loads(sim_file.read_text(encoding="utf-8"))
    out: dict[str, dict[str, Any]] = {}
    for agency in sim["agencies"]:
        folder = Path(agency["out"])
        if not (folder / "local_state.bin").exists():
            continue
        state = LocalState.from_bytes((folder / "local_state.bin").read_bytes())
        raw = json.loads((folder / "privacy_ledger.json").read_text(encoding="utf-8"))
        by_round = sorted(raw.get("epsilon_after", {}).items(),
                          key=lambda kv: int(kv[0].rsplit("-", 1)[1]))
        spent = float(state.accountant.epsilon(state.budget.delta))
        out[agency["agency-id"]] = {
            "epsilon_by_round": [float(v) for _, v in by_round],
            "epsilon_spent": spent,
            "delta": float(state.budget.delta),
            "epsilon_budget": float(state.budget.epsilon),
            "accountant": state.accountant.kind,
            "steps": int(state.accountant.steps),
            "noise_multiplier": float(state.noise_multiplier or 0.0),
            "within_budget": spent <= float(state.budget.epsilon),
        }
    return out


def _recommendations(sim: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for agency in sim["agencies"]:
        path = Path(agency["out"]) / "recommendations.parquet"
        if agency["kind"] == "education" and path.exists():
            frames.append(pd.read_parquet(path).assign(agency=agency["agency-id"]))
    if not frames:
        return pd.DataFrame(columns=["student_id", "level"])
    return pd.concat(frames, ignore_index=True)


def _baseline(sim: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for agency in sim["agencies"]:
        if agency["kind"] != "education":
            continue
        path = Path(agency["data"])
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        frames.append(frame[["student_id", "label_level"]])
    return pd.concat(frames, ignore_index=True)


def summarise(*, cfg: Any, province: Path, schema: Path, year: dict[str, Any]) -> dict[str, Any]:
    """The whole summary (see the module docstring)."""
    from fedid.schema import load_schema

    levels = list(load_schema(schema).levels)
    sim_file = cfg.out / "simulation.json"
    sim = json.loads(sim_file.read_text(encoding="utf-8"))
    summary: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in _fields(cfg).items()},
        "agencies": year.get("agencies", {}),
        "privacy": {"per_agency": privacy_per_agency(sim_file),
                    "declared_to_coordinator": year.get("training", {}).get("declared_spend", {})},
        "training": year.get("training", {}),
        "matching": year.get("matching", {}),
        "coordinator_aggregates": year.get("identification", {}),
        "notes": _notes(year),
    }
    truth_path = province / "ground_truth" / "students.parquet"
    ident: dict[str, Any] = {"levels": levels}
    recs = _recommendations(sim)
    if truth_path.exists() and len(recs):
        truth = pd.read_parquet(truth_path)
        joined = truth.merge(recs[["student_id", "level"]], on="student_id", how="inner")
        joined = joined.merge(_baseline(sim).rename(columns={"label_level": "self_report"}),
                              on="student_id", how="left")
        joined["self_report"] = joined["self_report"].fillna(levels[0])
        hidden = (joined["true_level"] != levels[0]) & ~joined["applied"].astype(bool)
        fed: dict[str, Any] = identification_metrics(
            joined["true_level"].tolist(), joined["level"].tolist(), levels=levels,
            hidden=hidden.tolist())
        fed["confusion"] = confusion(joined["true_level"].tolist(), joined["level"].tolist(),
                                     levels)
        ident["federated"] = fed
        base: dict[str, Any] = identification_metrics(
            joined["true_level"].tolist(), joined["self_report"].tolist(), levels=levels,
            hidden=hidden.tolist())
        base["confusion"] = confusion(joined["true_level"].tolist(),
                                      joined["self_report"].tolist(), levels)
        ident["self_report_baseline"] = base
        ident["operating_points"] = _operating_points(truth, recs, base, levels)
        trained = None
        if cfg.reference:
            from simulations.reference import centralized_reference, train_reference

            trained = train_reference(sim_file=sim_file, schema=schema, truth=truth,
                                      seed=cfg.seed)
            ident["centralized_nonprivate"] = centralized_reference(
                sim_file=sim_file, schema=schema, truth=truth, levels=levels, seed=cfg.seed,
                trained=trained)
        from simulations.workflow_year import evaluate_year

        summary["review_queue"] = evaluate_year(
            out=cfg.out, schema_path=schema, truth=truth, seed=cfg.seed,
            central=trained[0] if trained else None,
            central_inputs=trained[1] if trained else None)
        summary["fairness"] = group_gaps(joined, pred_col="level", levels=levels)
        summary["fairness_baseline"] = group_gaps(joined, pred_col="self_report",
                                                  levels=levels)["gaps"]
        ident["students_scored"] = len(recs)
        ident["students_in_truth"] = len(truth)
        ident["recommended_per_level"] = {
            lv: int(np.sum(recs["level"] == lv)) for lv in levels}
    summary["identification"] = ident
    return summary


def _operating_points(
    truth: pd.DataFrame, recs: pd.DataFrame, base: dict[str, Any], levels: list[str]
) -> dict[str, Any]:
    if not {"p_hardship", "source"} <= set(recs.columns):
        return {}
    rows = truth.merge(recs[["student_id", "p_hardship", "source"]], on="student_id")
    hard = (rows["true_level"].astype(str) != levels[0]).to_numpy()
    recognised = (rows["source"] == "rule").to_numpy()
    targets = {"missed_target": float(base["missed_rate"]) / 3,
               "wrong_target": float(base["wrong_aid_rate"]) / 3}
    return {
        "targets": targets,
        "federated": operating_point(rows["p_hardship"], recognised, hard, **targets),
        "noiseless_rubric": operating_point(noiseless_score(rows), recognised, hard, **targets),
    }


def _fields(cfg: Any) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in getattr(cfg, "__slots__", ())}


def _notes(year: dict[str, Any]) -> list[str]:
    notes = [
        "Epsilon figures are recomputed from each node's persisted accountant history "
        "(record-level DP over the node's training rows).",
        "Every node release is in the node's ledger (releases.jsonl, `fedid ledger`): "
        "updates are DP-SGD and identification counts Gaussian-noised, both charged to the "
        "node's epsilon; FedAvg weights are a public constant "
        f"(weighting: {year.get('training', {}).get('weighting', '?')}); evaluation metrics "
        "stay on the nodes. Matching aggregates are suppressed under the min-cell rule, not "
        "noised (see THREAT_MODEL.md).",
        "The self-report baseline is each student's recorded recognition (label_level): "
        "only applicants can be recognised.",
    ]
    excluded = [(r["round"], a, why) for r in year.get("training", {}).get("rounds", [])
                for a, why in r.get("excluded", {}).items()]
    notes.extend(f"round {r}: excluded {a}: {why}" for r, a, why in excluded)
    lost = year.get("matching", {}).get("lost_departments", {})
    notes.extend(f"matching went on without {d} (its node did not reply): no evidence from it"
                 f" for {', '.join(homes)}" for d, homes in sorted(lost.items()))
    return notes

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
- ``node_evaluation``: each education node's held-out metrics after every round, read from
  the node's own ``evaluation.jsonl`` (they stay on the node: the coordinator receives only
  a constant; a simulation owns every node's folder, so it can read them afterwards), and
  their mean weighted by held-out rows;
- ``review_queue``: missed, wrong aid and level accuracy after simulated reviewers resolve
  each agency's review queue, against self-report, random, rule-layer and centralized
  queues, over capacities and reviewer accuracies (:mod:`simulations.workflow`);
- ``review_seconds``: wall seconds of the model metrics (with the centralized reference's
  training) and of the review-queue evaluation.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedid.errors import ConfigError
from simulations.evaluation import confusion, group_gaps, identification_metrics
from simulations.frontier import operating_point
from simulations.province.truth import noiseless_score

__all__ = ["node_evaluation", "one_torch_thread", "privacy_per_agency", "summarise",
           "truth_file"]

#: where the node-side round metrics come from (the report cites it under its chart)
NODE_EVALUATION_SOURCE = (
    "nodes/<agency>/evaluation.jsonl: each node's held-out rows against their recorded labels, "
    "kept on the node (the coordinator receives a constant only) and read here by the "
    "simulation, which owns every node's folder")


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


def node_evaluation(sim_file: Path, session: str | None = None) -> dict[str, Any]:
    """Per education node, its held-out metrics after every round (its ``evaluation.jsonl``),
    and per round their mean weighted by held-out rows (``{}`` when no node kept any)."""
    sim = json.loads(sim_file.read_text(encoding="utf-8"))
    per: dict[str, dict[int, dict[str, float]]] = {}
    for agency in sim["agencies"]:
        path = Path(agency["out"]) / "evaluation.jsonl"
        if agency["kind"] != "education" or not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if session is not None and entry.get("session") != session:
                continue
            if float(entry.get("num_examples", 0)) > 0:  # the last entry per round wins
                per.setdefault(agency["agency-id"], {})[int(entry["round"])] = {
                    k: float(entry[k]) for k in ("num_examples", "accuracy", "macro_f1")}
    if not per:
        return {}
    weighted = []
    for rnd in sorted({r for rounds in per.values() for r in rounds}):
        rows = [m[rnd] for m in per.values() if rnd in m]
        n = sum(m["num_examples"] for m in rows)
        weighted.append({"round": rnd, "nodes": len(rows), "num_examples": n, **{
            k: sum(m[k] * m["num_examples"] for m in rows) / n
            for k in ("accuracy", "macro_f1")}})
    return {"source": NODE_EVALUATION_SOURCE, "weighted": weighted,
            "per_agency": {a: [{"round": r, **m} for r, m in sorted(rounds.items())]
                           for a, rounds in sorted(per.items())}}


def _recommendations(sim: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for agency in sim["agencies"]:
        path = Path(agency["out"]) / "recommendations.parquet"
        if agency["kind"] == "education" and path.exists():
            frame = pd.read_parquet(path).assign(agency=agency["agency-id"])
            frames.append(frame.astype({"student_id": str}))
    if not frames:
        return pd.DataFrame(columns=["student_id", "level"])
    return pd.concat(frames, ignore_index=True)


def _baseline(sim: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for agency in sim["agencies"]:
        if agency["kind"] != "education":
            continue
        path = Path(agency["data"])
        frame = _read(path)
        if "label_level" not in frame.columns:  # an unlabelled agency: nobody recognised
            frame = frame.assign(label_level=pd.NA)
        frames.append(frame[["student_id", "label_level"]])
    return pd.concat(frames, ignore_index=True)


def _read(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
        path, dtype={"student_id": str}, encoding="utf-8-sig")
    return frame.astype({"student_id": str})


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyTorch on one intra-op thread inside the block (restored after).

    The evaluation trains and scores small networks (batches of 128 rows): a second thread
    buys nothing, and on a shared machine every operation waits for whichever of the two
    threads the scheduler left out. Measured on the default province under load average 21:
    the whole evaluation took 1,017 s wall and 131 CPU-s on two threads (the centralized
    reference 940 s of it); the reference alone 80 s wall and 7.3 CPU-s on one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def summarise(*, cfg: Any, province: Path, schema: Path, year: dict[str, Any]) -> dict[str, Any]:
    """The whole summary (see the module docstring), computed on one PyTorch thread."""
    with one_torch_thread():
        return _summarise(cfg=cfg, province=province, schema=schema, year=year)


def _summarise(*, cfg: Any, province: Path, schema: Path, year: dict[str, Any]
               ) -> dict[str, Any]:
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
        "node_evaluation": node_evaluation(sim_file, year.get("config", {}).get("session")),
        "matching": year.get("matching", {}),
        "coordinator_aggregates": year.get("identification", {}),
        "notes": _notes(year),
    }
    truth_path = truth_file(province)
    ident: dict[str, Any] = {"levels": levels}
    recs = _recommendations(sim)
    if truth_path is not None and len(recs):
        truth = _truth(_read(truth_path), sim)
        joined = truth.merge(recs[["student_id", "level"]], on="student_id", how="inner")
        joined = joined.merge(_baseline(sim).rename(columns={"label_level": "self_report"}),
                              on="student_id", how="left")
        joined["self_report"] = joined["self_report"].fillna(levels[0]).astype(str)
        t0 = time.perf_counter()
        found, trained = _identification(cfg, joined, truth, recs, sim_file, schema, levels)
        ident.update(found)
        from simulations.workflow_year import evaluate_year

        t1 = time.perf_counter()
        summary["review_queue"] = evaluate_year(
            out=cfg.out, schema_path=schema, truth=truth, seed=cfg.seed,
            central=trained[0] if trained else None,
            central_inputs=trained[1] if trained else None)
        summary["review_seconds"] = {"review_models": t1 - t0,
                                     "review_queue_eval": time.perf_counter() - t1}
        if set(joined.columns) >= _GROUP_COLUMNS:
            summary["fairness"] = group_gaps(joined, pred_col="level", levels=levels)
            summary["fairness_baseline"] = group_gaps(joined, pred_col="self_report",
                                                      levels=levels)["gaps"]
        else:
            summary["notes"].append(
                "Fairness by group not computed: the ground truth lacks the group columns "
                f"{', '.join(sorted(_GROUP_COLUMNS - set(joined.columns)))}.")
        ident["students_scored"] = len(recs)
        ident["students_in_truth"] = len(truth)
        ident["recommended_per_level"] = {
            lv: int(np.sum(recs["level"] == lv)) for lv in levels}
    summary["identification"] = ident
    return summary


_GROUP_COLUMNS = frozenset({"rural", "region", "sex", "stage"})


def truth_file(province: Path) -> Path | None:
    """``ground_truth/students.parquet`` or ``.csv`` under ``province``, if present."""
    for name in ("students.parquet", "students.csv"):
        if (province / "ground_truth" / name).exists():
            return province / "ground_truth" / name
    return None


def _truth(truth: pd.DataFrame, sim: dict[str, Any]) -> pd.DataFrame:
    """A user's ground truth needs only ``student_id`` and ``true_level``; ``applied`` comes
    from the truth, else the education tables, else every student counts as an applicant."""
    missing = {"student_id", "true_level"} - set(truth.columns)
    if missing:
        raise ConfigError(
            f"ground_truth/students.parquet needs columns student_id and true_level."
            f" Missing: {', '.join(sorted(missing))}.")
    truth = truth.assign(student_id=truth["student_id"].astype(str),
                         true_level=truth["true_level"].astype(str))
    if "applied" not in truth.columns:
        applied = _applied(sim)
        truth = truth.merge(applied, on="student_id", how="left") if len(applied) else truth
        truth["applied"] = truth.get("applied", pd.Series(True, index=truth.index))
        truth["applied"] = truth["applied"].fillna(True)
    if truth["applied"].dtype == object:
        truth["applied"] = truth["applied"].astype(str).str.lower().isin(["true", "1", "yes"])
    truth["applied"] = truth["applied"].astype(bool)
    return truth


def _identification(
    cfg: Any, joined: pd.DataFrame, truth: pd.DataFrame, recs: pd.DataFrame, sim_file: Path,
    schema: Path, levels: list[str],
) -> tuple[dict[str, Any], Any]:
    """Federated model, self-report baseline and the optional references against the truth;
    with the pooled non-private model, its inputs and training mask when it was trained."""
    ident: dict[str, Any] = {}
    trained = None
    hidden = ((joined["true_level"] != levels[0]) & ~joined["applied"].astype(bool)).tolist()
    for key, col in (("federated", "level"), ("self_report_baseline", "self_report")):
        block: dict[str, Any] = identification_metrics(
            joined["true_level"].tolist(), joined[col].tolist(), levels=levels, hidden=hidden)
        block["confusion"] = confusion(joined["true_level"].tolist(), joined[col].tolist(),
                                       levels)
        ident[key] = block
    ident["operating_points"] = _operating_points(truth, recs, ident["self_report_baseline"],
                                                  levels)
    if cfg.reference and _has_evidence_columns(truth, schema):
        from simulations.reference import centralized_reference, train_reference

        trained = train_reference(sim_file=sim_file, schema=schema, truth=truth, seed=cfg.seed)
        ident["centralized_nonprivate"] = centralized_reference(
            sim_file=sim_file, schema=schema, truth=truth, levels=levels, seed=cfg.seed,
            trained=trained)
    return ident, trained


def _has_evidence_columns(truth: pd.DataFrame, schema: Path) -> bool:
    """The pooled reference joins evidence from the truth: it needs every evidence column."""
    from fedid.schema import load_schema

    sch = load_schema(schema)
    wanted = {i.name for i in sch.indicators if sch.departments[i.department].side == "evidence"}
    return wanted <= set(truth.columns)


def _applied(sim: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for agency in sim["agencies"]:
        path = Path(agency["data"])
        if agency["kind"] != "education":
            continue
        frame = _read(path)
        if "applied" in frame.columns:
            frames.append(frame[["student_id", "applied"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _operating_points(
    truth: pd.DataFrame, recs: pd.DataFrame, base: dict[str, Any], levels: list[str]
) -> dict[str, Any]:
    """Diagnostic against a third of the self-report rates; {} when a rate is 0 (labels as
    good as the truth: no target to reach) or the recommendations carry no score."""
    if not {"p_hardship", "source"} <= set(recs.columns):
        return {}
    targets = {"missed_target": float(base["missed_rate"]) / 3,
               "wrong_target": float(base["wrong_aid_rate"]) / 3}
    if min(targets.values()) <= 0:
        return {}
    rows = truth.merge(recs[["student_id", "p_hardship", "source"]], on="student_id")
    hard = (rows["true_level"].astype(str) != levels[0]).to_numpy()
    recognised = (rows["source"] == "rule").to_numpy()
    out = {"targets": targets,
           "federated": operating_point(rows["p_hardship"], recognised, hard, **targets)}
    with contextlib.suppress(KeyError):  # the generator's rubric: a synthetic truth only
        out["noiseless_rubric"] = operating_point(noiseless_score(rows), recognised, hard,
                                                  **targets)
    return out


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

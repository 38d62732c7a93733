"""Real public data through fedid as a user would, against a plain Opacus + FedAvg peer.

``python -m simulations.bench.real_data [--datasets randhie,fair,synthetic]
[--seeds 10,11,12] [--epsilons 1,4,8,inf] [--accountant prv|rdp] [--peer-weighting
size|equal] [--out DIR]`` prints one JSON line.

Datasets: ``synthetic``, the synthetic province with perturbed scenario parameters
(:mod:`simulations.bench.real_data_synth`), and two bundled with statsmodels (offline):
``randhie`` (RAND health insurance experiment, 20,190 person-years; label: any doctor visit,
``mdvis > 0``) and ``fair`` (Fair's affairs survey, 6,366 women; label: any affair,
``affairs > 0``). Each statsmodels dataset is mapped through a custom
binary schema (:mod:`simulations.bench.real_data_sets`) whose ranges come from the datasets'
documentation, split per seed into a stratified 20 % test set and 8 education agencies with
strong label skew (Dirichlet(0.5) shares per class), and written in the ``--data`` layout
(``DIR/agencies/education/agency_k.csv``, ``DIR/schema.toml``; the test rows as an unlabelled
agency ``test.csv`` and their truth in ``DIR/ground_truth/students.parquet``), so the same
folder runs through ``fedid simulate --data DIR --no-matching``.

On every split, in the same command:

- ``fedid``: fedid's federated step in-process (the Flower transport is left out to fit the
  machine: each agency's :func:`fedid.model.train.train_local` on its node's training rows,
  the node's held-out share removed as the node does, the coordinator's
  :class:`server.strategy.FedAvg`), with the schema's decision threshold;
- ``peer``: :mod:`simulations.bench.opacus_peer` on the same training rows and the same
  feature encoding (the schema's declared ranges), FedAvg by row counts (``--peer-weighting
  equal``: every agency alike, as fedid's released constant weights);

each at the per-agency epsilons asked for (``inf``: non-private: fedid's rounds without noise
or clipping at the same recipe, the peer's loop without Opacus). Figures: test accuracy and
AUC of P(label >= 1), per seed, their mean and spread, and fedid minus peer. fedid's AUC is
of what a node recommends (a student its schema's rules recognise scores 1; only the
synthetic province's schema has rules), ``auc_model`` of the learned model alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from simulations.bench.opacus_peer import PeerConfig, peer_fedavg
from simulations.bench.real_data_sets import write_split

__all__ = ["compare", "fedid_federated", "main", "run_split"]

_DELTA = 1e-5
Agency = tuple[pd.DataFrame, pd.DataFrame]  # (training rows, held-out rows) of one node


def _auc(score: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score))


def _agencies(folder: Path, holdout: float) -> tuple[Any, list[Agency], pd.DataFrame]:
    from clients.training import holdout_split
    from fedid.model.features import build_inputs
    from fedid.schema import load_schema
    from fedid.tables import load_agency_table

    schema = load_schema(folder / "schema.toml")
    out: list[Agency] = []
    for path in sorted((folder / "agencies" / "education").glob("agency_*.csv")):
        frame = load_agency_table(path, schema=schema, kind="education").frame
        inputs = build_inputs(frame, None, schema)
        held = holdout_split(len(inputs), holdout)
        out.append((inputs[~held].reset_index(drop=True), inputs[held].reset_index(drop=True)))
    test_frame = load_agency_table(folder / "agencies" / "education" / "test.csv",
                                   schema=schema, kind="education").frame
    truth = pd.read_parquet(folder / "ground_truth" / "students.parquet")
    test = build_inputs(test_frame, None, schema).merge(
        truth[["student_id", "true_level"]], on="student_id")
    return schema, out, test


def fedid_federated(
    schema: Any, agencies: list[Agency], *, epsilon: float | None, rounds: int, seed: int,
    accountant: str = "prv", weighting: str = "constant",
) -> Any:
    """fedid's federated step in-process: train_local per node, the coordinator's FedAvg.

    ``weighting``: each node's released FedAvg weight, ``constant`` (1.0) or
    ``public-size`` (its charged noisy training size, the one that shapes its training)."""
    from clients.training import noisy_rows
    from fedid.model.baselines import train_local_plain
    from fedid.model.model import HardshipModel
    from fedid.model.train import TrainConfig, new_local_state, train_local
    from server.strategy import FedAvg, PrivacyDeclaration, TrainReply

    config = TrainConfig(rounds=rounds, accountant=accountant, recipe="rule")
    torch.manual_seed(seed)
    net = HardshipModel(schema=schema, hidden=config.hidden).build_net()
    names = list(net.state_dict())
    arrays = [v.detach().numpy().astype(np.float32) for v in net.state_dict().values()]
    states = [new_local_state(epsilon=epsilon or 1.0, delta=_DELTA, accountant=accountant)
              for _ in agencies]
    # shaped by a charged noisy size, as a node without public-size (non-private: the
    # same draw serves as the public-size weight only)
    states = [noisy_rows(st, len(train), seed=seed * 1000 + 900 + k)[1]
              for k, (st, (train, _)) in enumerate(zip(states, agencies, strict=True))]
    if epsilon is None:
        public = [st.public_rows for st in states]
        states = [replace(new_local_state(epsilon=1.0, delta=_DELTA, accountant=accountant),
                          public_rows=rows) for rows in public]
    fedavg = FedAvg(weighting="released")
    for r in range(rounds):
        replies = []
        for k, (train, _held) in enumerate(agencies):
            weights = dict(zip(names, arrays, strict=True))
            round_seed = seed * 1000 + r * 10 + k
            if epsilon is None:
                w = train_local_plain(inputs=train, schema=schema, weights=weights,
                                      config=config, seed=round_seed)
            else:
                result = train_local(
                    inputs=train, schema=schema,
                    config=replace(config, public_rows=states[k].public_rows),
                    state=replace(states[k], weights=weights), seed=round_seed)
                states[k] = result.state
                w = result.state.weights or {}
            replies.append(TrainReply(
                agency_id=f"agency_{k}", arrays=[w[n] for n in names],
                weight=(1.0 if weighting == "constant" else float(states[k].public_rows or 1)),
                privacy=PrivacyDeclaration(
                    epsilon_spent=states[k].epsilon_spent, delta=_DELTA,
                    epsilon_budget=states[k].budget.epsilon, delta_budget=_DELTA)))
        arrays = fedavg.aggregate(replies, arrays).arrays
    model = HardshipModel(schema=schema, hidden=config.hidden,
                          weights=dict(zip(names, arrays, strict=True)))
    spent = [s.epsilon_spent for s in states]
    sigma = [s.noise_multiplier or 0.0 for s in states]
    return model, spent, sigma


def _score_fedid(model: Any, test: pd.DataFrame) -> dict[str, float]:
    """What a node recommends (the rule layer, then the model): accuracy, AUC of its
    P(level >= 1) (1 for a student the schema's rules recognise); ``auc_model``: the learned
    model's P(level >= 1) alone, the like-for-like comparison with the peer."""
    rec = model.recommend(test)
    true = test["true_level"].astype(str).to_numpy()
    none = model.schema.levels.names[0]
    return {"accuracy": float(np.mean(rec["level"].astype(str).to_numpy() == true)),
            "auc": _auc(rec["p_hardship"].to_numpy(), true != none),
            "auc_model": _auc(model.score(test).p_hardship, true != none),
            "rule_recognised": float(np.mean(rec["source"].to_numpy() == "rule")),
            "predicted_positive": float(np.mean(rec["level_index"].to_numpy() > 0))}


def _peer(schema: Any, agencies: list[Agency], test: pd.DataFrame, *, epsilon: float | None,
          seed: int, accountant: str = "prv", weighting: str = "size") -> dict[str, float]:
    from fedid.model.features import encode, level_targets

    data = [(encode(train, schema), level_targets(train, schema)) for train, _ in agencies]
    config = PeerConfig(accountant=accountant, weighting=weighting)
    model, spent = peer_fedavg(data, n_levels=len(schema.levels), epsilon=epsilon,
                               delta=_DELTA, config=config, seed=seed)
    with torch.no_grad():
        prob = torch.softmax(model(torch.from_numpy(encode(test, schema))), dim=1).numpy()
    names = np.asarray(schema.levels.names)
    true = test["true_level"].astype(str).to_numpy()
    pred = names[prob.argmax(axis=1)]
    return {"accuracy": float(np.mean(pred == true)),
            "auc": _auc(1.0 - prob[:, 0], true != names[0]),
            "predicted_positive": float(np.mean(pred != names[0])),
            "epsilon_spent_max": max(spent)}


def run_split(folder: Path, *, epsilons: list[float | None], rounds: int, seed: int,
              holdout: float, accountant: str = "prv",
              peer_weighting: str = "size", fedid_weighting: str = "constant"
              ) -> dict[str, Any]:
    """Both systems at every epsilon on one written split."""
    schema, agencies, test = _agencies(folder, holdout)
    return compare(schema, agencies, test, epsilons=epsilons, rounds=rounds, seed=seed,
                   accountant=accountant, peer_weighting=peer_weighting,
                   fedid_weighting=fedid_weighting)


def compare(schema: Any, agencies: list[Agency], test: pd.DataFrame, *,
            epsilons: list[float | None], rounds: int, seed: int,
            accountant: str = "prv", peer_weighting: str = "size",
            fedid_weighting: str = "constant") -> dict[str, Any]:
    """fedid and the peer at every epsilon on the same agencies and test rows."""
    out: dict[str, Any] = {"agency_rows": [len(t) for t, _ in agencies],
                           "agency_positive_share": [
                               round(float((t["label_level"].astype(str) != "none").mean()), 3)
                               for t, _ in agencies],
                           "test_rows": len(test)}
    for eps in epsilons:
        key = "inf" if eps is None else f"{eps:g}"
        t0 = time.perf_counter()
        model, spent, sigma = fedid_federated(schema, agencies, epsilon=eps, rounds=rounds,
                                              seed=seed, accountant=accountant,
                                              weighting=fedid_weighting)
        fed = _score_fedid(model, test) | {"epsilon_spent_max": max(spent),
                                           "noise_multiplier_range": [min(sigma), max(sigma)],
                                           "seconds": time.perf_counter() - t0}
        t0 = time.perf_counter()
        peer = _peer(schema, agencies, test, epsilon=eps, seed=seed, accountant=accountant,
                     weighting=peer_weighting)
        peer["seconds"] = time.perf_counter() - t0
        out[key] = {"fedid": fed, "peer": peer}
        print(json.dumps({"seed": seed, "epsilon": key, "fedid": fed, "peer": peer},
                         default=float), file=sys.stderr, flush=True)  # partial results
    return out


def _summary(per_seed: dict[int, dict[str, Any]], epsilons: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in epsilons:
        row: dict[str, Any] = {}
        for system in ("fedid", "peer"):
            for metric in ("accuracy", "auc", "predicted_positive"):
                vals = [r[key][system][metric] for r in per_seed.values()]
                row[f"{system}_{metric}_mean"] = float(np.mean(vals))
                row[f"{system}_{metric}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0
        vals = [r[key]["fedid"]["auc_model"] for r in per_seed.values()]
        row["fedid_auc_model_mean"] = float(np.mean(vals))
        row["fedid_auc_model_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0
        # like for like: fedid's learned model (auc_model, no rule layer) against the peer's
        for metric, mine in (("accuracy", "accuracy"), ("auc", "auc_model")):
            diffs = [r[key]["fedid"][mine] - r[key]["peer"][metric] for r in per_seed.values()]
            row[f"{metric}_fedid_minus_peer"] = float(np.mean(diffs))
            row[f"{metric}_ratio_fedid_to_peer"] = (
                row[f"fedid_{mine}_mean"] / row[f"peer_{metric}_mean"])
        out[key] = row
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="randhie,fair")
    parser.add_argument("--seeds", default="10,11,12")
    parser.add_argument("--epsilons", default="1,4,8,inf")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--accountant", choices=("prv", "rdp"), default="prv",
                        help="both systems' accountant (rdp: faster, a looser bound)")
    parser.add_argument("--peer-weighting", choices=("size", "equal"), default="size",
                        help="the peer's FedAvg weights: row counts (default) or equal, as"
                             " fedid's nodes release")
    parser.add_argument("--fedid-weighting", choices=("constant", "public-size"),
                        default="constant",
                        help="fedid nodes' released FedAvg weight: the constant 1.0 or each"
                             " node's charged noisy training size")
    args = parser.parse_args(argv)
    eps_keys = args.epsilons.split(",")
    epsilons: list[float | None] = [None if e == "inf" else float(e) for e in eps_keys]
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict[str, Any] = {"bench": "real_data", "seeds": seeds, "rounds": args.rounds,
                              "accountant": args.accountant,
                              "peer_weighting": args.peer_weighting,
                              "fedid_weighting": args.fedid_weighting,
                              "delta": _DELTA, "holdout": args.holdout, "datasets": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for name in args.datasets.split(","):
            if name == "synthetic":
                from simulations.bench.real_data_synth import synthetic_agencies

                per_seed = {seed: compare(*synthetic_agencies(base / f"synthetic-{seed}",
                                                              seed=seed, holdout=args.holdout),
                                          epsilons=epsilons, rounds=args.rounds, seed=seed,
                                          accountant=args.accountant,
                                          peer_weighting=args.peer_weighting,
                                          fedid_weighting=args.fedid_weighting)
                            for seed in seeds}
                result["datasets"][name] = {"summary": _summary(per_seed, eps_keys),
                                            "per_seed": per_seed}
                continue
            per_seed = {}
            for seed in seeds:
                folder = base / f"{name}-{seed}"
                write_split(name, folder, seed=seed)
                per_seed[seed] = run_split(folder, epsilons=epsilons, rounds=args.rounds,
                                           seed=seed, holdout=args.holdout,
                                           accountant=args.accountant,
                                           peer_weighting=args.peer_weighting,
                                          fedid_weighting=args.fedid_weighting)
            result["datasets"][name] = {"summary": _summary(per_seed, eps_keys),
                                        "per_seed": per_seed}
    result["seconds"] = time.perf_counter() - t0
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__}
    print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()

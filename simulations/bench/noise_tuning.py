"""Distributed-noise mode: choose the rounds and the server step on a tuning province.

``python -m simulations.bench.noise_tuning --run DIR [--rounds 20] [--lr 0.8 ...]
[--momentum 0.9] [--repeats 1]`` prints one JSON line (``--lr`` unset: the rule
``16 / rounds``, :func:`server.noise_round.rule_learning_rate`). ``DIR`` is a finished
``fedid simulate`` run on a province that is NOT reported (its nodes' matched evidence
``DIR/nodes/<agency>/evidence.parquet`` and the ground truth are reused, so matching is not
repeated). For each (rounds, learning rate) it replays the distributed-noise year in this
process with the code the nodes and the coordinator run, minus the transport: every
training agency calibrates sigma for the rounds on its own budget (its matching aggregates
already charged, its identification release reserved, as a node does), the largest
requirement is agreed, each round sums every agency's
:func:`fedid.model.gradient_share.shared_step` release (the secure sum's result, without the
masks) and the coordinator takes :class:`server.noise_round.ServerMomentum`'s step; the
final model then scores every student, against the province's truth.

Each configuration's noise comes from the OS CSPRNG: ``--repeats`` draws per point.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clients import training
from clients.config import NodeSettings
from fedid.model.gradient_share import shared_noise_multiplier, shared_step
from fedid.model.model import HardshipModel
from fedid.model.train import TrainConfig, new_local_state
from privacy.dp import count_release_entry
from server.noise_round import ServerMomentum, rule_learning_rate
from simulations.evaluation import identification_metrics
from simulations.noise_mode import DEFAULT_ROUNDS
from simulations.review import truth_file

__all__ = ["main", "measure"]


def _nodes(run: Path) -> list[NodeSettings]:
    sim = json.loads((run / "simulation.json").read_text(encoding="utf-8"))
    out = []
    for entry in sim["agencies"]:
        if entry["kind"] != "education":
            continue
        s = NodeSettings.from_mapping(entry)
        if training.has_labels(s):
            out.append(s)
    return out


def _score(nodes: list[NodeSettings], arrays: list[Any], truth: pd.DataFrame) -> dict[str, float]:
    schema = training.schema_of(nodes[0])
    weights = dict(zip(training.weight_names(schema), arrays, strict=True))
    recs = []
    for s in nodes:
        model = HardshipModel(schema=schema, hidden=TrainConfig().hidden, weights=weights)
        rec = model.recommend(training.inputs_of(s))
        recs.append(rec[["student_id", "level"]].astype({"student_id": str}))
    joined = truth.merge(pd.concat(recs), on="student_id")
    m = identification_metrics(joined["true_level"].astype(str).tolist(),
                               joined["level"].astype(str).tolist(),
                               levels=list(schema.levels.names))
    return {k: round(m[k], 4) for k in ("macro_f1", "accuracy", "missed_rate", "wrong_aid_rate")}


def measure(run: Path, *, rounds: int, lr: float, momentum: float) -> dict[str, Any]:
    """One distributed-noise year replayed in process; its scores against the truth."""
    nodes = _nodes(run)
    schema = training.schema_of(nodes[0])
    parties = len(nodes)
    rows, states, configs, public = {}, {}, {}, {}
    for s in nodes:
        train_rows, _ = training.labelled_rows(s)
        rows[s.agency_id] = train_rows
        state = new_local_state(epsilon=s.epsilon, delta=s.delta)
        public[s.agency_id], state = training.public_rows(s, state, len(train_rows))
        configs[s.agency_id] = TrainConfig(rounds=rounds, public_rows=public[s.agency_id])
        # as on a node: the home's matching aggregates were charged before training
        states[s.agency_id] = replace(state, accountant=state.accountant.record(
            noise_multiplier=s.release_noise, sample_rate=1.0, steps=1))
    std = max(shared_noise_multiplier(state=states[s.agency_id], config=configs[s.agency_id],
                                      rows=public[s.agency_id],
                                      reserved=(count_release_entry(s.release_noise),))
              * configs[s.agency_id].max_grad_norm for s in nodes)
    arrays: list[Any] = training.initial_arrays(nodes[0], seed=0)
    names = training.weight_names(schema)
    step = ServerMomentum(learning_rate=lr, momentum=momentum)
    t0 = time.perf_counter()
    for _ in range(rounds):
        total = np.zeros(sum(a.size for a in arrays) + 1)
        for s in nodes:
            a = s.agency_id
            config = configs[a]
            weights = dict(zip(names, arrays, strict=True))
            done = shared_step(inputs=rows[a], schema=schema,
                               state=replace(states[a], weights=weights), config=config,
                               noise_multiplier=std / config.max_grad_norm, parties=parties)
            states[a] = replace(done.state, weights=None)
            total += np.concatenate([*(done.share.sums[n].ravel() for n in names),
                                     [done.share.expected_batch]])
        arrays = step.apply(arrays, total[:-1] / total[-1])
    seconds = time.perf_counter() - t0
    truth_path = truth_file(run / "province") or truth_file(run)
    if truth_path is None:
        raise SystemExit(f"no ground truth under {run}/province.")
    truth = pd.read_parquet(truth_path).astype({"student_id": str})
    eps = [st.accountant.epsilon(st.budget.delta) for st in states.values()]
    return {"rounds": rounds, "lr": lr, "momentum": momentum, "noise_std": round(std, 4),
            "epsilon_after_training": round(max(eps), 4), "seconds": round(seconds, 1),
            **_score(nodes, arrays, truth)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--rounds", type=int, nargs="+", default=[DEFAULT_ROUNDS])
    parser.add_argument("--lr", type=float, nargs="+", default=None)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as on a node (clients.training.train_round)
    points = [measure(args.run, rounds=r, lr=lr, momentum=args.momentum)
              for r in args.rounds for lr in (args.lr or [rule_learning_rate(r)])
              for _ in range(args.repeats)]
    print(json.dumps({"run": str(args.run), "points": points}))


if __name__ == "__main__":
    main()

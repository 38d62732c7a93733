"""One school year, run by the coordinator over a Flower Grid.

Phases (each timed):

1. nodes     wait for the configured minimum of nodes (FederationError on timeout),
             ask each who it is
2. matching  for every education-side agency, the private join with every
             departmental agency (:mod:`server.matching`), relayed as query messages
3. training  ``rounds`` rounds of weighted FedAvg over the labelled education nodes;
             replies validated (:mod:`server.strategy`); checkpoint after every round
             (:mod:`server.ledger`); federated evaluation on the nodes' held-out rows;
             with ``secure-aggregation`` on, the coordinator sees only the sum of the
             weighted updates (:mod:`server.secure_round`); with ``distributed-noise``
             also on, each round is one DP-FedSGD step whose noise the nodes add in
             shares under the sum (:mod:`server.noise_round`)
4. identify  each education node scores all its students with the final model and
             writes the recommendations on its own side; the coordinator receives
             aggregate counts only (:mod:`server.node_metrics`)

The coordinator writes ``coordinator/`` under its output folder: ``ledger.json``,
``checkpoint.npz``, ``final_model.npz``, ``year.json`` (aggregates, privacy spend per
agency as declared by the nodes, per-round metrics, phase times). Its settings are a
:class:`server.year_config.YearConfig`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.serverapp import Grid

from fedid.errors import FederationError
from fedid.records import ConfigValue, arrays_of, content, metrics_of
from privacy.atomic import atomic_file, atomic_write_bytes
from server import node_metrics
from server.ledger import Ledger, RoundRecord
from server.lifecycle import refuse_misclaims
from server.strategy import AggregationResult, FedAvg, PrivacyDeclaration, TrainReply
from server.transport import Messenger
from server.year_config import YearConfig

if TYPE_CHECKING:
    from server.noise_round import NoiseAgreement
    from server.secure_round import StepRule

__all__ = ["Progress", "YearConfig", "run_year"]

_log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]


def _noop(_event: str, _data: dict[str, Any]) -> None:
    return None


def run_year(grid: Grid, cfg: YearConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the four phases; return (and write) the coordinator's year record."""
    say = progress or _noop
    folder = cfg.out / "coordinator"
    folder.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    year: dict[str, Any] = {"config": {**asdict(cfg), "out": str(cfg.out)}}

    t0 = time.perf_counter()
    messenger = Messenger(grid=grid, timeout=cfg.timeout, bound=cfg.node_agencies)
    say("phase", {"name": "nodes"})
    node_ids = messenger.wait_for_nodes(cfg.min_nodes, cfg.wait_nodes,
                                        expected=cfg.expected_nodes)
    agencies = messenger.discover(node_ids)
    year["excluded_nodes"] = refuse_misclaims(grid, messenger.refused_claims, cfg.node_agencies,
                                              session=cfg.session)
    if len(agencies) < cfg.min_nodes:
        refused = "; ".join(
            f"node {n} claimed {claim!r}, its key is {cfg.node_agencies.get(n)!r}"
            for n, claim in sorted(messenger.refused_claims.items())
        )
        raise FederationError(
            f"only {len(agencies)} of the required {cfg.min_nodes} nodes answered."
            + (f" Refused (a node's --agency-id must be its key's name): {refused}."
               if refused else "")
        )
    year["agencies"] = {a: {"kind": i.kind, "department": i.department, "labelled": i.labelled}
                        for a, i in sorted(agencies.items())}
    phases["nodes"] = time.perf_counter() - t0

    if cfg.matching:
        from fedid.schema import load_schema
        from server.matching import coordinate_matching

        t0 = time.perf_counter()
        say("phase", {"name": "matching"})
        schema = load_schema(Path(cfg.schema) if cfg.schema else None)
        year["matching"] = coordinate_matching(messenger, schema=schema, session=cfg.session,
                                               progress=say, grouping=cfg.grouping)
        phases["matching"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("phase", {"name": "training", "rounds": cfg.rounds})
    final, training = _train(messenger, cfg, folder, say)
    year["training"] = training
    phases["training"] = time.perf_counter() - t0
    with atomic_file(folder / "final_model.npz") as tmp:
        np.savez(tmp, *final)

    t0 = time.perf_counter()
    say("phase", {"name": "identify"})
    year["identification"] = _identify(messenger, final, cfg)
    phases["identify"] = time.perf_counter() - t0

    year["phase_seconds"] = phases
    atomic_write_bytes(folder / "year.json", json.dumps(year, indent=1, default=str).encode())
    say("done", {"phases": phases})
    return year


def _education(messenger: Messenger, *, labelled: bool) -> list[str]:
    return sorted(
        a for a, i in messenger.agencies.items()
        if i.kind == "education" and (i.labelled or not labelled)
    )


def _init_arrays(messenger: Messenger, trainers: list[str], cfg: YearConfig) -> list[Any]:
    reply = messenger.one(
        "query.init", trainers[0], content(config={"seed": cfg.seed, "session": cfg.session})
    )
    arrays = arrays_of(reply)
    if not arrays:
        raise FederationError(f"{trainers[0]} returned no initial model.")
    return arrays


def _train(
    messenger: Messenger, cfg: YearConfig, folder: Path, say: Progress
) -> tuple[list[Any], dict[str, Any]]:
    trainers = _education(messenger, labelled=True)
    if not trainers:
        raise FederationError("no education node with labels is connected; nothing to train.")
    ledger = Ledger.open(folder, cfg.session)
    strategy = FedAvg(weighting=cfg.weighting, min_replies=cfg.min_train_replies)
    strategy.restore_spend(ledger.last_spend())
    arrays = ledger.load_arrays() if ledger.completed else _init_arrays(messenger, trainers, cfg)
    if ledger.completed:
        say("resume", {"round": ledger.completed})
    budgets: dict[str, dict[str, float]] = {}
    rejoins: list[dict[str, Any]] = []
    noise, step_rule = _distributed_noise(messenger, cfg, trainers)  # (None, None): off
    trainers = [a for a in trainers if noise is None or a in noise.required]
    for rnd in range(ledger.completed + 1, cfg.rounds + 1):
        t0 = time.perf_counter()
        rejoins += [{"round": rnd, "agency": a} for a in messenger.refresh()]
        conf: dict[str, ConfigValue] = {
            "session": cfg.session, "round": rnd, "rounds": cfg.rounds, "seed": cfg.seed,
            **{f"train-{k}": v for k, v in cfg.train.items()},
            **(noise.config() if noise is not None else {})}
        if cfg.secure_aggregation:
            from server.secure_round import secure_round

            secure = secure_round(messenger, strategy, trainers=trainers, conf=conf,
                                  arrays=arrays, apply=step_rule)
            budgets.update({a: {"epsilon": p.epsilon_budget, "delta": p.delta_budget}
                            for a, p in secure.declarations.items()})
            arrays = secure.result.arrays
            _finish_round(messenger, strategy, ledger, cfg, rnd, secure.result, arrays, t0, say)
            continue
        replies = messenger.exchange(
            "train", {a: content(config=conf, arrays=arrays) for a in trainers},
            group=str(rnd),
        )
        parsed: list[TrainReply] = []
        for agency in trainers:
            msg = replies.get(agency)
            if msg is None:
                parsed.append(TrainReply(agency, None, 0, None, error="no reply before timeout"))
                continue
            if msg.has_error():
                parsed.append(TrainReply(agency, None, 0, None,
                                         error=msg.error.reason or "unspecified error"))
                continue
            m = metrics_of(msg)
            refused = str(msg.content["config"].get("refused", ""))
            priv = None
            if "epsilon_spent" in m:
                priv = PrivacyDeclaration(
                    epsilon_spent=m["epsilon_spent"], delta=m.get("delta", float("nan")),
                    epsilon_budget=m.get("epsilon_budget", float("nan")),
                    delta_budget=m.get("delta_budget", float("nan")),
                )
                budgets[agency] = {"epsilon": priv.epsilon_budget, "delta": priv.delta_budget}
            parsed.append(TrainReply(agency, arrays_of(msg), m.get("weight", 0.0),
                                     priv, refused=refused))
        result = strategy.aggregate(parsed, arrays)
        arrays = result.arrays
        _finish_round(messenger, strategy, ledger, cfg, rnd, result, arrays, t0, say)
    return arrays, {
        "rounds": [r.to_json() for r in ledger.rounds],
        "declared_spend": ledger.last_spend(),
        "budgets": budgets,
        "weighting": cfg.weighting,
        "secure_aggregation": cfg.secure_aggregation,
        "rejoined": rejoins,
        **({"distributed_noise": noise.to_json()} if noise is not None else {}),
    }


def _distributed_noise(
    messenger: Messenger, cfg: YearConfig, trainers: list[str]
) -> tuple[NoiseAgreement | None, StepRule | None]:
    """With distributed noise on: the session's agreed noise and the server step."""
    if not cfg.distributed_noise:
        return None, None
    from server.noise_round import ServerMomentum, agree_noise, rule_learning_rate

    agreed = agree_noise(messenger, trainers=trainers, conf={
        "session": cfg.session, "rounds": cfg.rounds,
        **{f"train-{k}": v for k, v in cfg.train.items()}})
    lr = cfg.distributed_noise_learning_rate or rule_learning_rate(cfg.rounds)
    return agreed, ServerMomentum(learning_rate=lr,
                                  momentum=cfg.distributed_noise_momentum).apply


def _finish_round(
    messenger: Messenger, strategy: FedAvg, ledger: Ledger, cfg: YearConfig, rnd: int,
    result: AggregationResult, arrays: list[Any], t0: float, say: Progress,
) -> None:
    metrics = _evaluate(messenger, arrays, cfg, rnd)
    record = RoundRecord(
        round=rnd, used=result.used, excluded=result.excluded,
        spend={a: strategy.last_spend[a] for a in result.used},
        metrics=metrics, seconds=time.perf_counter() - t0,
    )
    ledger.record(record, arrays)
    say("round", {"round": rnd, "metrics": metrics, "excluded": result.excluded})


def _evaluate(
    messenger: Messenger, arrays: list[Any], cfg: YearConfig, rnd: int
) -> dict[str, float]:
    nodes = _education(messenger, labelled=True)
    conf: dict[str, ConfigValue] = {"session": cfg.session, "round": rnd}
    replies = messenger.exchange(
        "evaluate", {a: content(config=conf, arrays=arrays) for a in nodes}, group=str(rnd)
    )
    per_node = {a: metrics_of(m) for a, m in replies.items() if not m.has_error()}
    return node_metrics.weighted_metrics(per_node)


def _identify(messenger: Messenger, arrays: list[Any], cfg: YearConfig) -> dict[str, Any]:
    rejoined = messenger.refresh()
    nodes = _education(messenger, labelled=False)
    conf = {"session": cfg.session}
    replies = messenger.exchange(
        "query.identify", {a: content(config=conf, arrays=arrays) for a in nodes}
    )
    per_node = {a: metrics_of(m) for a, m in replies.items() if not m.has_error()}
    failed = sorted(set(nodes) - set(per_node))
    return {"per_agency": per_node, "total": node_metrics.sum_counts(per_node), "failed": failed,
            "rejoined": rejoined}

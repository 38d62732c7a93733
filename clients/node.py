"""What an agency node does for each Flower message (called by :mod:`clients.client_app`).

The node's settings (own table, schema, output folder, privacy budget) come from its
own node config (:mod:`clients.config`), never from the coordinator. Everything that
identifies a student stays here: the table, the matched evidence
(``<out>/evidence.parquet``), the recommendations (``<out>/recommendations.parquet``),
the evaluation metrics (``<out>/evaluation.jsonl``) and the privacy ledger. Replies carry
DP model updates, noised counts, the privacy declaration and protocol messages (blinded
points, ciphertexts) only; every reply passes the release gate (:mod:`clients.gate`)
against the release policy (:mod:`clients.release`). See THREAT_MODEL.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from numpy.typing import NDArray

from clients import masked_update, noise_share, training
from clients.agency_keys import load_agency_keys
from clients.config import NodeSettings, node_settings
from clients.count_release import noised_counts
from clients.privacy_state import NodePrivacyLedger, arrays_digest
from fedid.errors import BudgetExceededError, FederationError, ProtocolError
from fedid.records import arrays_of, config_float, config_int, config_str, content
from privacy.identity import Roster
from privacy.secure_sum import PublicKeyList

__all__ = ["FEDAVG_WEIGHT", "evaluate", "identify", "info", "init", "match", "noise",
           "secagg_keys", "settings_of", "train"]

_log = logging.getLogger(__name__)
#: every node's FedAvg weight: a public constant, so no update reveals the agency's size
FEDAVG_WEIGHT = 1.0


def settings_of(context: Context) -> NodeSettings:
    return _settings(tuple(sorted((k, str(v)) for k, v in context.node_config.items())))


@lru_cache(maxsize=64)
def _settings(items: tuple[tuple[str, str], ...]) -> NodeSettings:
    return node_settings(dict(items))


def info(msg: Message, context: Context) -> RecordDict:
    """Who this node is; whether it holds recognition labels to train on."""
    s = settings_of(context)
    labelled = s.kind == "education" and training.has_labels(s)
    rd = RecordDict()
    rd["info"] = ConfigRecord({
        "agency-id": s.agency_id, "kind": s.kind, "department": s.department,
        "labelled": labelled,
    })
    return rd


def init(msg: Message, context: Context) -> RecordDict:
    """The initial global model: public, from the public schema and the message's seed.

    No record is read, so the seed may come from the coordinator: these arrays are the
    same for every node and reveal nothing about any table. (DP noise never uses it.)
    """
    s = settings_of(context)
    seed = config_int(msg, "seed", 0)
    return content(arrays=training.initial_arrays(s, seed=seed))


def _round_seed(s: NodeSettings, rnd: int) -> int | None:
    """None in production: the OS CSPRNG. Only the node's own ``test-seed`` sets one."""
    return None if s.test_seed is None else s.test_seed * 1000 + rnd


def train(msg: Message, context: Context) -> RecordDict:
    """One budget-guarded round of local DP-SGD, composed on the node's own ledger (in
    distributed-noise mode, one share of a DP-FedSGD round: clients.noise_share)."""
    s = settings_of(context)
    if s.distributed_noise or noise_share.requested(msg):
        return noise_share.train_share(msg, context, s)
    cfg = msg.content["config"]
    session, rnd = config_str(msg, "session"), config_int(msg, "round")
    proposed = {k[len("train-"):]: config_float(msg, k, 0.0) for k in cfg
                if k.startswith("train-")}
    if "rounds" in cfg:
        proposed["rounds"] = float(config_int(msg, "rounds"))
    values = s.training.resolve(proposed)  # ConfigError: outside the node's ranges
    if s.require_secure_aggregation and not masked_update.enabled(msg):
        raise ProtocolError("this node trains only under secure aggregation (node config "
                            "require-secure-aggregation); a plain train request is refused.")
    # secure aggregation: the peers' masking keys are checked before anything is trained
    keys = masked_update.checked_keys(msg, context, agency_id=s.agency_id, roster=_roster(s)) \
        if masked_update.enabled(msg) else None
    ledger = NodePrivacyLedger.load(context, s.out)
    key = ledger.round_key(session, rnd)
    mode = "masked" if keys is not None else "plain"
    global_arrays = arrays_of(msg)
    if global_arrays is None:
        raise FederationError("train message carries no arrays.")
    digest = arrays_digest(global_arrays)
    stored = ledger.stored_reply(key)
    if stored is not None:
        if ledger.given.get(key, digest) != digest:
            raise ProtocolError(f"round {rnd} was trained from other arrays; refused.")
        if ledger.released_as.get(key) == "masked" and mode == "plain":
            raise ProtocolError(f"round {rnd} left this node masked; a plain copy of its"
                                " update is refused.")
        _log.info("%s: round %s already trained; replaying the stored reply", s.agency_id, rnd)
        arrays, metrics = stored
        ledger.save(context)
        return _train_reply(msg, context, s, arrays, metrics, keys=keys)
    previous = ledger.evaluated.get(ledger.round_key(session, rnd - 1))
    if previous is not None and previous != digest:
        raise ProtocolError(
            f"round {rnd} must start from the aggregate this node evaluated after round"
            f" {rnd - 1}; the arrays differ. Refused.")
    try:
        _rows, state = training.charged_public_rows(s, ledger, context)
        result = training.train_round(s, arrays=global_arrays, state=state, values=values,
                                      recipe=s.training.recipe(proposed),
                                      seed=_round_seed(s, rnd))
    except BudgetExceededError as exc:
        _log.warning("%s refused round %s: %s", s.agency_id, rnd, exc)
        return _train_reply(msg, context, s, None, _privacy_metrics(s, ledger.epsilon_total),
                            keys=keys, refused="budget")
    metrics = _privacy_metrics(s, result.epsilon) | {"weight": FEDAVG_WEIGHT}
    new_state = result.state.to_bytes()
    ledger.record_round(key=key, arrays=result.arrays, metrics=metrics, state=new_state,
                        epsilon=result.epsilon)
    ledger.charge(state=new_state, epsilon_total=result.epsilon, delta=s.delta)
    ledger.given[key] = digest
    ledger.released_as[key] = mode
    ledger.save(context)
    return _train_reply(msg, context, s, result.arrays, metrics, keys=keys)


def _train_reply(
    msg: Message, context: Context, s: NodeSettings, arrays: list[NDArray[np.float32]] | None,
    metrics: dict[str, float], *, keys: PublicKeyList | None, refused: str = "",
) -> RecordDict:
    """The plain reply, or with secure aggregation on (``keys``: the checked key list), a
    masked vector (clients.masked_update)."""
    if keys is not None:
        global_arrays = arrays_of(msg)
        if global_arrays is None:
            raise FederationError("train message carries no arrays.")
        return masked_update.masked_reply(msg, context, agency_id=s.agency_id, keys=keys,
                                          global_arrays=global_arrays, local_arrays=arrays,
                                          metrics=metrics, refused=refused)
    if arrays is None:
        return content(config={"refused": refused}, metrics=metrics)
    return content(arrays=arrays, metrics=metrics)


def _roster(s: NodeSettings) -> Roster | None:
    """The roster masking keys are verified against; None: the node has none."""
    return None if s.roster is None else load_agency_keys(s, purpose="secure aggregation")[1]


def secagg_keys(msg: Message, context: Context) -> RecordDict:
    """Secure aggregation step 1: a fresh public key for this round, signed when the node
    has a roster (clients.masked_update)."""
    s = settings_of(context)
    keys = None if s.roster is None else load_agency_keys(s, purpose="secure aggregation")
    return masked_update.keys_reply(msg, context, agency_id=s.agency_id, keys=keys)


def noise(msg: Message, context: Context) -> RecordDict:
    """Distributed noise, once per session: the sum's noise this node requires for its
    budget (clients.noise_share)."""
    return noise_share.required_noise(msg, context, settings_of(context))


def _privacy_metrics(s: NodeSettings, epsilon: float) -> dict[str, float]:
    return {"epsilon_spent": float(epsilon), "delta": s.delta,
            "epsilon_budget": s.epsilon, "delta_budget": s.delta}


def evaluate(msg: Message, context: Context) -> RecordDict:
    """Metrics of the round's aggregate on the held-out rows, kept on this node.

    Answered only for a round this node trained in, for one aggregate per round (the one
    the next round must start from). The metrics go to
    ``<out>/evaluation.jsonl``; the reply says only that they were kept.
    """
    s = settings_of(context)
    arrays = arrays_of(msg)
    if arrays is None:
        raise FederationError("evaluate message carries no arrays.")
    session, rnd = config_str(msg, "session"), config_int(msg, "round")
    ledger = NodePrivacyLedger.load(context, s.out)
    key = ledger.round_key(session, rnd)
    digest = arrays_digest(arrays)
    if rnd not in _trained_rounds(ledger, session):
        raise ProtocolError(f"evaluate answers only for a round this node trained in"
                            f" (asked for round {rnd}).")
    if ledger.evaluated.get(key, digest) != digest:
        raise ProtocolError(f"round {rnd}'s aggregate was already evaluated; other arrays"
                            " are refused.")
    if key not in ledger.evaluated:
        metrics = training.evaluate(s, arrays)
        _append_local(s.out / "evaluation.jsonl",
                      {"session": session, "round": rnd, "digest": digest, **metrics})
        ledger.evaluated[key] = digest
        ledger.save(context)
    return content(metrics={"kept_on_node": 1.0})


def _append_local(path: Path, entry: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def identify(msg: Message, context: Context) -> RecordDict:
    """Score all students, write recommendations locally; reply with noised counts only.

    Once per session, and for a node that trained in the session only on the aggregate it
    evaluated after its last round. The counts get Gaussian noise charged to the node's
    accountant (:mod:`privacy.dp.gaussian_release`); noised cells below the node's min-cell are
    suppressed (-1). A retry with the same arrays gets the stored counts, charged nothing.
    """
    s = settings_of(context)
    arrays = arrays_of(msg)
    if arrays is None:
        raise FederationError("identify message carries no arrays.")
    session = config_str(msg, "session")
    ledger = NodePrivacyLedger.load(context, s.out)
    ledger.round_key(session, 0)  # checks the session name
    digest = arrays_digest(arrays)
    done = ledger.identified.get(session)
    if done is not None:
        if done["digest"] != digest:
            raise ProtocolError("identification was already answered in this session; "
                                "other arrays are refused.")
        return content(metrics={k: float(v) for k, v in done["counts"].items()})
    if _trained_rounds(ledger, session):
        evaluated = _rounds(ledger.evaluated, session)
        final = ledger.evaluated.get(ledger.round_key(session, evaluated[-1])) if evaluated \
            else None
        if final != digest:
            raise ProtocolError("identify answers only the last aggregate this node evaluated"
                                " in the session; the arrays differ.")
    exact = training.identify(s, arrays)
    released = noised_counts(s, ledger, exact)
    ledger.identified[session] = {"digest": digest, "counts": released}
    ledger.save(context)
    return content(metrics=released)


def _rounds(keys: Mapping[str, object], session: str) -> list[int]:
    prefix = f"{session}-"
    return sorted(int(k[len(prefix):]) for k in keys
                  if k.startswith(prefix) and k[len(prefix):].isdigit())


def _trained_rounds(ledger: NodePrivacyLedger, session: str) -> list[int]:
    return _rounds(ledger.epsilon_after, session)


def match(msg: Message, context: Context) -> RecordDict:
    """One step of the matching protocol, dispatched on ``config.step``."""
    from clients.matching import handle

    return handle(settings_of(context), msg, context)


"""What an agency node does for each Flower message (called by :mod:`clients.client_app`).

The node's settings (own table, schema, output folder, privacy budget) come from its
own node config (:mod:`clients.config`), never from the coordinator. Everything that
identifies a student stays here: the table, the matched evidence
(``<out>/evidence.parquet``), the recommendations (``<out>/recommendations.parquet``)
and the privacy ledger. Replies carry model arrays, counts, metrics, privacy spend and
protocol messages (blinded points, ciphertexts) only.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from numpy.typing import NDArray

from clients import masked_update, training
from clients.config import NodeSettings, node_settings
from clients.privacy_state import NodePrivacyLedger
from fedid.errors import BudgetExceededError, FederationError
from fedid.model.train import LocalState
from fedid.records import arrays_of, config_float, config_int, config_str, content

__all__ = ["evaluate", "identify", "info", "init", "match", "secagg_keys", "settings_of",
           "train"]

_log = logging.getLogger(__name__)


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
    """The initial global model (built from the public schema and a seed, no data)."""
    s = settings_of(context)
    seed = config_int(msg, "seed", 0)
    return content(arrays=training.initial_arrays(s, seed=seed))


def train(msg: Message, context: Context) -> RecordDict:
    """One budget-guarded round of local DP-SGD, composed on the node's own ledger."""
    s = settings_of(context)
    cfg = msg.content["config"]
    session, rnd = config_str(msg, "session"), config_int(msg, "round")
    ledger = NodePrivacyLedger.load(context, s.out)
    key = ledger.round_key(session, rnd)
    stored = ledger.stored_reply(key)
    if stored is not None:
        _log.info("%s: round %s already trained; replaying the stored reply", s.agency_id, rnd)
        arrays, metrics = stored
        ledger.save(context)
        return _train_reply(msg, context, s, arrays, metrics)
    global_arrays = arrays_of(msg)
    if global_arrays is None:
        raise FederationError("train message carries no arrays.")
    params = {k[len("train-"):]: config_float(msg, k, 0.0) for k in cfg
              if k.startswith("train-")}
    state = (LocalState.from_bytes(ledger.state) if ledger.state is not None
             else training.new_state(s))
    try:
        result = training.train_round(
            s, arrays=global_arrays, state=state, rounds=config_int(msg, "rounds"),
            seed=config_int(msg, "seed", 0) * 1000 + rnd, params=params,
        )
    except BudgetExceededError as exc:
        _log.warning("%s refused round %s: %s", s.agency_id, rnd, exc)
        return _train_reply(msg, context, s, None,
                            _privacy_metrics(s, state.epsilon_spent) | {"num_examples": 0},
                            refused=str(exc))
    metrics = _privacy_metrics(s, result.epsilon) | {"num_examples": result.num_examples}
    ledger.record_round(key=key, arrays=result.arrays, metrics=metrics,
                        state=result.state.to_bytes(), epsilon=result.epsilon)
    ledger.save(context)
    return _train_reply(msg, context, s, result.arrays, metrics)


def _train_reply(
    msg: Message, context: Context, s: NodeSettings, arrays: list[NDArray[np.float32]] | None,
    metrics: dict[str, float], *, refused: str = "",
) -> RecordDict:
    """The plain reply, or with secure aggregation on, a masked vector (clients.masked_update)."""
    if masked_update.enabled(msg):
        global_arrays = arrays_of(msg)
        if global_arrays is None:
            raise FederationError("train message carries no arrays.")
        return masked_update.masked_reply(msg, context, agency_id=s.agency_id,
                                       global_arrays=global_arrays, local_arrays=arrays,
                                       metrics=metrics, refused=refused)
    if arrays is None:
        return content(config={"refused": refused}, metrics=metrics)
    return content(arrays=arrays, metrics=metrics)


def secagg_keys(msg: Message, context: Context) -> RecordDict:
    """Secure aggregation step 1: a fresh public key for this round (clients.masked_update)."""
    return masked_update.keys_reply(msg, context, agency_id=settings_of(context).agency_id)


def _privacy_metrics(s: NodeSettings, epsilon: float) -> dict[str, float]:
    return {"epsilon_spent": float(epsilon), "delta": s.delta,
            "epsilon_budget": s.epsilon, "delta_budget": s.delta}


def evaluate(msg: Message, context: Context) -> RecordDict:
    """Metrics of the global arrays on this node's held-out rows."""
    s = settings_of(context)
    arrays = arrays_of(msg)
    if arrays is None:
        raise FederationError("evaluate message carries no arrays.")
    return content(metrics=training.evaluate(s, arrays))


def identify(msg: Message, context: Context) -> RecordDict:
    """Score all students, write recommendations locally, reply with counts only."""
    s = settings_of(context)
    arrays = arrays_of(msg)
    if arrays is None:
        raise FederationError("identify message carries no arrays.")
    counts = training.identify(s, arrays)
    return content(metrics=counts)


def match(msg: Message, context: Context) -> RecordDict:
    """One step of the matching protocol, dispatched on ``config.step``."""
    from clients.matching import handle

    return handle(settings_of(context), msg, context)


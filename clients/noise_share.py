"""The node in distributed-noise mode: one DP-FedSGD share per round under the secure sum.

On when the node's own config says ``distributed-noise = true`` (with
``distributed-noise-parties = K``) AND the coordinator's messages ask for it; any other
combination is refused before anything is read or charged.

Agreeing on the noise. Every agency's share must be a share of ONE agreed noise: with
shares of different sizes the sum's noise could be below what one agency counted on. So,
once per session, ``query.noise`` (config: ``session``, ``rounds`` and any ``train-*``
proposal) asks each node for the noise it requires (:func:`required_noise`): the standard
deviation ``tau_i = sigma_i C`` of the SUM, per coordinate, that meets its own budget over
the planned rounds (sigma_i calibrated for ``rounds`` shared rounds at its sample rate,
composed with its history and its planned identification release; C its clipping bound).
The coordinator announces ``tau = max_i tau_i`` in every train message
(``distributed-noise-std``); a node refuses a ``tau`` below its own. The session's plan
(rounds, batch size, public size, hence the sample rate) is fixed when it is first asked
(``query.noise`` or the first round) and recorded in the node's ledger.

Per round (session, round, secure-aggregation attempt), :func:`train_share`:

1. checks, and refuses (fails closed) otherwise:

   - both sides ask for the mode (ConfigError, code 1002), and the announced ``tau`` is at
     least the node's own (ConfigError, 1002);
   - the message asks for secure aggregation: a share sent in clear would carry 1/K of the
     noise (ProtocolError, 1004);
   - the key list, which names the participants whose masked vectors make the sum, passes
     the secure sum's key check (every peer's masking key signed by its roster identity for
     this instance, :func:`clients.masked_update.checked_keys`; CryptoError, 1005; the mode
     needs a roster) and holds this node and at least K agencies in all (ProtocolError,
     1004): with fewer, the sum carries less noise than the node's accounting assumes;
   - a round the node already released is replayed only to the same participants: a
     coordinator that claimed a drop-out to rerun the round with fewer agencies could
     subtract the two sums and isolate this node's share (ProtocolError, 1004);
   - the round starts from the aggregate the node evaluated after the previous round;
2. computes its share (:func:`fedid.model.gradient_share.shared_step`) on its training rows,
   shaped by its public size (:func:`clients.training.public_rows`): noise
   ``N(0, tau^2 / K)``, and charges the TRUSTED entry ``(tau / C, q, 1)`` to its one
   accountant; over budget it refuses the round (code ``budget``) but still sends a
   noise-only share (no record read, no cost), so the sum keeps the noise the other
   agencies counted on;
3. records the release (replayed, never recomputed, on a retry), the participants and both
   epsilons in its privacy ledger (``<out>/privacy_ledger.json``, ``distributed_noise``:
   :class:`privacy.dp.SharedNoiseSpend`, kept current by every later charge);
4. replies ONE masked vector ``[noisy gradient sums flattened ..., expected batch]``
   (:func:`clients.masked_update.mask_vector`) with its declaration in clear: the trusted
   epsilon it charged (``epsilon_spent``), ``epsilon_fallback``, delta and budget.

Trust statement (THREAT_MODEL.md): the trusted epsilon holds against the coordinator only
while secure aggregation holds (masking keys not substituted, the coordinator colluding
with no agency) and at least K agencies, this one included, add their share of the agreed
noise and keep it secret. Otherwise only the fallback epsilon (multiplier
``tau / (C sqrt(K))``) holds.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from numpy.typing import NDArray

from clients import masked_update, training
from clients.agency_keys import load_agency_keys
from clients.config import NodeSettings
from clients.privacy_state import NodePrivacyLedger, arrays_digest
from fedid.errors import BudgetExceededError, ConfigError, FederationError, ProtocolError
from fedid.model.gradient_share import noise_only_share, shared_noise_multiplier, shared_step
from fedid.model.train import LocalState, TrainConfig
from fedid.records import arrays_of, config_flag, config_float, config_int, config_str, content
from privacy.dp import count_release_entry
from privacy.secure_sum import PublicKeyList

__all__ = ["requested", "required_noise", "train_share"]

_log = logging.getLogger(__name__)
_STD_KEY = "distributed-noise-std"


def requested(msg: Message) -> bool:
    """Whether the coordinator's train message asks for distributed noise."""
    return config_flag(msg, "distributed-noise")


def _opted_in(s: NodeSettings) -> int:
    if not s.distributed_noise or s.distributed_noise_parties is None:
        raise ConfigError("the coordinator asked for distributed noise; this node did not opt"
                          " in (node config distributed-noise). Refused.")
    return s.distributed_noise_parties


def _values(msg: Message, s: NodeSettings) -> dict[str, float]:
    """The node's training settings with the coordinator's proposals where its ranges allow
    (ConfigError otherwise), as for a local round."""
    cfg = msg.content["config"]
    proposed = {k[len("train-"):]: config_float(msg, k, 0.0) for k in cfg
                if k.startswith("train-")}
    if "rounds" in cfg:
        proposed["rounds"] = float(config_int(msg, "rounds"))
    return s.training.resolve(proposed)


def _plan(s: NodeSettings, ledger: NodePrivacyLedger, context: Context, session: str,
          values: dict[str, float]) -> dict[str, Any]:
    """This session's requirement, calibrated once (on the first ``query.noise`` or round)."""
    sessions: dict[str, Any] = ledger.distributed_noise.setdefault("sessions", {})
    if session not in sessions:
        # the public size: declared, or the row count noised once, charged and saved here
        rows, state = training.charged_public_rows(s, ledger, context)
        config = TrainConfig(rounds=int(values["rounds"]), batch_size=int(values["batch_size"]),
                             public_rows=rows)
        sigma = shared_noise_multiplier(state=state, config=config, rows=rows,
                                        reserved=(count_release_entry(s.release_noise),))
        sessions[session] = {"noise_std": sigma * config.max_grad_norm,
                             "noise_multiplier": sigma, "rounds": config.rounds,
                             "batch_size": config.batch_size, "public_rows": rows,
                             "parties": s.distributed_noise_parties}
    plan: dict[str, Any] = sessions[session]
    return plan


def required_noise(msg: Message, context: Context, s: NodeSettings) -> RecordDict:
    """``query.noise``: the standard deviation of the sum's noise this node requires for the
    session (the same answer to every repeat)."""
    _opted_in(s)
    session = config_str(msg, "session")
    ledger = NodePrivacyLedger.load(context, s.out)
    ledger.round_key(session, 0)  # checks the session name
    plan = _plan(s, ledger, context, session, _values(msg, s))
    ledger.save(context)
    return content(metrics={"noise_std": float(plan["noise_std"])})


def _key_list(msg: Message, context: Context, s: NodeSettings, parties: int) -> PublicKeyList:
    """The coordinator's key list, every peer's key checked against the roster
    (:func:`clients.masked_update.checked_keys`): the participants of this round's sum, at
    least K of them."""
    roster = load_agency_keys(s, purpose="distributed noise")[1]
    keys = masked_update.checked_keys(msg, context, agency_id=s.agency_id, roster=roster)
    if s.agency_id not in keys.parties or len(keys.parties) < parties:
        raise ProtocolError(
            f"distributed noise: the sum must have at least {parties} participants, this "
            f"node among them (its distributed-noise-parties). The coordinator announced "
            f"{len(keys.parties)}. Refused.")
    return keys


def _checked(msg: Message, context: Context,
             s: NodeSettings) -> tuple[PublicKeyList, int, float]:
    parties = _opted_in(s)
    if not requested(msg):
        raise ConfigError("this node trains only with distributed noise (node config "
                          "distributed-noise = true); the round does not ask for it. Refused.")
    if not masked_update.enabled(msg):
        raise ProtocolError("distributed noise needs secure aggregation: a share in clear "
                            "carries 1/K of the noise. Refused.")
    std = config_float(msg, _STD_KEY, 0.0)
    if not (np.isfinite(std) and std > 0):
        raise ProtocolError(f"a distributed-noise round must announce {_STD_KEY} > 0. "
                            f"Got {std}.")
    return _key_list(msg, context, s, parties), parties, std


def _add_shared(record: dict[str, Any], sigma: float, rate: float, parties: int) -> None:
    shared: list[list[float]] = record.setdefault("shared", [])
    for entry in shared:
        if entry[0] == sigma and entry[1] == rate and entry[3] == parties:
            entry[2] += 1
            return
    shared.append([sigma, rate, 1, parties])


def _metrics(s: NodeSettings, ledger: NodePrivacyLedger) -> dict[str, float]:
    spend = ledger.distributed_noise.get("spend", {})
    return {"epsilon_spent": float(ledger.epsilon_total),
            "epsilon_fallback": float(spend.get("fallback_epsilon", ledger.epsilon_total)),
            "delta": s.delta, "epsilon_budget": s.epsilon, "delta_budget": s.delta}


def _seed(s: NodeSettings, rnd: int) -> int | None:
    """None in production: the OS CSPRNG. Only the node's own ``test-seed`` sets one."""
    return None if s.test_seed is None else s.test_seed * 1000 + rnd


def train_share(msg: Message, context: Context, s: NodeSettings) -> RecordDict:
    """One round in distributed-noise mode (see the module docstring)."""
    import torch

    torch.set_num_threads(1)  # as for a local round (clients.training.train_round)
    keys, parties, std = _checked(msg, context, s)
    values = _values(msg, s)
    members = ",".join(keys.parties)
    session, rnd = config_str(msg, "session"), config_int(msg, "round")
    ledger = NodePrivacyLedger.load(context, s.out)
    key = ledger.round_key(session, rnd)
    global_arrays = arrays_of(msg)
    if global_arrays is None:
        raise FederationError("train message carries no arrays.")
    digest = arrays_digest(global_arrays)
    record = ledger.distributed_noise
    stored = ledger.stored_reply(key)
    if stored is not None:
        if ledger.given.get(key, digest) != digest:
            raise ProtocolError(f"round {rnd} was trained from other arrays; refused.")
        if record.get("participants", {}).get(key) != members:
            raise ProtocolError(f"round {rnd} was released to other participants; a rerun "
                                "with another set could isolate this node's share. Refused.")
        _log.info("%s: round %s already released; replaying it", s.agency_id, rnd)
        return _reply(msg, context, s, keys, stored[0][0], stored[1])
    previous = ledger.evaluated.get(ledger.round_key(session, rnd - 1))
    if previous is not None and previous != digest:
        raise ProtocolError(
            f"round {rnd} must start from the aggregate this node evaluated after round"
            f" {rnd - 1}; the arrays differ. Refused.")
    schema = training.schema_of(s)
    names = training.weight_names(schema)
    try:
        plan = _plan(s, ledger, context, session, values)
    except BudgetExceededError as exc:
        return _refuse(msg, context, s, ledger, keys, std, parties, exc)
    if std < float(plan["noise_std"]):
        raise ConfigError(f"the announced {_STD_KEY} {std:.6g} is below the {plan['noise_std']:.6g}"
                          " this node's budget needs for the planned rounds. Refused.")
    # the session's plan fixes the shape (rounds, batch, public size: the sample rate)
    config = TrainConfig(rounds=int(plan["rounds"]), batch_size=int(plan["batch_size"]),
                         public_rows=int(plan["public_rows"]))
    sigma = std / config.max_grad_norm  # the sum's multiplier for this node's records
    train_rows, _ = training.labelled_rows(s)
    state = (LocalState.from_bytes(ledger.state) if ledger.state is not None
             else training.new_state(s))
    weights = dict(zip(names, (np.asarray(a, dtype=np.float32) for a in global_arrays),
                       strict=True))
    try:
        step = shared_step(inputs=train_rows, schema=schema, state=replace(state, weights=weights),
                           config=config, noise_multiplier=sigma, parties=parties,
                           seed=_seed(s, rnd))
    except BudgetExceededError as exc:
        return _refuse(msg, context, s, ledger, keys, std, parties, exc)
    vector = _flat([step.share.sums[n] for n in names], step.share.expected_batch)
    _add_shared(record, sigma, step.sample_rate, parties)
    record.setdefault("participants", {})[key] = members
    new_state = replace(step.state, weights=None, noise_multiplier=sigma).to_bytes()
    ledger.charge(state=new_state, epsilon_total=step.spend.epsilon, delta=s.delta)
    metrics = _metrics(s, ledger)
    ledger.record_round(key=key, arrays=[vector], metrics=metrics, state=new_state,
                        epsilon=step.spend.epsilon)
    ledger.given[key] = digest
    ledger.save(context)
    return _reply(msg, context, s, keys, vector, metrics)


def _refuse(msg: Message, context: Context, s: NodeSettings, ledger: NodePrivacyLedger,
            keys: PublicKeyList, std: float, parties: int, exc: Exception) -> RecordDict:
    """Over budget: no record is read; a noise-only share keeps the sum's noise whole."""
    _log.warning("%s refused a distributed-noise round: %s; sending a noise-only share",
                 s.agency_id, exc)
    ledger.save(context)
    config = TrainConfig()
    noise = noise_only_share(schema=training.schema_of(s), config=config, parties=parties,
                             noise_multiplier=std / config.max_grad_norm,
                             seed=_seed(s, config_int(msg, "round")))
    vector = _flat([noise[n] for n in training.weight_names(training.schema_of(s))], 0)
    return _reply(msg, context, s, keys, vector, _metrics(s, ledger), refused="budget")


def _flat(sums: list[NDArray[np.float64]], divisor: int) -> NDArray[np.float32]:
    """The release as the node stores and sends it (float32, so a replay is identical)."""
    parts = [np.asarray(a, dtype=np.float64).ravel() for a in sums]
    return np.concatenate([*parts, np.array([float(divisor)])]).astype(np.float32)


def _reply(msg: Message, context: Context, s: NodeSettings, keys: PublicKeyList,
           vector: NDArray[np.float32], metrics: dict[str, float], *,
           refused: str = "") -> RecordDict:
    masked = masked_update.mask_vector(msg, context, agency_id=s.agency_id, keys=keys,
                                       vector=vector)
    rd = RecordDict()
    rd["config"] = ConfigRecord({"secure-aggregation": True,
                                 **({"refused": refused} if refused else {})})
    rd["arrays"] = ArrayRecord([np.ascontiguousarray(masked)])
    rd["metrics"] = MetricRecord(dict(metrics))
    _log.info("%s: masked distributed-noise share sent (%d values)", s.agency_id, masked.size)
    return rd

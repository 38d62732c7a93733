"""The coordinator's side of secure aggregation: one FedAvg round that sees only a sum.

On with ``secure-aggregation = true`` in the run config (``fedid simulate
--secure-aggregation``). Built on :mod:`privacy.secure_sum` (pairwise masking, no
dropout recovery) because Flower's SecAgg+ needs the legacy NumPyClient path.

One round, per attempt ``a = 0, 1, ...`` (at most :data:`MAX_ATTEMPTS`):

1. ``query.secagg`` to every remaining trainer (config: session, round,
   ``secagg-attempt`` and ``parties``, the attempt's sorted participants); each replies a
   fresh 32-byte X25519 public key and, when the node has a roster, its identity
   signature over the key and the instance (:mod:`privacy.secure_sum_keys`). A node that
   does not answer, fails or sends a bad key leaves the participants its peers signed
   for: the attempt stops there, BEFORE any mask is made, and the next one starts with
   the nodes that did answer.
2. ``train`` to the nodes with a key, carrying the global arrays, the sorted key list
   (``payload``) and the nodes' key signatures (record ``secagg-signatures``) with
   ``secure-aggregation = true``; a node with a roster checks every peer's signature
   before it trains and refuses the round otherwise; each node trains under its budget
   guard as usual and replies ONE masked uint64 vector ``[w * delta..., w]`` plus its
   privacy declaration in clear (a refusing node sends a masked zero vector, ``w = 0``).
3. If every keyed node sent a usable reply, the masked vectors are summed and decoded:
   ``global += sum(w * delta) / sum(w)``, which is weighted FedAvg. If any did not
   (no reply, error, bad declaration, wrong length), the masks cannot cancel: the
   attempt FAILS CLOSED and the round reruns from step 1 with the nodes that did answer
   well. Nodes replay their stored round result (:mod:`clients.privacy_state`), so a
   rerun spends no budget twice. Below two usable nodes, or after the last attempt, the
   round stops with a FederationError.

What is checked, and where. Per node, in clear: the privacy declaration (same rules as
:meth:`server.strategy.FedAvg.check`), that the reply is one uint64 vector of the
expected length, refusals. Per node checks that need plaintext (finite values, array
shapes, example count >= 1) cannot be made on a masked vector; the node checks shapes
before masking and refuses non-finite or out-of-range values (fixed-point bound), and
the coordinator checks the decoded SUM: finite, total weight > 0, shapes when reshaped.
The coordinator learns the total weight only, never a node's example count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, RecordDict
from numpy.typing import NDArray

from fedid.errors import CryptoError, FederationError
from fedid.records import (
    SIGNATURES_RECORD,
    ConfigValue,
    arrays_of,
    content,
    metrics_of,
    payload_of,
)
from privacy.secure_sum import PublicKeyList, check_public_key, unmask_sum
from server.strategy import AggregationResult, FedAvg, PrivacyDeclaration, TrainReply
from server.transport import Messenger

__all__ = ["MAX_ATTEMPTS", "SecureRound", "StepRule", "add_flat", "secure_round"]

_log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
#: apply(global arrays, decoded sum / total weight) -> new global arrays (default: add it,
#: weighted FedAvg); the distributed-noise mode takes a gradient step (server.noise_round)
StepRule = Callable[[Sequence[NDArray[np.floating]], NDArray[np.float64]],
                    list[NDArray[np.float32]]]


@dataclass(frozen=True, slots=True)
class SecureRound:
    """A securely aggregated round: the FedAvg result plus what the coordinator saw."""

    result: AggregationResult
    declarations: dict[str, PrivacyDeclaration]
    attempts: int
    total_weight: float
    dropped: dict[str, str] = field(default_factory=dict)


def _keys(
    messenger: Messenger, nodes: Sequence[str], conf: dict[str, ConfigValue],
    dropped: dict[str, str],
) -> tuple[dict[str, bytes], dict[str, tuple[int, bytes]]]:
    """Every node's public key, and its signature (issue time, bytes) where it sent one."""
    replies = messenger.exchange("query.secagg", {a: content(config=conf) for a in nodes},
                                 group=str(conf["round"]))
    keys: dict[str, bytes] = {}
    signatures: dict[str, tuple[int, bytes]] = {}
    for agency in nodes:
        msg = replies.get(agency)
        if msg is None or msg.has_error():
            dropped[agency] = "no public key" if msg is None else f"key step failed: " \
                f"{msg.error.reason}"
            continue
        try:
            key = payload_of(msg)
            check_public_key(key)
        except (ValueError, CryptoError) as exc:
            dropped[agency] = f"bad public key: {exc}"
            continue
        keys[agency] = key
        record = msg.content.config_records.get("signature")
        issued, data = (None, None) if record is None else (record.get("issued"),
                                                            record.get("data"))
        if isinstance(issued, int) and not isinstance(issued, bool) and isinstance(data, bytes):
            signatures[agency] = (issued, data)
    return keys, signatures


def _signature_record(signatures: dict[str, tuple[int, bytes]]) -> ConfigRecord:
    parties = sorted(signatures)
    return ConfigRecord({"parties": parties, "issued": [signatures[p][0] for p in parties],
                         "data": [signatures[p][1] for p in parties]})


def _declaration(metrics: dict[str, float]) -> PrivacyDeclaration | None:
    if "epsilon_spent" not in metrics:
        return None
    nan = float("nan")
    return PrivacyDeclaration(
        epsilon_spent=metrics["epsilon_spent"], delta=metrics.get("delta", nan),
        epsilon_budget=metrics.get("epsilon_budget", nan),
        delta_budget=metrics.get("delta_budget", nan),
    )


def _size(arrays: Sequence[NDArray[np.floating]]) -> int:
    return sum(int(np.asarray(a).size) for a in arrays) + 1


def secure_round(
    messenger: Messenger,
    strategy: FedAvg,
    *,
    trainers: Sequence[str],
    conf: dict[str, ConfigValue],
    arrays: Sequence[NDArray[np.floating]],
    apply: StepRule | None = None,
) -> SecureRound:
    """Run one securely aggregated round (see the module docstring); ``apply`` turns the
    decoded mean into the new global arrays (None: FedAvg, add it)."""
    nodes = list(trainers)
    dropped: dict[str, str] = {}
    need = max(2, strategy.min_replies)
    for attempt in range(MAX_ATTEMPTS):
        if len(nodes) < need:
            break
        step: dict[str, ConfigValue] = {
            "session": conf["session"], "round": conf["round"], "secagg-attempt": attempt,
            "parties": ",".join(sorted(nodes))}
        keys, signatures = _keys(messenger, nodes, step, dropped)
        if len(keys) < len(nodes):  # the others signed for a participant set that lost some
            _log.warning("secure round %s attempt %d: %d of %d nodes sent no usable key; "
                         "rerunning the key exchange without them", conf["round"], attempt,
                         len(nodes) - len(keys), len(nodes))
            nodes = sorted(keys)
            continue
        key_list = PublicKeyList.of(keys)
        train_conf = {**conf, **step, "secure-aggregation": True,
                      "secagg-weighting": strategy.weighting}
        requests: dict[str, RecordDict] = {}
        for agency in key_list.parties:
            request = content(config=train_conf, arrays=arrays, payload=key_list.to_bytes())
            request[SIGNATURES_RECORD] = _signature_record(signatures)
            requests[agency] = request
        replies = messenger.exchange("train", requests, group=str(conf["round"]))
        masked: dict[str, NDArray[np.uint64]] = {}
        declared: dict[str, PrivacyDeclaration] = {}
        refused: dict[str, str] = {}
        for agency in key_list.parties:
            reason, vec, priv, why = _check(strategy, replies.get(agency), agency, _size(arrays))
            if reason or vec is None or priv is None:
                dropped[agency] = reason
                _log.warning("secure round %s attempt %d: %s dropped: %s", conf["round"],
                             attempt, agency, reason)
                continue
            masked[agency], declared[agency] = vec, priv
            if why:
                refused[agency] = f"node refused the round: {why}"
        if len(masked) == len(key_list.parties):
            return _finish(strategy, masked, declared, refused, dropped, arrays=arrays,
                           parties=key_list.parties, attempts=attempt + 1, apply=apply)
        nodes = sorted(masked)
        _log.warning("secure round %s attempt %d failed closed (%d of %d masked vectors); "
                     "rerunning from the key exchange", conf["round"], attempt,
                     len(masked), len(key_list.parties))
    raise FederationError(
        f"secure aggregation needs at least {need} nodes that complete the round; "
        f"{len(nodes)} remain after {MAX_ATTEMPTS} attempts at most (dropped: {dropped})."
    )


def _check(
    strategy: FedAvg, msg: object, agency: str, size: int
) -> tuple[str, NDArray[np.uint64] | None, PrivacyDeclaration | None, str]:
    from flwr.app import Message

    if not isinstance(msg, Message):
        return "no reply before timeout", None, None, ""
    if msg.has_error():
        return f"node error: {msg.error.reason or 'unspecified error'}", None, None, ""
    priv = _declaration(metrics_of(msg))
    reason = strategy.check_privacy(TrainReply(agency, None, 0, priv))
    if reason:
        return reason, None, None, ""
    got = arrays_of(msg) or []
    if len(got) != 1 or got[0].dtype != np.uint64 or got[0].size != size:
        return f"expected one uint64 masked vector of {size} values", None, None, ""
    refused = str(msg.content["config"].get("refused", ""))
    vec: NDArray[np.uint64] = np.asarray(got[0], dtype=np.uint64).ravel()
    return "", vec, priv, refused


def add_flat(arrays: Sequence[NDArray[np.floating]],
             update: NDArray[np.float64]) -> list[NDArray[np.float32]]:
    """The global arrays plus a flat update in their order (FedAvg: the mean of the
    weighted deltas)."""
    out: list[NDArray[np.float32]] = []
    pos = 0
    for g in arrays:
        n = int(np.asarray(g).size)
        step = update[pos:pos + n].reshape(np.shape(g))
        out.append((np.asarray(g, dtype=np.float64) + step).astype(np.float32))
        pos += n
    return out


def _finish(
    strategy: FedAvg,
    masked: dict[str, NDArray[np.uint64]],
    declared: dict[str, PrivacyDeclaration],
    refused: dict[str, str],
    dropped: dict[str, str],
    *,
    arrays: Sequence[NDArray[np.floating]],
    parties: Sequence[str],
    attempts: int,
    apply: StepRule | None = None,
) -> SecureRound:
    try:
        total = unmask_sum(masked, parties=parties)
    except CryptoError as exc:
        raise FederationError(f"secure sum failed: {exc}") from exc
    weight = float(total[-1])
    used = tuple(a for a in parties if a not in refused)
    if len(used) < strategy.min_replies or not weight > 0:
        raise FederationError(
            f"a round needs at least {strategy.min_replies} valid replies. Got {len(used)} "
            f"(total weight {weight:g}; excluded: {refused | dropped})."
        )
    update = total[:-1] / weight
    if not np.all(np.isfinite(update)):
        raise FederationError("the decoded secure sum holds non-finite values.")
    out = (apply or add_flat)(arrays, update)
    strategy.note_spend({a: p.epsilon_spent for a, p in declared.items()})
    excluded = {**{a: r for a, r in dropped.items() if a not in masked}, **refused}
    return SecureRound(AggregationResult(arrays=out, used=used, excluded=excluded),
                       declarations=declared, attempts=attempts, total_weight=weight,
                       dropped=dict(dropped))

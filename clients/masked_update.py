"""The node's side of secure aggregation (Flower glue over :mod:`privacy.secure_sum`).

Used only when the coordinator's train message says ``secure-aggregation = true``.
Per round and attempt (see :mod:`server.secure_round` for the coordinator's side):

1. ``query.secagg``  config: ``session``, ``round``, ``secagg-attempt`` and ``parties``
                     (the instance's participants, sorted, comma-separated). The node makes
                     a fresh X25519 key pair, keeps the private key in its own
                     ``context.state`` (never sent) and replies with the 32-byte public key
                     as ``payload``. A node with a roster (node config ``roster``, its
                     identity key beside it; :mod:`clients.agency_keys`) also signs the key
                     for this instance (:func:`privacy.secure_sum_keys.sign_masking_key`:
                     Flower run id, session, round, attempt, participants, its name, issue
                     time) and replies ``signature`` ``{issued, data}``; it refuses a request
                     whose participants are missing, fewer than two, leave it out, or are
                     not all in its roster.
2. ``train``         BEFORE training, the node checks the key list (``payload``): it must
                     hold the node's own key and, with a roster, name exactly the
                     participants the node signed for, every peer's key carrying that
                     peer's signature for this instance (record ``secagg-signatures``:
                     ``parties``, ``issued``, ``data``;
                     :func:`privacy.secure_sum_keys.verify_masking_keys`). An unsigned,
                     substituted or replayed key is refused (the gate replies code 1005;
                     nothing is trained, charged or released). Then the node trains (or
                     replays its stored round, or refuses on its budget) exactly as without
                     secure aggregation and replies with ONE masked uint64 vector instead of
                     its arrays: ``[w * (local - global) flattened ..., w]`` with ``w`` the
                     FedAvg weight its release policy lets leave (the constant 1.0); a node
                     that refuses the round sends a masked zero vector (``w = 0``) so the
                     others' masks still cancel.

A node without a roster masks with whatever keys the coordinator relays: the coordinator
can then substitute a peer's key and unmask that node's update (THREAT_MODEL.md); the node
logs a warning every round. The privacy declaration (epsilon, delta, budgets) still
travels in clear as metrics; the example count never leaves (the coordinator learns only
the total weight).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from numpy.typing import NDArray

from fedid.errors import CryptoError, ProtocolError
from fedid.records import (
    SIGNATURES_RECORD,
    config_flag,
    config_int,
    config_str,
    content,
    payload_of,
)
from privacy.identity import AgencyIdentity, Roster
from privacy.secure_sum import MaskingParty, PublicKeyList
from privacy.secure_sum_keys import (
    MaskingInstance,
    MaskingKeySignature,
    sign_masking_key,
    verify_masking_keys,
)

__all__ = ["checked_keys", "enabled", "keys_reply", "mask_vector", "masked_reply"]

_log = logging.getLogger(__name__)
_STATE_KEY = "fedid.secure_sum"


def enabled(msg: Message) -> bool:
    """Whether the coordinator's train message asks for secure aggregation."""
    return config_flag(msg, "secure-aggregation")


def _tag(msg: Message) -> str:
    return (f"{msg.metadata.run_id}/{config_str(msg, 'session')}/{config_int(msg, 'round')}/"
            f"{config_int(msg, 'secagg-attempt', 0)}")


def _instance(msg: Message, parties: str) -> MaskingInstance:
    return MaskingInstance(run=str(msg.metadata.run_id), session=config_str(msg, "session"),
                           round=config_int(msg, "round"),
                           attempt=config_int(msg, "secagg-attempt", 0),
                           participants=tuple(p for p in parties.split(",") if p))


def keys_reply(msg: Message, context: Context, *, agency_id: str,
               keys: tuple[AgencyIdentity, Roster] | None) -> RecordDict:
    """Step 1: a fresh key pair for this instance; reply the public key (signed with
    ``keys``, the node's identity and roster, when it has them)."""
    party = MaskingParty(agency_id, config_str(msg, "session"), config_int(msg, "round"),
                         config_int(msg, "secagg-attempt", 0))
    public = party.public_key()
    parties = config_str(msg, "parties", "")
    signed: MaskingKeySignature | None = None
    if keys is None:
        _log.warning("%s: secure aggregation without a roster: this node's masking keys are"
                     " not authenticated (the coordinator could substitute them)", agency_id)
    else:
        identity, roster = keys
        try:
            instance = _instance(msg, parties)
            for name in instance.participants:
                roster.get(name)
            signed = sign_masking_key(identity, public_key=public, instance=instance,
                                      issued=int(time.time()))
        except CryptoError as exc:
            raise CryptoError(f"secure-aggregation key request refused: {exc}") from exc
    context.state.config_records[_STATE_KEY] = ConfigRecord(
        {"tag": _tag(msg), "key": party.private_bytes(),
         "parties": parties if signed is not None else ""}
    )
    rd = content(payload=public)
    if signed is not None:
        rd["signature"] = ConfigRecord({"issued": signed.issued, "data": signed.signature})
    return rd


def _stored(msg: Message, context: Context) -> ConfigRecord:
    record = context.state.config_records.get(_STATE_KEY)
    if record is None or record.get("tag") != _tag(msg) or not isinstance(
            record.get("key"), bytes):
        raise ProtocolError(
            f"no secure-aggregation key for round {config_int(msg, 'round')} attempt "
            f"{config_int(msg, 'secagg-attempt', 0)}: the key exchange must come first."
        )
    return record


def _party(msg: Message, context: Context, agency_id: str) -> MaskingParty:
    key = _stored(msg, context).get("key")
    if not isinstance(key, bytes):  # checked by _stored
        raise ProtocolError("no secure-aggregation key on this node.")
    return MaskingParty.from_private_bytes(
        key, name=agency_id, session=config_str(msg, "session"),
        round=config_int(msg, "round"), attempt=config_int(msg, "secagg-attempt", 0),
    )


def _signatures(msg: Message) -> dict[str, MaskingKeySignature]:
    record = msg.content.config_records.get(SIGNATURES_RECORD)
    if record is None:
        return {}
    parties, issued, data = (record.get(k) for k in ("parties", "issued", "data"))
    if not (isinstance(parties, list) and isinstance(issued, list) and isinstance(data, list)
            and len(parties) == len(issued) == len(data)):
        raise CryptoError("the key signatures record is malformed.")
    out: dict[str, MaskingKeySignature] = {}
    for name, at, sig in zip(parties, issued, data, strict=True):
        if not (isinstance(name, str) and isinstance(at, int) and not isinstance(at, bool)
                and isinstance(sig, bytes)) or name in out:
            raise CryptoError("the key signatures record is malformed.")
        out[name] = MaskingKeySignature(issued=at, signature=sig)
    return out


def checked_keys(msg: Message, context: Context, *, agency_id: str, roster: Roster | None,
                 now: float | None = None) -> PublicKeyList:
    """Step 2, before training: the coordinator's key list, checked (module docstring)."""
    record = _stored(msg, context)
    try:
        keys = PublicKeyList.from_bytes(payload_of(msg))
    except ValueError as exc:
        raise ProtocolError("train message carries no public key list.") from exc
    except CryptoError as exc:
        raise CryptoError(f"public key list rejected: {exc}") from exc
    if dict(keys.keys).get(agency_id) != _party(msg, context, agency_id).public_key():
        raise CryptoError("the public key list does not hold this node's own masking key.")
    if roster is None:
        return keys
    parties = record.get("parties")
    if not isinstance(parties, str) or not parties:
        raise CryptoError("this node signed no masking key for this round; a node with a "
                          "roster masks only with signed keys.")
    try:
        verify_masking_keys(keys, _signatures(msg), roster=roster,
                            instance=_instance(msg, parties), own=agency_id,
                            now=time.time() if now is None else now)
    except CryptoError as exc:
        raise CryptoError(f"public key list rejected: {exc}") from exc
    return keys


def _vector(
    global_arrays: Sequence[NDArray[np.floating]],
    local_arrays: Sequence[NDArray[np.floating]] | None,
    weight: float,
) -> NDArray[np.float64]:
    if local_arrays is None:
        size = sum(int(np.asarray(g).size) for g in global_arrays)
        return np.zeros(size + 1, dtype=np.float64)
    if len(local_arrays) != len(global_arrays):
        raise ProtocolError(f"expected {len(global_arrays)} arrays. Got {len(local_arrays)}.")
    parts = []
    for g, loc in zip(global_arrays, local_arrays, strict=True):
        if np.shape(g) != np.shape(loc):
            raise ProtocolError(f"array shape {np.shape(loc)} differs from {np.shape(g)}.")
        delta = np.asarray(loc, dtype=np.float64) - np.asarray(g, dtype=np.float64)
        parts.append(weight * delta.ravel())
    parts.append(np.array([weight], dtype=np.float64))
    return np.concatenate(parts)


def masked_reply(
    msg: Message,
    context: Context,
    *,
    agency_id: str,
    keys: PublicKeyList,
    global_arrays: Sequence[NDArray[np.floating]],
    local_arrays: Sequence[NDArray[np.floating]] | None,
    metrics: Mapping[str, float],
    refused: str = "",
) -> RecordDict:
    """Step 2: the masked ``[w * delta, w]`` vector plus the privacy metrics in clear;
    ``keys`` from :func:`checked_keys`."""
    party = _party(msg, context, agency_id)
    weight = 0.0 if local_arrays is None else float(metrics.get("weight", 1.0))
    try:
        masked = party.mask(_vector(global_arrays, local_arrays, weight), keys)
    except CryptoError as exc:
        raise CryptoError(f"secure aggregation failed on this node: {exc}") from exc
    context.state.config_records.pop(_STATE_KEY, None)  # one key, one masked vector
    rd = RecordDict()
    rd["config"] = ConfigRecord({"secure-aggregation": True,
                                 **({"refused": refused} if refused else {})})
    rd["arrays"] = ArrayRecord([np.ascontiguousarray(masked)])
    rd["metrics"] = MetricRecord({k: v for k, v in metrics.items() if k != "num_examples"})
    _log.info("%s: masked update sent (%d values)", agency_id, masked.size)
    return rd


def mask_vector(
    msg: Message, context: Context, *, agency_id: str, keys: PublicKeyList,
    vector: NDArray[np.floating],
) -> NDArray[np.uint64]:
    """Step 2 for a vector the caller built (distributed-noise mode,
    :mod:`clients.noise_share`): mask it with this round's stored key against the key list
    ``keys``; the key is used once."""
    party = _party(msg, context, agency_id)
    try:
        masked = party.mask(np.asarray(vector, dtype=np.float64), keys)
    except CryptoError as exc:
        raise CryptoError(f"secure aggregation failed on this node: {exc}") from exc
    context.state.config_records.pop(_STATE_KEY, None)  # one key, one masked vector
    return masked

"""The node's side of secure aggregation (Flower glue over :mod:`privacy.secure_sum`).

Used only when the coordinator's train message says ``secure-aggregation = true``.
Per round and attempt (see :mod:`server.secure_round` for the coordinator's side):

1. ``query.secagg``  the node makes a fresh X25519 key pair, keeps the private key in
                     its own ``context.state`` (never sent) and replies with the 32-byte
                     public key as ``payload``;
2. ``train``         the node trains (or replays its stored round, or refuses on its
                     budget) exactly as without secure aggregation, then replies with ONE
                     masked uint64 vector instead of its arrays:
                     ``[w * (local - global) flattened ..., w]`` with ``w`` the FedAvg
                     weight its release policy lets leave (the constant 1.0); a
                     node that refuses the round sends a masked zero vector (``w = 0``) so
                     the others' masks still cancel.

The privacy declaration (epsilon, delta, budgets) still travels in clear as metrics; the
example count never leaves (the coordinator learns only the total weight).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from numpy.typing import NDArray

from fedid.errors import CryptoError, ProtocolError
from fedid.records import config_int, config_str, content, payload_of
from privacy.secure_sum import MaskingParty, PublicKeyList

__all__ = ["enabled", "keys_reply", "masked_reply"]

_log = logging.getLogger(__name__)
_STATE_KEY = "fedid.secure_sum"


def enabled(msg: Message) -> bool:
    record = msg.content.config_records.get("config")
    return record is not None and record.get("secure-aggregation") is True


def _tag(msg: Message) -> str:
    return (f"{config_str(msg, 'session')}/{config_int(msg, 'round')}/"
            f"{config_int(msg, 'secagg-attempt', 0)}")


def keys_reply(msg: Message, context: Context, *, agency_id: str) -> RecordDict:
    """Step 1: a fresh key pair for this (session, round, attempt); reply the public key."""
    party = MaskingParty(agency_id, config_str(msg, "session"), config_int(msg, "round"),
                         config_int(msg, "secagg-attempt", 0))
    context.state.config_records[_STATE_KEY] = ConfigRecord(
        {"tag": _tag(msg), "key": party.private_bytes()}
    )
    return content(payload=party.public_key())


def _party(msg: Message, context: Context, agency_id: str) -> MaskingParty:
    record = context.state.config_records.get(_STATE_KEY)
    key = None if record is None else record.get("key")
    if record is None or record.get("tag") != _tag(msg) or not isinstance(key, bytes):
        raise ProtocolError(
            f"no secure-aggregation key for round {config_int(msg, 'round')} attempt "
            f"{config_int(msg, 'secagg-attempt', 0)}: the key exchange must come first."
        )
    return MaskingParty.from_private_bytes(
        key, name=agency_id, session=config_str(msg, "session"),
        round=config_int(msg, "round"), attempt=config_int(msg, "secagg-attempt", 0),
    )


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
    global_arrays: Sequence[NDArray[np.floating]],
    local_arrays: Sequence[NDArray[np.floating]] | None,
    metrics: Mapping[str, float],
    refused: str = "",
) -> RecordDict:
    """Step 2: the masked ``[w * delta, w]`` vector plus the privacy metrics in clear."""
    party = _party(msg, context, agency_id)
    try:
        keys = PublicKeyList.from_bytes(payload_of(msg))
    except ValueError as exc:
        raise ProtocolError("train message carries no public key list.") from exc
    except CryptoError as exc:
        raise CryptoError(f"public key list rejected: {exc}") from exc
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

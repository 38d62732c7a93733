"""The Flower message codec shared by nodes (clients/) and the coordinator (server/).

It sits in layer 2, below both apps, and is the one module under layer 3 that imports
``flwr`` (see ARCHITECTURE.md, "Layers").

Records in a message's RecordDict:

- ``config``   ConfigRecord: step parameters (session, round, step name ...)
- ``arrays``   ArrayRecord: model arrays (global in a request, local in a reply)
- ``metrics``  MetricRecord: numbers (example counts, privacy spend, aggregates)
- ``payload``  ConfigRecord ``{"data": bytes}``: one protocol message's ``to_bytes()``
- ``info``     ConfigRecord: a node's self-description
- ``signature``          ConfigRecord ``{"issued": int, "data": bytes}``: a node's signature
                         over its secure-aggregation key (:mod:`privacy.secure_sum_keys`)
- ``secagg-signatures``  ConfigRecord ``{"parties": [str], "issued": [int], "data":
                         [bytes]}``: those signatures, relayed by the coordinator with the key
                         list (:data:`SIGNATURES_RECORD`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from numpy.typing import NDArray

__all__ = ["SIGNATURES_RECORD", "ConfigValue", "arrays_of", "config_flag", "config_float",
           "config_int", "config_str", "content", "metrics_of", "payload_of"]

ConfigValue = int | float | str | bytes | bool
#: the record of the peers' masking-key signatures in a secure-aggregation train message
SIGNATURES_RECORD = "secagg-signatures"


def content(
    *,
    config: Mapping[str, ConfigValue] | None = None,
    arrays: Sequence[NDArray[np.floating]] | None = None,
    metrics: Mapping[str, int | float] | None = None,
    payload: bytes | None = None,
) -> RecordDict:
    """Build a RecordDict with the standard record names."""
    rd = RecordDict()
    rd["config"] = ConfigRecord(dict(config or {}))
    if arrays is not None:
        rd["arrays"] = ArrayRecord([np.ascontiguousarray(a) for a in arrays])
    if metrics is not None:
        rd["metrics"] = MetricRecord(dict(metrics))
    if payload is not None:
        rd["payload"] = ConfigRecord({"data": payload})
    return rd


def arrays_of(msg: Message) -> list[NDArray[np.float32]] | None:
    record = msg.content.array_records.get("arrays")
    if record is None:
        return None
    return [np.asarray(a) for a in record.to_numpy_ndarrays()]


def metrics_of(msg: Message) -> dict[str, float]:
    record = msg.content.metric_records.get("metrics")
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}


def payload_of(msg: Message) -> bytes:
    record = msg.content.config_records.get("payload")
    data = None if record is None else record.get("data")
    if not isinstance(data, bytes):
        raise ValueError("message carries no payload bytes")
    return data


def _config_value(msg: Message, key: str) -> object:
    record = msg.content.config_records.get("config")
    return None if record is None else record.get(key)


def config_int(msg: Message, key: str, default: int | None = None) -> int:
    """An int from the message's ``config`` record; ValueError if absent and no default."""
    value = _config_value(msg, key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        if default is None:
            raise ValueError(f"config key {key!r} must be a number")
        return default
    return int(value)


def config_float(msg: Message, key: str, default: float) -> float:
    value = _config_value(msg, key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else default


def config_flag(msg: Message, key: str) -> bool:
    """True only when the message's config record sets ``key`` to the boolean True."""
    record = msg.content.config_records.get("config")
    return record is not None and record.get(key) is True


def config_str(msg: Message, key: str, default: str | None = None) -> str:
    value = _config_value(msg, key)
    if not isinstance(value, str):
        if default is None:
            raise ValueError(f"config key {key!r} must be a string")
        return default
    return value

"""Coordinator side of the matching protocol over Flower: relay and join.

For every education-side agency H (one protocol run each, all runs in parallel), with
the departments D connected to the federation and covered by a release policy:

1. ``home_start`` to H: its public-key messages and blinded key lists come back;
2. ``evidence`` to every department d (one message per (H, d)): the public key and the
   key list for d go out; the reblinded key list, d's blinded records and d's encrypted
   payloads come back;
3. ``home_reblind`` to H with every department's blinded records; the reblinded
   records come back;
4. the :class:`fedid.matching.coordinator.Coordinator` role joins tokens and masks
   unmatched slots; ``home_results`` to H carries the results, H's released
   aggregates come back.

What the coordinator keeps (returned as the ``matching`` section of the year): set
sizes, per home the number of key positions matched by each department and by at least
one, H's released counts. Never an ID or a value: those exist here only as blinded
points and ciphertexts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict

from clients.records import content
from fedid.errors import FederationError, ProtocolError
from fedid.matching.coordinator import Coordinator
from fedid.matching.messages import (
    EvidenceBlindedRecords,
    EvidencePayloads,
    EvidenceReblindedHomeKeys,
    HomeAggregates,
    HomeBlindedKeys,
    HomePublicKey,
    HomeReblindedRecords,
    decode_message,
)
from fedid.matching.policy import build_layouts, default_policies
from fedid.matching.protocol import COORDINATOR, evidence_party, home_party, new_run_id
from fedid.schema import Schema
from server.transport import Messenger

__all__ = ["run_matching"]

_log = logging.getLogger(__name__)


def _msg(step: str, run: bytes, payloads: list[bytes], **config: str) -> RecordDict:
    rd = content(config={"step": step, "run": run.hex(), **config})
    rd["payload"] = ConfigRecord({"data": payloads})
    return rd


def _payloads(reply: Message, who: str, step: str) -> list[bytes]:
    if reply.has_error():
        raise FederationError(f"{who} failed matching step {step}: {reply.error.reason}")
    record = reply.content.config_records.get("payload")
    data = None if record is None else record.get("data")
    if isinstance(data, bytes):
        return [data]
    if not isinstance(data, list):
        raise ProtocolError(f"{who}: {step} reply carries no payload.")
    return [d for d in data if isinstance(d, bytes)]


def _all_replies(replies: dict[str, Message], expected: list[str], step: str) -> None:
    missing = sorted(set(expected) - set(replies))
    if missing:
        raise FederationError(f"matching step {step}: no reply from {missing}.")


def run_matching(
    messenger: Messenger,
    *,
    schema: Schema,
    session: str,
    progress: Callable[[str, dict[str, Any]], None],
) -> dict[str, Any]:
    """Resolve every education agency against every connected department."""
    homes = sorted(a for a, i in messenger.agencies.items() if i.kind == "education")
    dep_agency = {i.department: a for a, i in messenger.agencies.items()
                  if i.kind == "department"}
    layouts_all = build_layouts(schema, default_policies(schema))
    deps = [d for d in layouts_all if d in dep_agency]
    if not homes or not deps:
        _log.warning("matching skipped: %d education and %d department nodes",
                     len(homes), len(deps))
        return {"skipped": True, "homes": homes, "departments": deps}
    layouts = {d: layouts_all[d] for d in deps}
    t: dict[str, float] = {}
    runs = {h: new_run_id() for h in homes}
    coords = {h: Coordinator(run_id=runs[h], homes=[home_party(h)], lead=home_party(h),
                             layouts=layouts) for h in homes}

    t0 = time.perf_counter()
    progress("matching", {"step": "home_start", "home": f"{len(homes)} runs"})
    starts = messenger.exchange("query.match", {
        h: _msg("home_start", runs[h], [], departments=",".join(deps)) for h in homes})
    _all_replies(starts, homes, "home_start")
    to_dep: dict[tuple[str, str], list[bytes]] = {}
    for h in homes:
        for data in _payloads(starts[h], h, "home_start"):
            m = decode_message(data)
            if m.header.run_id != runs[h] or m.header.sender != home_party(h):
                raise ProtocolError(f"{h}: home_start reply for another run or party.")
            if m.header.recipient == COORDINATOR and isinstance(m, HomePublicKey):
                coords[h].receive_public_key(m)
            elif isinstance(m, HomePublicKey | HomeBlindedKeys):
                dep = m.header.recipient.removeprefix("evidence:")
                if dep not in layouts:
                    raise ProtocolError(f"{h}: message for an unknown department.")
                to_dep.setdefault((h, dep), []).append(data)
    t["home_start"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("matching", {"step": "evidence", "home": f"{len(to_dep)} pairs"})
    pairs = [(dep_agency[d], _msg("evidence", runs[h], blobs, home=h)) for (h, d), blobs
             in sorted(to_dep.items())]
    ev_replies = messenger.exchange_pairs("query.match", pairs)
    records: dict[str, list[bytes]] = {h: [] for h in homes}
    payloads: dict[str, list[EvidencePayloads]] = {h: [] for h in homes}
    for ((h, d), _), reply in zip(sorted(to_dep.items()), ev_replies, strict=True):
        if reply is None:
            raise FederationError(f"matching: {dep_agency[d]} did not answer for run of {h}.")
        for data in _payloads(reply, dep_agency[d], "evidence"):
            m = decode_message(data)
            if m.header.run_id != runs[h] or m.header.sender != evidence_party(d):
                raise ProtocolError(f"{d}: evidence reply for another run or party.")
            if isinstance(m, EvidenceReblindedHomeKeys):
                coords[h].receive_reblinded_home_keys(m)
            elif isinstance(m, EvidenceBlindedRecords):
                records[h].append(data)
            elif isinstance(m, EvidencePayloads):
                payloads[h].append(m)
            else:
                raise ProtocolError(f"{d}: unexpected {type(m).__name__} in evidence reply.")
    t["evidence"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("matching", {"step": "home_reblind", "home": f"{len(homes)} runs"})
    reblinds = messenger.exchange("query.match", {
        h: _msg("home_reblind", runs[h], records[h]) for h in homes})
    _all_replies(reblinds, homes, "home_reblind")
    for h in homes:
        for data in _payloads(reblinds[h], h, "home_reblind"):
            m = decode_message(data)
            if not isinstance(m, HomeReblindedRecords):
                raise ProtocolError(f"{h}: unexpected {type(m).__name__} in reblind reply.")
            coords[h].receive_reblinded_records(m)
        for p in payloads[h]:
            coords[h].receive_payloads(p)
    t["home_reblind_and_join"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("matching", {"step": "home_results", "home": f"{len(homes)} runs"})
    results = {h: [r.to_bytes() for r in coords[h].results()] for h in homes}
    finals = messenger.exchange("query.match", {
        h: _msg("home_results", runs[h], results[h]) for h in homes})
    _all_replies(finals, homes, "home_results")
    for h in homes:
        for data in _payloads(finals[h], h, "home_results"):
            m = decode_message(data)
            if not isinstance(m, HomeAggregates):
                raise ProtocolError(f"{h}: unexpected {type(m).__name__} in results reply.")
            coords[h].receive_aggregates(m)
    t["results"] = time.perf_counter() - t0
    return {"departments": deps, "seconds": t, "per_home": _figures(coords, homes)}


def _figures(coords: dict[str, Coordinator], homes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for h in homes:
        view = coords[h].view
        party = home_party(h)
        size = int(view.home_sizes.get(party, 0))
        per_dep = view.matched_positions.get(party, {})
        any_hit = np.zeros(size, dtype=bool)
        for pos in per_dep.values():
            any_hit[np.asarray(pos, dtype=np.int64)] = True
        released = {k: int(v) for k, v in view.released.get(party, {}).items()}
        out[h] = {
            "key_positions": size,
            "key_positions_matched": int(any_hit.sum()),
            "coverage": float(any_hit.mean()) if size else 0.0,
            "matched_by_department": {d: len(p) for d, p in per_dep.items()},
            "department_sizes": {k: int(v) for k, v in view.department_sizes.items()},
            "released": released,
            "duplicate_aid": float(released.get("duplicate_aid_overlap", 0)),
        }
    return out

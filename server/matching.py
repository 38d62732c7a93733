"""Coordinator side of the matching protocol over Flower (``query.match``): relay and join.

Every agency message arrives signed by its sender (:mod:`fedid.matching.auth`); the
coordinator reads it, feeds it to its :class:`~fedid.matching.coordinator.Coordinator` role
and relays the signed bytes unchanged: it holds no agency key, so it cannot alter what it
relays, and the province keyring passes through it only sealed to each home.

For the education-side agencies (``grouping="province"``: one run for all, sharing the
education side's keyring, the first agency by id leading; ``"per_agency"``: one run each,
all runs in parallel), with the departments D connected and covered by a release policy:

1. ``home_start`` to the lead H: its signed public key and manifest, its sealed keyrings
   for the other homes and its blinded key lists come back; then ``home_start`` to every
   other home with the lead's public key and its sealed keyring: its key lists come back;
2. ``evidence`` to every department d (one message per run): the public key and every
   home's key list for d go out; the reblinded key lists, d's blinded records and d's
   encrypted payloads come back;
3. ``home_reblind`` to H with every department's blinded records; the reblinded
   records come back;
4. the :class:`fedid.matching.coordinator.Coordinator` role joins tokens and masks
   unmatched slots; ``home_results`` to H carries the results, H's released
   aggregates come back.

A department whose node gives no reply to the evidence step (dead or unreachable) is
left out of that run: its evidence is missing for the run's homes this year;
``lost_departments`` in the result maps it to those homes, a warning is logged, and each
home is told which departments its results cover. The year goes on with the others. An
error reply stays fatal (it may come from a home's bad input, which no department should
be blamed for), as does a run left with no department, or a home agency failing any step:
a FederationError names the step and agencies (a home's students cannot be resolved
without it, and the lead home holds the run's keys).

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

from fedid.errors import FederationError, ProtocolError
from fedid.matching.auth import SignedMessage
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
from fedid.matching.protocol import (
    COORDINATOR,
    DEFAULT_BLINDING,
    evidence_party,
    home_party,
    new_run_id,
)
from fedid.records import content
from fedid.schema import Schema
from server.transport import Messenger

__all__ = ["coordinate_matching"]

_log = logging.getLogger(__name__)


def _msg(step: str, run: bytes, payloads: list[bytes], sealed: bytes | None = None,
         **config: str) -> RecordDict:
    rd = content(config={"step": step, "run": run.hex(), **config})
    rd["payload"] = ConfigRecord({"data": payloads})
    if sealed is not None:
        rd["sealed"] = ConfigRecord({"data": [sealed]})
    return rd


def _sealed(reply: Message) -> dict[str, bytes]:
    """The lead's sealed keyrings, by home agency (opaque to the coordinator)."""
    record = reply.content.config_records.get("sealed")
    if record is None:
        return {}
    to, data = record.get("to"), record.get("data")
    if not (isinstance(to, list) and isinstance(data, list) and len(to) == len(data)):
        raise ProtocolError("malformed sealed keyrings in the lead's reply.")
    return {str(h): d for h, d in zip(to, data, strict=True) if isinstance(d, bytes)}


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


def _decoded(reply: Message | None, who: str, step: str) -> list[tuple[bytes, Any]]:
    """(signed bytes as received, the message inside) per payload of an agency's reply."""
    if reply is None:
        raise FederationError(f"matching step {step}: no reply from {who}.")
    return [(data, decode_message(SignedMessage.from_bytes(data).message))
            for data in _payloads(reply, who, step)]


def coordinate_matching(
    messenger: Messenger,
    *,
    schema: Schema,
    session: str,
    progress: Callable[[str, dict[str, Any]], None],
    grouping: str = "province",
    blinding: str = DEFAULT_BLINDING,
) -> dict[str, Any]:
    """Resolve every education agency against every connected department.

    ``grouping="province"``: one run for all education agencies, sharing the education
    side's run keyring (each department blinds and encrypts its records once);
    ``"per_agency"``: one run per education agency with its own keys. ``blinding``: the
    backend the leads are asked to use (they sign it into the run's manifest).
    """
    if grouping not in ("province", "per_agency"):
        raise FederationError(f"grouping must be province|per_agency. Got {grouping!r}.")
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
    groups = [homes] if grouping == "province" else [[h] for h in homes]
    runs = [new_run_id() for _ in groups]
    coords = [Coordinator(run_id=r, homes=[home_party(h) for h in g], lead=home_party(g[0]),
                          layouts=layouts) for r, g in zip(runs, groups, strict=True)]
    group_of = {h: i for i, g in enumerate(groups) for h in g}
    t: dict[str, float] = {}

    def start_cfg(h: str) -> dict[str, str]:
        g = groups[group_of[h]]
        return {"departments": ",".join(deps), "lead": g[0], "homes": ",".join(g),
                "blinding": blinding}

    # Steps 1-2: the leads make the keys (and publish the public key, and seal the keyring
    # to the other homes), then the others open it and blind their key lists.
    t0 = time.perf_counter()
    progress("matching", {"step": "home_start", "home": f"{len(groups)} runs"})
    to_dep: dict[tuple[int, str], list[bytes]] = {}
    to_home: dict[str, list[bytes]] = {}
    boxes: dict[str, bytes] = {}
    leads = [g[0] for g in groups]
    others = [h for g in groups for h in g[1:]]
    for batch in (leads, others):
        if not batch:
            continue
        replies = messenger.exchange_pairs("query.match", [
            (h, _msg("home_start", runs[group_of[h]], to_home.get(h, []), boxes.get(h),
                     **start_cfg(h))) for h in batch])
        for h, reply in zip(batch, replies, strict=True):
            i = group_of[h]
            for data, m in _decoded(reply, h, "home_start"):
                if m.header.run_id != runs[i] or m.header.sender != home_party(h):
                    raise ProtocolError(f"{h}: home_start reply for another run or party.")
                to = m.header.recipient
                if to == COORDINATOR and isinstance(m, HomePublicKey):
                    coords[i].receive_public_key(m)
                elif isinstance(m, HomePublicKey) and to.startswith("home:"):
                    to_home.setdefault(to.removeprefix("home:"), []).append(data)
                elif isinstance(m, HomePublicKey | HomeBlindedKeys):
                    dep = to.removeprefix("evidence:")
                    if dep not in layouts:
                        raise ProtocolError(f"{h}: message for an unknown department.")
                    to_dep.setdefault((i, dep), []).append(data)
                else:
                    raise ProtocolError(f"{h}: unexpected {type(m).__name__} at home_start.")
            if reply is not None:
                boxes.update(_sealed(reply))
    t["home_start"] = time.perf_counter() - t0

    # Steps 3, 4, 6: every department, once per run.
    t0 = time.perf_counter()
    progress("matching", {"step": "evidence", "home": f"{len(to_dep)} department runs"})
    keys = sorted(to_dep)
    ev_replies = messenger.exchange_pairs("query.match", [
        (dep_agency[d], _msg("evidence", runs[i], to_dep[(i, d)], lead=groups[i][0],
                             homes=",".join(groups[i]))) for i, d in keys])
    records: list[list[bytes]] = [[] for _ in groups]
    payloads: list[list[EvidencePayloads]] = [[] for _ in groups]
    # department -> the homes whose run goes on without it (its node gave no reply)
    lost: dict[str, list[str]] = {}
    for (i, d), reply in zip(keys, ev_replies, strict=True):
        if reply is None:  # a dead or unreachable node; an error reply stays fatal below
            for gone in coords[i].drop_department(d):
                lost.setdefault(gone, []).extend(groups[i])
            continue
        for data, m in _decoded(reply, dep_agency[d], "evidence"):
            if m.header.run_id != runs[i] or m.header.sender != evidence_party(d):
                raise ProtocolError(f"{d}: evidence reply for another run or party.")
            if isinstance(m, EvidenceReblindedHomeKeys):
                coords[i].receive_reblinded_home_keys(m)
            elif isinstance(m, EvidenceBlindedRecords):
                records[i].append(data)  # relayed signed, unchanged, to the lead
            elif isinstance(m, EvidencePayloads):
                payloads[i].append(m)
            else:
                raise ProtocolError(f"{d}: unexpected {type(m).__name__} in evidence reply.")
    t["evidence"] = time.perf_counter() - t0
    if lost:
        _log.warning("matching goes on without %d department(s) that did not reply: %s",
                     len(lost), ", ".join(sorted(lost)))
    empty = [h for i, g in enumerate(groups) if not coords[i].departments for h in g]
    if empty:
        raise FederationError(
            f"matching: no department replied to the evidence step for {', '.join(empty)}"
            f" (silent: {', '.join(sorted(lost))})."
        )

    # Step 5 and the join: the lead reblinds every department's records.
    t0 = time.perf_counter()
    progress("matching", {"step": "home_reblind", "home": f"{len(groups)} runs"})
    reblinds = messenger.exchange_pairs("query.match", [
        (g[0], _msg("home_reblind", runs[i], records[i])) for i, g in enumerate(groups)])
    for i, g in enumerate(groups):
        for _, m in _decoded(reblinds[i], g[0], "home_reblind"):
            if not isinstance(m, HomeReblindedRecords):
                raise ProtocolError(f"{g[0]}: unexpected {type(m).__name__} in reblind reply.")
            coords[i].receive_reblinded_records(m)
        for p in payloads[i]:
            coords[i].receive_payloads(p)
    t["home_reblind_and_join"] = time.perf_counter() - t0

    # Steps 7-8: masked results to each home; released aggregates back.
    t0 = time.perf_counter()
    progress("matching", {"step": "home_results", "home": f"{len(homes)} homes"})
    results: dict[str, list[bytes]] = {h: [] for h in homes}
    for i in range(len(groups)):
        for r in coords[i].results():  # the coordinator's own messages: not signed
            results[r.header.recipient.removeprefix("home:")].append(r.to_bytes())
    t["coordinator_mask"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    finals = messenger.exchange_pairs("query.match", [
        (h, _msg("home_results", runs[group_of[h]], results[h])) for h in homes])
    for h, reply in zip(homes, finals, strict=True):
        for _, m in _decoded(reply, h, "home_results"):
            if not isinstance(m, HomeAggregates):
                raise ProtocolError(f"{h}: unexpected {type(m).__name__} in results reply.")
            coords[group_of[h]].receive_aggregates(m)
    t["home_results"] = time.perf_counter() - t0
    per_home = {}
    for i, g in enumerate(groups):
        per_home.update(_figures(coords[i], g))
    return {"departments": deps, "grouping": grouping, "seconds": t, "per_home": per_home,
            "lost_departments": {d: sorted(h) for d, h in sorted(lost.items())}}


def _figures(coord: Coordinator, homes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    view = coord.view
    for h in homes:
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

"""Node side of the matching protocol over Flower (``query.match`` messages).

The roles are :class:`fedid.matching.home.HomeAgency` and
:class:`fedid.matching.evidence.EvidenceAgency`; this module only carries their messages
(``to_bytes()`` in the ``payload`` record, a list of bytes) and keeps a home agency's
role between steps in the node's own ``context.state`` (it holds the run's private
keys: it never leaves the node). Two groupings (:mod:`fedid.matching.protocol`):
``per_agency``, one run per home agency, which makes its own keys; ``province``, one run
for all education agencies: the lead makes the run keyring and puts it in the education
side's shared key folder (node config ``education-keys``, never visible to the
coordinator or departments), the other homes read it from there.

Steps (``config.step``):

- ``home_start``    home: make the run's keys; reply with the public-key messages (to C
                    and every department) and the blinded key lists (step 1, 2)
- ``evidence``      department: receive the public key and the home's blinded keys;
                    reply with the reblinded home keys (to C), its blinded records (to
                    the home) and its encrypted payloads (to C) (steps 3, 4, 6)
- ``home_reblind``  home: reblind every department's records (step 5)
- ``home_results``  home: decrypt the coordinator's results, merge the evidence into
                    ``<out>/evidence.parquet`` on the node (and which departments it
                    covers, or misses because their nodes did not reply, into
                    ``<out>/evidence_sources.json``), reply with the released aggregates
                    only (steps 7, 8)
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
from flwr.app import ConfigRecord, Context, Message, RecordDict

from clients import training
from clients.config import NodeSettings
from fedid.atomic import atomic_file, atomic_write_bytes
from fedid.errors import ConfigError, ProtocolError
from fedid.matching.aggregates import ReleaseConfig, compute_counts, release_counts
from fedid.matching.evidence import EvidenceAgency
from fedid.matching.home import HomeAgency
from fedid.matching.messages import (
    CoordinatorResults,
    EvidenceBlindedRecords,
    HomeAggregates,
    HomeBlindedKeys,
    HomePublicKey,
    MessageKind,
    decode_message,
)
from fedid.matching.policy import build_layouts, default_policies
from fedid.matching.protocol import COORDINATOR, HomeKeyring, evidence_party, home_party
from fedid.matching.run import resolve_home
from fedid.records import config_str, content
from privacy.blinding import BlindingKey
from privacy.paillier import PaillierPrivateKey

__all__ = ["handle", "payloads_of"]

_log = logging.getLogger(__name__)
_STATE_KEY = "fedid_matching"


def payloads_of(msg: Message) -> list[bytes]:
    record = msg.content.config_records.get("payload")
    data = None if record is None else record.get("data")
    if isinstance(data, bytes):
        return [data]
    if isinstance(data, list) and all(isinstance(d, bytes) for d in data):
        return [d for d in data if isinstance(d, bytes)]
    return []


def _reply(payloads: list[bytes], metrics: dict[str, float] | None = None) -> RecordDict:
    rd = content(metrics=metrics)
    rd["payload"] = ConfigRecord({"data": payloads})
    return rd


def _layouts(s: NodeSettings, departments: list[str]) -> dict[str, Any]:
    schema = training.schema_of(s)
    all_layouts = build_layouts(schema, default_policies(schema))
    missing = [d for d in departments if d not in all_layouts]
    if missing:
        raise ProtocolError(f"no release policy for departments {missing}.")
    return {d: all_layouts[d] for d in departments}


def _store(context: Context, run: str, role: HomeAgency | None) -> None:
    record = context.state.config_records.get(_STATE_KEY) or ConfigRecord({})
    if role is None:
        if run in record:
            del record[run]
    else:
        record[run] = pickle.dumps(role)
    context.state.config_records[_STATE_KEY] = record


def _load(context: Context, run: str) -> HomeAgency:
    record = context.state.config_records.get(_STATE_KEY)
    blob = None if record is None else record.get(run)
    if not isinstance(blob, bytes):
        raise ProtocolError("no matching run in progress on this node for that run id.")
    role = pickle.loads(blob)  # noqa: S301 - written by this node, never received
    if not isinstance(role, HomeAgency):
        raise ProtocolError("stored matching state is not a home agency role.")
    return role


def handle(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    """Dispatch one matching step."""
    step = config_str(msg, "step")
    if step == "home_start":
        return _home_start(s, msg, context)
    if step == "evidence":
        return _evidence(s, msg)
    if step == "home_reblind":
        return _home_reblind(msg, context)
    if step == "home_results":
        return _home_results(s, msg, context)
    raise ProtocolError(f"unknown matching step {step!r}.")


def _keyring_path(s: NodeSettings, run: str) -> Path:
    if s.education_keys is None:
        raise ConfigError(
            "a province-wide matching run needs the education side's shared key folder "
            "(node config 'education-keys').")
    return s.education_keys / f"{run}.keyring"


def _write_keyring(path: Path, keyring: HomeKeyring) -> None:
    private = keyring.private_key.to_bytes()
    blob = len(private).to_bytes(4, "big") + private + keyring.blinding.secret_bytes()
    atomic_write_bytes(path, blob, mode=0o600)


def _read_keyring(path: Path) -> HomeKeyring:
    if not path.exists():
        raise ProtocolError("the run's education keyring is not in the shared key folder yet.")
    blob = path.read_bytes()
    size = int.from_bytes(blob[:4], "big")
    private = PaillierPrivateKey.from_bytes(blob[4:4 + size])
    return HomeKeyring(public_key=private.public_key, private_key=private,
                       blinding=BlindingKey(blob[4 + size:]))


def _home_start(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    if s.kind != "education":
        raise ProtocolError("only an education-side node can be a home agency.")
    departments = [d for d in config_str(msg, "departments").split(",") if d]
    homes = [h for h in config_str(msg, "homes", s.agency_id).split(",") if h]
    lead = config_str(msg, "lead", s.agency_id)
    if s.agency_id not in homes or lead not in homes:
        raise ProtocolError("this node is not a home agency of that run.")
    run_id = bytes.fromhex(config_str(msg, "run"))
    is_lead = lead == s.agency_id
    if len(homes) == 1:
        keyring = HomeKeyring.generate()
    elif is_lead:
        keyring = HomeKeyring.generate()
        _write_keyring(_keyring_path(s, run_id.hex()), keyring)
    else:
        keyring = _read_keyring(_keyring_path(s, run_id.hex()))
    role = HomeAgency(run_id=run_id, agency_id=s.agency_id, students=training.table_of(s),
                      keyring=keyring, layouts=_layouts(s, departments),
                      key_departments=departments, is_lead=is_lead)
    out: list[bytes] = []
    if is_lead:
        out += [m.to_bytes() for m in role.public_key_messages(
            [COORDINATOR, *(evidence_party(d) for d in departments)])]
    out += [m.to_bytes() for m in role.blinded_keys()]
    _store(context, run_id.hex(), role)
    return _reply(out, {"key_count": float(role.key_count)})


def _evidence(s: NodeSettings, msg: Message) -> RecordDict:
    if s.kind != "department":
        raise ProtocolError("only a departmental node answers evidence steps.")
    run_id = bytes.fromhex(config_str(msg, "run"))
    lead = config_str(msg, "lead")
    homes = [h for h in config_str(msg, "homes", lead).split(",") if h]
    received = [decode_message(b) for b in payloads_of(msg)]
    pks = [m for m in received if isinstance(m, HomePublicKey)]
    keys = [m for m in received if isinstance(m, HomeBlindedKeys)]
    if len(pks) != 1 or len(keys) != len(homes) or len(received) != 1 + len(homes):
        raise ProtocolError("an evidence step needs one public key and one key list per home.")
    role = EvidenceAgency(run_id=run_id, department=s.department, table=training.table_of(s),
                          layout=_layouts(s, [s.department])[s.department],
                          homes=[home_party(h) for h in homes], lead=home_party(lead))
    role.receive_public_key(pks[0])
    out = [role.reblind_home_keys(k).to_bytes() for k in keys]
    out += [role.blinded_records().to_bytes(), role.payloads().to_bytes()]
    return _reply(out, {"records": float(role.size)})


def _home_reblind(msg: Message, context: Context) -> RecordDict:
    run = config_str(msg, "run")
    role = _load(context, run)
    out = []
    for data in payloads_of(msg):
        m = decode_message(data)
        if not isinstance(m, EvidenceBlindedRecords):
            raise ProtocolError("home_reblind carries only departments' blinded records.")
        out.append(role.reblind_records(m).to_bytes())
    _store(context, run, role)
    return _reply(out)


def _home_results(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    run = config_str(msg, "run")
    role = _load(context, run)
    results = [decode_message(b) for b in payloads_of(msg)]
    covered: set[str] = set()
    for m in results:
        if not isinstance(m, CoordinatorResults):
            raise ProtocolError("home_results carries only the coordinator's results.")
        role.receive_results(m)
        covered.update(m.departments)
    # departments left out of the run (their node did not reply): no evidence from them
    missing = [d for d in role.layouts if d not in covered]
    if missing:
        _log.warning("%s: no evidence this year from %s (their nodes did not reply)",
                     s.agency_id, ", ".join(missing))
    schema = training.schema_of(s)
    resolved = resolve_home(role, schema=schema, students=training.table_of(s))
    evidence_cols = [i.name for i in schema.indicators
                     if schema.departments[i.department].side == "evidence"
                     and i.name in resolved.columns]
    evidence = pd.DataFrame(resolved[["student_id", *evidence_cols]])
    s.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(s.out / "evidence.parquet") as tmp:
        evidence.to_parquet(tmp, index=False)
    live = [d for d in role.layouts if d in covered]
    training.write_sources(s.out, covered=live, missing=missing)
    counts = compute_counts(schema, resolved, tuple(live))
    rel = release_counts(counts, ReleaseConfig())
    agg = HomeAggregates(
        header=role.guard.header(recipient=COORDINATOR, kind=MessageKind.HOME_AGGREGATES),
        names=rel.names, values=rel.values, epsilon_milli=round(rel.epsilon * 1000))
    _store(context, run, None)
    return _reply([agg.to_bytes()])

"""Node side of the matching protocol over Flower (``query.match`` messages).

The roles are :class:`fedid.matching.home.HomeAgency` and
:class:`fedid.matching.evidence.EvidenceAgency`; this module carries their messages as
signed bytes (:mod:`fedid.matching.auth`: signed with this agency's identity key, every
received one verified against the node's roster before a role sees it) in the ``payload``
record, and keeps a home agency's role between steps in the node's own ``context.state``
(it holds the run's private keys: they never leave the node and are never written to a
file). Two groupings (:mod:`fedid.matching.protocol`): ``per_agency``, one run per home
agency, which makes its own keys; ``province``, one run for all education agencies: the
lead makes the run keyring and sends it to each other home sealed to that home's
agreement key and signed (:func:`privacy.identity.seal`); the coordinator relays the box
and cannot open it. The coordinator names the run's homes; a home bounds them by its own
node config: ``matching-grouping = "per_agency"`` (its keyring reaches no other home) or,
under ``province``, ``matching-peers`` (the only other homes it shares a keyring with; a
run naming any other is refused before a key is made, or before a sealed keyring is
opened).

The node needs its identity (node config ``identity``, default ``<out>/identity``, made by
``fedid node``) and the roster of every agency's public keys (node config ``roster``),
distributed out of band. It takes part in a run id once (``<out>/matching_runs.txt``), and
after any refused message the run stays failed on this node (fail closed).

Steps (``config.step``), with the protocol steps of :mod:`fedid.matching.protocol`:

- ``home_start``    home: the lead makes the run's keys and replies with the signed public
                    key and manifest (to C, every department and every other home) and the
                    sealed keyring for every other home; another home opens its sealed
                    keyring; each replies with its blinded key lists (steps 1, 2)
- ``evidence``      department: verify the public key and every home's key list; reply
                    with the reblinded home keys (to C), its blinded records (to the lead)
                    and its encrypted payloads (to C) (steps 3, 4, 6)
- ``home_reblind``  lead home: reblind every department's records (step 5)
- ``home_results``  home: decrypt the coordinator's results, merge the evidence into
                    ``<out>/evidence.parquet`` (0600) on the node (and which departments it
                    covers, or misses, into ``<out>/evidence_sources.json``), reply with the
                    signed released aggregates only: Gaussian-noised and charged to the
                    home's own budget, small cells suppressed (:mod:`clients.count_release`)
                    (steps 7, 8)
"""

from __future__ import annotations

import io
import logging
import pickle
from dataclasses import dataclass
from typing import Any

import pandas as pd
from flwr.app import ConfigRecord, Context, Message, RecordDict

from clients import training
from clients.agency_keys import load_agency_keys
from clients.config import NodeSettings
from clients.count_release import noised_counts
from clients.privacy_state import NodePrivacyLedger
from fedid.errors import ProtocolError
from fedid.matching.aggregates import compute_counts
from fedid.matching.auth import Signer, Verifier, key_fingerprint, party_identity
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
from fedid.matching.protocol import (
    COORDINATOR,
    DEFAULT_BLINDING,
    HomeKeyring,
    evidence_party,
    home_party,
)
from fedid.matching.resolve import resolve_home
from fedid.records import config_str, content
from privacy.atomic import atomic_write_bytes
from privacy.errors import CryptoError
from privacy.identity import AgencyIdentity, Roster, open_sealed, seal

__all__ = ["KEYRING_PURPOSE", "RUNS_FILE", "handle", "payloads_of"]

_log = logging.getLogger(__name__)
_STATE_KEY = "fedid_matching"
_FAILED = b"failed"
RUNS_FILE = "matching_runs.txt"
KEYRING_PURPOSE = "fedid.matching.home-keyring"


@dataclass
class _HomeRun:
    """A home agency's run between steps (the node's identity is re-read from its folder)."""

    role: HomeAgency
    roster_fingerprint: str


def payloads_of(msg: Message, record: str = "payload") -> list[bytes]:
    rec = msg.content.config_records.get(record)
    data = None if rec is None else rec.get("data")
    if isinstance(data, bytes):
        return [data]
    if isinstance(data, list) and all(isinstance(d, bytes) for d in data):
        return [d for d in data if isinstance(d, bytes)]
    return []


def _reply(payloads: list[bytes], metrics: dict[str, float] | None = None,
           sealed: dict[str, bytes] | None = None) -> RecordDict:
    rd = content(metrics=metrics)
    rd["payload"] = ConfigRecord({"data": payloads})
    if sealed:
        rd["sealed"] = ConfigRecord({"to": list(sealed), "data": list(sealed.values())})
    return rd


def _layouts(s: NodeSettings, departments: list[str]) -> dict[str, Any]:
    schema = training.schema_of(s)
    all_layouts = build_layouts(schema, default_policies(schema))
    missing = [d for d in departments if d not in all_layouts]
    if missing:
        raise ProtocolError(f"no release policy for departments {missing}.")
    return {d: all_layouts[d] for d in departments}


def _trust(s: NodeSettings) -> tuple[AgencyIdentity, Roster, Verifier]:
    identity, roster = load_agency_keys(s, purpose="matching")
    return identity, roster, Verifier(roster)


def _store(context: Context, run: str, state: _HomeRun | bytes | None) -> None:
    record = context.state.config_records.get(_STATE_KEY) or ConfigRecord({})
    if state is None:
        if run in record:
            del record[run]
    else:
        record[run] = state if isinstance(state, bytes) else pickle.dumps(state)
    context.state.config_records[_STATE_KEY] = record


def _load(context: Context, run: str) -> _HomeRun:
    record = context.state.config_records.get(_STATE_KEY)
    blob = None if record is None else record.get(run)
    if blob == _FAILED:
        raise ProtocolError("this run failed earlier on this node; it stays failed.")
    if not isinstance(blob, bytes):
        raise ProtocolError("no matching run in progress on this node for that run id.")
    state = pickle.loads(blob)  # noqa: S301 - written by this node, never received
    if not isinstance(state, _HomeRun):
        raise ProtocolError("stored matching state is not a home agency role.")
    return state


def _first_use(s: NodeSettings, run: str) -> None:
    """Refuse a run id this node has taken part in (a replay across runs); record it."""
    path = s.out / RUNS_FILE
    seen = path.read_text(encoding="ascii").split() if path.exists() else []
    if run in seen:
        raise ProtocolError("this node already took part in that matching run (replay).")
    atomic_write_bytes(path, "".join(f"{r}\n" for r in [*seen, run]).encode("ascii"))


def handle(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    """Dispatch one matching step; any refusal leaves the run failed on this node."""
    step = config_str(msg, "step")
    run = config_str(msg, "run")
    try:
        if step == "home_start":
            return _home_start(s, msg, context)
        if step == "evidence":
            return _evidence(s, msg)
        if step == "home_reblind":
            return _home_reblind(s, msg, context)
        if step == "home_results":
            return _home_results(s, msg, context)
    except Exception:
        if s.kind == "education":
            _store(context, run, _FAILED)  # fail closed: no later step of this run succeeds
        raise
    raise ProtocolError(f"unknown matching step {step!r}.")


def _run_id(msg: Message) -> bytes:
    try:
        return bytes.fromhex(config_str(msg, "run"))
    except ValueError as exc:
        raise ProtocolError("run id is not hex.") from exc


def _home_start(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    if s.kind != "education":
        raise ProtocolError("only an education-side node can be a home agency.")
    identity, roster, verifier = _trust(s)
    run_id = _run_id(msg)
    _first_use(s, run_id.hex())  # before any check: a refused run is not retried either
    lead = config_str(msg, "lead", s.agency_id)
    if s.matching_grouping == "per_agency" and lead != s.agency_id:
        raise ProtocolError("this node matches per agency (node config matching-grouping):"
                            " it opens no other agency's keyring.")
    _allowed_homes(s, [lead])
    if lead == s.agency_id:
        departments = sorted(d for d in config_str(msg, "departments").split(",") if d)
        homes = sorted(h for h in config_str(msg, "homes", s.agency_id).split(",") if h)
        if s.agency_id not in homes:
            raise ProtocolError("this node is not a home agency of that run.")
        if s.matching_grouping == "per_agency" and homes != [s.agency_id]:
            raise ProtocolError("this node matches per agency (node config matching-grouping):"
                                " its keyring is never sealed to another agency.")
        _allowed_homes(s, homes)  # before the keyring exists
        for party in [*(home_party(h) for h in homes), *(evidence_party(d) for d in departments)]:
            party_identity(roster, party)  # every party of the run is in the roster
        keyring = HomeKeyring.generate(backend=config_str(msg, "blinding", DEFAULT_BLINDING))
    else:
        keyring, homes, departments = _open_keyring(s, msg, identity, roster, verifier, lead)
    role = HomeAgency(run_id=run_id, agency_id=s.agency_id, students=training.table_of(s),
                      keyring=keyring, layouts=_layouts(s, departments),
                      key_departments=departments, is_lead=lead == s.agency_id)
    signer, fp = Signer(identity), role.key_fingerprint
    out: list[bytes] = []
    sealed: dict[str, bytes] = {}
    if role.is_lead:
        others = [h for h in homes if h != s.agency_id]
        out += [signer.seal(m, home_key=fp) for m in role.public_key_messages(
            [COORDINATOR, *(evidence_party(d) for d in departments),
             *(home_party(h) for h in others)], homes=homes)]
        blob = keyring.to_bytes()
        sealed = {h: seal(blob, sender=identity, recipient=roster.get(h),
                          context=_seal_context(run_id, fp)) for h in others}
    out += [signer.seal(m, home_key=fp) for m in role.blinded_keys()]
    _store(context, run_id.hex(), _HomeRun(role=role, roster_fingerprint=roster.fingerprint()))
    return _reply(out, {"key_count": float(role.key_count)}, sealed)


def _allowed_homes(s: NodeSettings, homes: list[str]) -> None:
    """Refuse a run that would share this home's keyring with a home outside its
    ``matching-peers`` (node config; unset: every roster home is allowed)."""
    if s.matching_peers is None:
        return
    outside = sorted(set(homes) - {s.agency_id} - set(s.matching_peers))
    if outside:
        raise ProtocolError(f"the run names home(s) {outside} outside this node's "
                            "matching-peers: it shares its keyring with none of them.")


def _seal_context(run_id: bytes, fp: bytes) -> dict[str, str | int | bytes]:
    return {"purpose": KEYRING_PURPOSE, "run": run_id, "home-key": fp}


def _open_keyring(s: NodeSettings, msg: Message, identity: AgencyIdentity, roster: Roster,
                  verifier: Verifier, lead: str
                  ) -> tuple[HomeKeyring, list[str], list[str]]:
    """A non-lead home: the lead's signed key and manifest, and its sealed keyring."""
    run_id = _run_id(msg)
    keys = [verifier.open(b, home_key=None) for b in payloads_of(msg)]
    boxes = payloads_of(msg, "sealed")
    if len(keys) != 1 or len(boxes) != 1 or not isinstance(keys[0], HomePublicKey):
        raise ProtocolError("home_start needs the lead's public key and one sealed keyring.")
    pk_msg = keys[0]
    h = pk_msg.header
    if (h.run_id, h.sender, h.recipient) != (run_id, home_party(lead), home_party(s.agency_id)):
        raise ProtocolError("the lead's public key is for another run, lead or home.")
    if s.agency_id not in pk_msg.homes:
        raise ProtocolError("the run's manifest does not list this home agency.")
    _allowed_homes(s, list(pk_msg.homes))  # before the keyring is opened
    fp = key_fingerprint(pk_msg.public_key)
    try:
        blob = open_sealed(boxes[0], recipient=identity, sender=party_identity(
            roster, home_party(lead)), context=_seal_context(run_id, fp))
    except CryptoError as exc:
        raise ProtocolError(f"sealed keyring refused: {exc}") from exc
    keyring = HomeKeyring.from_bytes(blob)
    if keyring.public_key.fingerprint != fp:
        raise ProtocolError("the sealed keyring does not match the lead's public key.")
    return keyring, list(pk_msg.homes), list(pk_msg.departments)


def _evidence(s: NodeSettings, msg: Message) -> RecordDict:
    if s.kind != "department":
        raise ProtocolError("only a departmental node answers evidence steps.")
    identity, _roster, verifier = _trust(s)
    run_id = _run_id(msg)
    _first_use(s, run_id.hex())  # before any check: a refused run is not retried either
    data = payloads_of(msg)
    if not data:
        raise ProtocolError("an evidence step needs the home's public key.")
    pk_msg = verifier.open(data[0], home_key=None)
    if not isinstance(pk_msg, HomePublicKey):
        raise ProtocolError("an evidence step starts with the lead's public key.")
    fp = key_fingerprint(pk_msg.public_key)
    keys = [verifier.open(b, home_key=fp) for b in data[1:]]
    if len(keys) != len(pk_msg.homes) or not all(isinstance(k, HomeBlindedKeys) for k in keys):
        raise ProtocolError(f"an evidence step needs one key list per home of the run's "
                            f"manifest ({len(pk_msg.homes)}). Got {len(keys)}.")
    role = EvidenceAgency(run_id=run_id, department=s.department, table=training.table_of(s),
                          layout=_layouts(s, [s.department])[s.department],
                          homes=[home_party(h) for h in pk_msg.homes],
                          lead=pk_msg.header.sender, backend=pk_msg.blinding)
    role.receive_public_key(pk_msg)
    signer = Signer(identity)
    out = [signer.seal(role.reblind_home_keys(k), home_key=fp)
           for k in keys if isinstance(k, HomeBlindedKeys)]
    out += [signer.seal(role.blinded_records(), home_key=fp),
            signer.seal(role.payloads(), home_key=fp)]
    return _reply(out, {"records": float(role.size)})


def _resume(s: NodeSettings, context: Context, run: str
            ) -> tuple[HomeAgency, AgencyIdentity, Verifier]:
    state = _load(context, run)
    identity, roster, verifier = _trust(s)
    if roster.fingerprint() != state.roster_fingerprint:
        raise ProtocolError("the roster changed during the run.")
    return state.role, identity, verifier


def _home_reblind(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    run = config_str(msg, "run")
    role, identity, verifier = _resume(s, context, run)
    signer, fp = Signer(identity), role.key_fingerprint
    out = []
    for data in payloads_of(msg):
        m = verifier.open(data, home_key=fp)
        if not isinstance(m, EvidenceBlindedRecords):
            raise ProtocolError("home_reblind carries only departments' blinded records.")
        out.append(signer.seal(role.reblind_records(m), home_key=fp))
    _store(context, run, _HomeRun(role=role, roster_fingerprint=verifier.roster.fingerprint()))
    return _reply(out)


def _home_results(s: NodeSettings, msg: Message, context: Context) -> RecordDict:
    run = config_str(msg, "run")
    role, identity, _verifier = _resume(s, context, run)
    covered: set[str] = set()
    for data in payloads_of(msg):
        m = decode_message(data)  # the coordinator's own message: it signs nothing
        if not isinstance(m, CoordinatorResults):
            raise ProtocolError("home_results carries only the coordinator's results.")
        role.receive_results(m)
        covered.update(m.departments)
    # departments left out of the run (their node did not reply): no evidence from them
    missing = [d for d in role.layouts if d not in covered]
    if missing:
        _log.warning("%s: no evidence this year from %d department(s) (their nodes did not "
                     "reply)", s.agency_id, len(missing))
    schema = training.schema_of(s)
    resolved = resolve_home(role, schema=schema, students=training.table_of(s))
    evidence_cols = [i.name for i in schema.indicators
                     if schema.departments[i.department].side == "evidence"
                     and i.name in resolved.columns]
    buffer = io.BytesIO()
    pd.DataFrame(resolved[["student_id", *evidence_cols]]).to_parquet(buffer, index=False)
    live = [d for d in role.layouts if d in covered]
    counts = compute_counts(schema, resolved, tuple(live))
    ledger = NodePrivacyLedger.load(context, s.out)  # noised and charged to the home's budget
    before = ledger.epsilon_total
    rel = noised_counts(s, ledger, {k: float(v) for k, v in counts.items()})
    ledger.save(context)
    agg = HomeAggregates(
        header=role.guard.header(recipient=COORDINATOR, kind=MessageKind.HOME_AGGREGATES),
        names=tuple(sorted(rel)), values=tuple(int(rel[k]) for k in sorted(rel)),
        epsilon_milli=round((ledger.epsilon_total - before) * 1000))
    reply = Signer(identity).seal(agg, home_key=role.key_fingerprint)
    s.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(s.out / "evidence.parquet", buffer.getvalue(), mode=0o600)
    training.write_sources(s.out, covered=live, missing=missing)
    _store(context, run, None)  # the run's keys are gone with the role
    return _reply([reply])

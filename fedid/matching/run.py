"""The in-process driver: a whole matching round in one process, every role in it.

:func:`match_in_process` builds the roles of :mod:`fedid.matching.protocol`, gives every
agency a fresh identity key and the run a roster (:mod:`privacy.identity`), and passes
every message through an :class:`~fedid.matching.transport.InMemoryTransport` as signed
bytes, verified by its receiver (:mod:`fedid.matching.auth`); ``authenticate=False``
measures the protocol without signatures. It returns per home agency its students with the
evidence merged (:mod:`fedid.matching.resolve`), the coordinator's released aggregates, the
leakage record and per-phase timings; :mod:`fedid.matching.output` writes them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd

from fedid.errors import ConfigError
from fedid.matching.aggregates import ReleaseConfig, compute_counts, release_counts
from fedid.matching.auth import Signer, Verifier
from fedid.matching.coordinator import Coordinator, CoordinatorView
from fedid.matching.evidence import EvidenceAgency
from fedid.matching.home import HomeAgency
from fedid.matching.leakage import PartyLeakage, leakage_record
from fedid.matching.messages import HomeAggregates, Message, MessageKind
from fedid.matching.policy import (
    MASK_BITS,
    DepartmentLayout,
    EvidencePolicy,
    build_layouts,
    default_policies,
)
from fedid.matching.protocol import (
    COORDINATOR,
    DEFAULT_BLINDING,
    Blinding,
    EvidenceKeys,
    Grouping,
    HomeKeyring,
    blinding_backend,
    evidence_party,
    home_party,
    new_run_id,
)
from fedid.matching.resolve import resolve_home
from fedid.matching.transport import InMemoryTransport
from fedid.schema import Schema
from privacy.identity import AgencyIdentity, Roster
from privacy.paillier import DEFAULT_KEYSIZE

__all__ = [
    "MatchingConfig",
    "MatchingResult",
    "RunGroup",
    "match_in_process",
]

_LOG = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """Run options: key size, grouping of home agencies, evidence scalars, release rules."""

    paillier_bits: int = DEFAULT_KEYSIZE
    grouping: Grouping = "province"
    evidence_keys: EvidenceKeys = "per_department"
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    policies: Mapping[str, EvidencePolicy] | None = None
    authenticate: bool = True
    blinding: Blinding = DEFAULT_BLINDING

    def __post_init__(self) -> None:
        if self.grouping not in ("province", "per_agency"):
            raise ConfigError(f"grouping must be province|per_agency. Got {self.grouping!r}.")
        blinding_backend(self.blinding)
        if self.evidence_keys not in ("per_department", "shared"):
            raise ConfigError(
                f"evidence_keys must be per_department|shared. Got {self.evidence_keys!r}.")


@dataclass
class RunGroup:
    """The roles of one run (kept for incremental resolution)."""

    run_id: bytes
    keyring: HomeKeyring
    homes: dict[str, HomeAgency]
    evidence: dict[str, EvidenceAgency]
    coordinator: Coordinator
    key_departments: tuple[str, ...]


@dataclass
class MatchingResult:
    resolved: dict[str, pd.DataFrame]
    released: dict[str, dict[str, int]]
    released_epsilon: dict[str, float]
    leakage: list[PartyLeakage]
    timings: dict[str, float]
    bytes_received: dict[str, int]
    views: list[CoordinatorView]
    groups: list[RunGroup]
    transport: InMemoryTransport


class _Wire:
    """Delivers each message through the transport, signed by its sender agency and verified
    by its receiver when ``identities`` is set (C signs nothing)."""

    def __init__(self, transport: InMemoryTransport,
                 identities: Mapping[str, AgencyIdentity] | None) -> None:
        self.transport = transport
        self.signers = ({p: Signer(i) for p, i in identities.items()}
                        if identities is not None else None)
        self.verifier = (Verifier(Roster.of(i.public for i in identities.values()))
                         if identities is not None else None)
        self.seconds = 0.0  # in send: (de)serialising, and signing and verifying if set

    def send(self, msg: M, *, home_key: bytes) -> M:
        t0 = time.perf_counter()
        try:
            sender = msg.header.sender
            if self.signers is None or self.verifier is None or sender == COORDINATOR:
                return self.transport.deliver(msg)
            return self.transport.deliver_signed(msg, signer=self.signers[sender],
                                                 verifier=self.verifier, home_key=home_key)
        finally:
            self.seconds += time.perf_counter() - t0


class _Clock:
    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] += time.perf_counter() - t0


def _run_group(
    *, schema: Schema, homes: Mapping[str, pd.DataFrame], departments: Mapping[str, pd.DataFrame],
    config: MatchingConfig, layouts: Mapping[str, DepartmentLayout], wire: _Wire, clock: _Clock,
) -> tuple[RunGroup, dict[str, pd.DataFrame]]:
    run_id = new_run_id()
    with clock.phase("keygen"):
        keyring = HomeKeyring.generate(paillier_bits=config.paillier_bits,
                                       backend=config.blinding)
    deps = tuple(d for d in layouts if d in departments)
    module = blinding_backend(config.blinding)
    shared = module.BlindingKey.generate() if config.evidence_keys == "shared" else None
    key_deps = deps[:1] if shared is not None else deps
    domain_of = {d: (deps[0] if shared is not None else d) for d in deps}
    names = list(homes)
    lead = f"home:{names[0]}"
    with clock.phase("setup"):
        h_roles = {a: HomeAgency(run_id=run_id, agency_id=a, students=homes[a], keyring=keyring,
                                 layouts={d: layouts[d] for d in deps}, key_departments=key_deps,
                                 is_lead=(i == 0)) for i, a in enumerate(names)}
        e_roles = {d: EvidenceAgency(run_id=run_id, department=d, table=departments[d],
                                     layout=layouts[d], homes=[f"home:{a}" for a in names],
                                     lead=lead, blinding=shared, backend=config.blinding,
                                     reblinds_home_keys=d in key_deps) for d in deps}
        coord = Coordinator(run_id=run_id, homes=[f"home:{a}" for a in names], lead=lead,
                            layouts={d: layouts[d] for d in deps}, domain_of=domain_of)
    lead_role = h_roles[names[0]]
    fp = keyring.public_key.fingerprint

    def send(msg: M) -> M:
        return wire.send(msg, home_key=fp)

    for pk_msg in lead_role.public_key_messages(
            [COORDINATOR, *(evidence_party(d) for d in deps)], homes=names):
        got = send(pk_msg)
        if got.header.recipient == COORDINATOR:
            coord.receive_public_key(got)
        else:
            e_roles[got.header.recipient.removeprefix("evidence:")].receive_public_key(got)
    with clock.phase("home_blind_keys"):
        key_msgs = {a: h.blinded_keys() for a, h in h_roles.items()}
    for d in deps:
        e = e_roles[d]
        if d in key_deps:
            for a in names:
                for key_msg in key_msgs[a]:
                    if key_msg.header.recipient != e.party:
                        continue
                    with clock.phase("evidence_reblind_home_keys"):
                        out = e.reblind_home_keys(send(key_msg))
                    coord.receive_reblinded_home_keys(send(out))
        with clock.phase("evidence_blind_records"):
            rec = e.blinded_records()
        with clock.phase("home_reblind_records"):
            rr = lead_role.reblind_records(send(rec))
        coord.receive_reblinded_records(send(rr))
        with clock.phase("evidence_encrypt"):
            pay = e.payloads()
        with clock.phase("coordinator_join"):
            coord.receive_payloads(send(pay))
    with clock.phase("coordinator_mask"):
        results = coord.results()
    resolved: dict[str, pd.DataFrame] = {}
    for res_msg in results:
        a = res_msg.header.recipient.removeprefix("home:")
        with clock.phase("home_decrypt"):
            h_roles[a].receive_results(send(res_msg))
        with clock.phase("home_merge"):
            resolved[a] = resolve_home(h_roles[a], schema=schema, students=homes[a])
        counts = compute_counts(schema, resolved[a], deps)
        rel = release_counts(counts, config.release)
        agg = HomeAggregates(
            header=h_roles[a].guard.header(recipient=COORDINATOR,
                                           kind=MessageKind.HOME_AGGREGATES),
            names=rel.names, values=rel.values, epsilon_milli=round(rel.epsilon * 1000))
        coord.receive_aggregates(send(agg))
    group = RunGroup(run_id=run_id, keyring=keyring, homes=h_roles, evidence=e_roles,
                     coordinator=coord, key_departments=key_deps)
    return group, resolved


def match_in_process(
    *,
    schema: Schema,
    homes: Mapping[str, pd.DataFrame],
    departments: Mapping[str, pd.DataFrame],
    config: MatchingConfig | None = None,
    transport: InMemoryTransport | None = None,
) -> MatchingResult:
    """Resolve every home agency's students against every department (one process).

    ``homes``: agency id -> education table; ``departments``: department -> its table.
    Raises :class:`~fedid.errors.ProtocolError` (and returns nothing) if any message is
    rejected.
    """
    config = config or MatchingConfig()
    if not homes:
        raise ConfigError("match_in_process needs at least one home agency. Got 0.")
    policies = config.policies or default_policies(schema)
    layouts = build_layouts(schema, {d: p for d, p in policies.items() if d in departments})
    if not layouts:
        raise ConfigError("no department table matches a release policy")
    transport = transport or InMemoryTransport()
    identities = None
    if config.authenticate:
        identities = {home_party(a): AgencyIdentity.generate(agency=a, kind="education")
                      for a in homes}
        identities |= {evidence_party(d): AgencyIdentity.generate(
            agency=f"agency-{d}", kind="department", department=d) for d in layouts}
    wire = _Wire(transport, identities)
    clock = _Clock()
    groups_in = ([dict(homes)] if config.grouping == "province"
                 else [{a: t} for a, t in homes.items()])
    resolved: dict[str, pd.DataFrame] = {}
    groups: list[RunGroup] = []
    for g in groups_in:
        group, res = _run_group(schema=schema, homes=g, departments=departments, config=config,
                                layouts=layouts, wire=wire, clock=clock)
        groups.append(group)
        resolved.update(res)
    clock.t["transport_within_phases"] = wire.seconds
    views = [g.coordinator.view for g in groups]
    released: dict[str, dict[str, int]] = {}
    eps: dict[str, float] = {}
    home_sizes: dict[str, int] = {}
    dep_sizes: dict[str, int] = {}
    for v in views:
        released.update({k.removeprefix("home:"): r for k, r in v.released.items()})
        eps.update({k.removeprefix("home:"): e for k, e in v.released_epsilon.items()})
        home_sizes.update(v.home_sizes)
        dep_sizes.update(v.department_sizes)
    leak = leakage_record(transport.entries, home_sizes=home_sizes, dep_sizes=dep_sizes,
                          grouping=config.grouping, evidence_keys=config.evidence_keys,
                          mask_bits=MASK_BITS)
    return MatchingResult(resolved=resolved, released=released, released_epsilon=eps,
                          leakage=leak, timings=dict(clock.t),
                          bytes_received=transport.bytes_received(), views=views,
                          groups=groups, transport=transport)

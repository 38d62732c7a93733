"""A whole matching round in one process: every home agency against every department.

:func:`run_matching` builds the roles of :mod:`fedid.matching.protocol`, passes every
message through an :class:`~fedid.matching.transport.InMemoryTransport` (so through
bytes), and returns per home agency its students with the evidence merged, the
coordinator's released aggregates, the leakage record and per-phase timings.
:func:`write_outputs` writes them atomically (a temporary directory renamed into place).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fedid.atomic import atomic_directory
from fedid.errors import ConfigError
from fedid.matching.aggregates import ReleaseConfig, compute_counts, release_counts
from fedid.matching.coordinator import Coordinator, CoordinatorView
from fedid.matching.evidence import EvidenceAgency
from fedid.matching.home import HomeAgency, canonical_keys
from fedid.matching.leakage import PartyLeakage, leakage_record
from fedid.matching.merge import decode_positions, merge_evidence
from fedid.matching.messages import HomeAggregates, MessageKind
from fedid.matching.policy import (
    MASK_BITS,
    DepartmentLayout,
    EvidencePolicy,
    build_layouts,
    default_policies,
)
from fedid.matching.protocol import (
    COORDINATOR,
    EvidenceKeys,
    Grouping,
    HomeKeyring,
    evidence_party,
    new_run_id,
)
from fedid.matching.transport import InMemoryTransport
from fedid.schema import Schema
from privacy.blinding import BlindingKey
from privacy.paillier import DEFAULT_KEYSIZE

__all__ = [
    "MatchingConfig",
    "MatchingResult",
    "RunGroup",
    "province_totals",
    "resolve_home",
    "resolve_students",
    "run_matching",
    "write_outputs",
]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """Run options: key size, grouping of home agencies, evidence scalars, release rules."""

    paillier_bits: int = DEFAULT_KEYSIZE
    grouping: Grouping = "province"
    evidence_keys: EvidenceKeys = "per_department"
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    policies: Mapping[str, EvidencePolicy] | None = None

    def __post_init__(self) -> None:
        if self.grouping not in ("province", "per_agency"):
            raise ConfigError(f"grouping must be province|per_agency. Got {self.grouping!r}.")
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


def resolve_students(
    *, schema: Schema, layouts: Mapping[str, DepartmentLayout], students: pd.DataFrame,
    results: Mapping[str, tuple[np.ndarray, list[int]]], position: Mapping[str, int],
    key_count: int,
) -> pd.DataFrame:
    """Students with the decrypted evidence merged; ``position``: canonical ID -> key slot."""
    sids = canonical_keys(students, "student_id", required=True)
    gids = [canonical_keys(students, c, required=False) for c in ("guardian1_id", "guardian2_id")]

    def pos(ids: np.ndarray) -> np.ndarray:
        return np.asarray([-1 if k is None else position[k] for k in ids.tolist()],
                          dtype=np.int64)

    fields = {dep: decode_positions(layouts[dep], p, payloads, key_count)
              for dep, (p, payloads) in results.items()}
    s_pos = pos(sids)
    g_pos = [pos(g) for g in gids]
    matched: dict[str, np.ndarray] = {}
    for dep in layouts:
        hit = np.zeros(key_count + 1, dtype=bool)  # last entry: "no key" (-1)
        if dep in results:
            hit[results[dep][0]] = True
        m = hit[s_pos]
        for g in g_pos:
            m = m | hit[g]
        matched[dep] = m
    return merge_evidence(schema=schema, students=students.reset_index(drop=True),
                          layouts=layouts, fields_by_department=fields,
                          student_pos=s_pos, guardian_pos=g_pos, matched_by_department=matched)


def resolve_home(home: HomeAgency, *, schema: Schema, students: pd.DataFrame) -> pd.DataFrame:
    """The home agency's students with the evidence of the full run merged (schema rules)."""
    return resolve_students(schema=schema, layouts=home.layouts, students=students,
                            results=home.results, position=home.position,
                            key_count=home.key_count)


def _run_group(
    *, schema: Schema, homes: Mapping[str, pd.DataFrame], departments: Mapping[str, pd.DataFrame],
    config: MatchingConfig, layouts: Mapping[str, DepartmentLayout], transport: InMemoryTransport,
    clock: _Clock,
) -> tuple[RunGroup, dict[str, pd.DataFrame]]:
    run_id = new_run_id()
    with clock.phase("keygen"):
        keyring = HomeKeyring.generate(paillier_bits=config.paillier_bits)
    deps = tuple(d for d in layouts if d in departments)
    shared = BlindingKey.generate() if config.evidence_keys == "shared" else None
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
                                     lead=lead, blinding=shared,
                                     reblinds_home_keys=d in key_deps) for d in deps}
        coord = Coordinator(run_id=run_id, homes=[f"home:{a}" for a in names], lead=lead,
                            layouts={d: layouts[d] for d in deps}, domain_of=domain_of)
    lead_role = h_roles[names[0]]
    for pk_msg in lead_role.public_key_messages(
            [COORDINATOR, *(evidence_party(d) for d in deps)]):
        got = transport.deliver(pk_msg)
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
                        out = e.reblind_home_keys(transport.deliver(key_msg))
                    coord.receive_reblinded_home_keys(transport.deliver(out))
        with clock.phase("evidence_blind_records"):
            rec = e.blinded_records()
        with clock.phase("home_reblind_records"):
            rr = lead_role.reblind_records(transport.deliver(rec))
        coord.receive_reblinded_records(transport.deliver(rr))
        with clock.phase("evidence_encrypt"):
            pay = e.payloads()
        with clock.phase("coordinator_join"):
            coord.receive_payloads(transport.deliver(pay))
    with clock.phase("coordinator_mask"):
        results = coord.results()
    resolved: dict[str, pd.DataFrame] = {}
    for res_msg in results:
        a = res_msg.header.recipient.removeprefix("home:")
        with clock.phase("home_decrypt"):
            h_roles[a].receive_results(transport.deliver(res_msg))
        with clock.phase("home_merge"):
            resolved[a] = resolve_home(h_roles[a], schema=schema, students=homes[a])
        counts = compute_counts(schema, resolved[a], deps)
        rel = release_counts(counts, config.release)
        agg = HomeAggregates(
            header=h_roles[a].guard.header(recipient=COORDINATOR,
                                           kind=MessageKind.HOME_AGGREGATES),
            names=rel.names, values=rel.values, epsilon_milli=round(rel.epsilon * 1000))
        coord.receive_aggregates(transport.deliver(agg))
    group = RunGroup(run_id=run_id, keyring=keyring, homes=h_roles, evidence=e_roles,
                     coordinator=coord, key_departments=key_deps)
    return group, resolved


def run_matching(
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
        raise ConfigError("run_matching needs at least one home agency. Got 0.")
    policies = config.policies or default_policies(schema)
    layouts = build_layouts(schema, {d: p for d, p in policies.items() if d in departments})
    if not layouts:
        raise ConfigError("no department table matches a release policy")
    transport = transport or InMemoryTransport()
    clock = _Clock()
    groups_in = ([dict(homes)] if config.grouping == "province"
                 else [{a: t} for a, t in homes.items()])
    resolved: dict[str, pd.DataFrame] = {}
    groups: list[RunGroup] = []
    for g in groups_in:
        group, res = _run_group(schema=schema, homes=g, departments=departments, config=config,
                                layouts=layouts, transport=transport, clock=clock)
        groups.append(group)
        resolved.update(res)
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


def province_totals(released: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per count: the sum over home agencies of released cells and how many were suppressed
    (a total with suppressed cells is a lower bound)."""
    out: dict[str, dict[str, int]] = {}
    for counts in released.values():
        for name, value in counts.items():
            cell = out.setdefault(name, {"total": 0, "suppressed_cells": 0})
            if value < 0:
                cell["suppressed_cells"] += 1
            else:
                cell["total"] += value
    return out


def write_outputs(result: MatchingResult, out: Path) -> None:
    """Write resolved tables, released aggregates, leakage and timings; all or nothing."""
    with atomic_directory(Path(out)) as tmp:
        (tmp / "resolved").mkdir()
        for agency, frame in result.resolved.items():
            frame.to_parquet(tmp / "resolved" / f"{agency}.parquet", index=False)
        summary = {"released": result.released, "released_epsilon": result.released_epsilon,
                   "province_totals": province_totals(result.released),
                   "timings_s": result.timings, "bytes_received": result.bytes_received}
        (tmp / "aggregates.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        (tmp / "leakage.json").write_text(
            json.dumps([p.to_dict() for p in result.leakage], indent=2, ensure_ascii=False))

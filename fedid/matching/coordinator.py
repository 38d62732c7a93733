"""Coordinator role: steps 3, 5, 6 (receiving), 7 and 8 of :mod:`fedid.matching.protocol`.

C holds no secret key of the run. It joins doubly blinded tokens, masks every slot not
matched to the receiving home agency and forwards ciphertexts; it learns which
pseudonymous key positions matched which departments, never an ID or a value.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedid.errors import CryptoError
from fedid.matching.evidence import split_points
from fedid.matching.messages import (
    CoordinatorResults,
    EvidencePayloads,
    EvidenceReblindedHomeKeys,
    HomeAggregates,
    HomePublicKey,
    HomeReblindedRecords,
    MessageKind,
)
from fedid.matching.policy import MASK_BITS, DepartmentLayout
from fedid.matching.protocol import COORDINATOR, MAX_COUNT, StepGuard, evidence_party
from privacy.blinding_x25519 import POINT_BYTES
from privacy.paillier import PaillierPublicKey

__all__ = ["Coordinator", "CoordinatorView"]

_LOG = logging.getLogger(__name__)
_IDENTITY = bytes(POINT_BYTES)


@dataclass
class CoordinatorView:
    """What C holds after a run (pseudonymous): per home, per department, matched positions."""

    home_sizes: dict[str, int] = field(default_factory=dict)
    department_sizes: dict[str, int] = field(default_factory=dict)
    matched_positions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    released: dict[str, dict[str, int]] = field(default_factory=dict)
    released_epsilon: dict[str, float] = field(default_factory=dict)


@dataclass
class _Matches:
    ciphertexts: list[int]
    slots: int
    # per home: (ciphertext index, slot, position) arrays
    per_home: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


class Coordinator:
    """The coordinator of one run.

    ``domain_of`` maps each department to the department whose scalar its tokens use
    (itself for ``evidence_keys="per_department"``, the first department for ``"shared"``).
    """

    def __init__(
        self,
        *,
        run_id: bytes,
        homes: Sequence[str],
        lead: str,
        layouts: Mapping[str, DepartmentLayout],
        domain_of: Mapping[str, str] | None = None,
    ) -> None:
        self.guard = StepGuard(run_id=run_id, party=COORDINATOR)
        self.homes = tuple(homes)
        self.lead = lead
        self.layouts = dict(layouts)
        self.departments = tuple(self.layouts)
        self.domain_of = dict(domain_of or {d: d for d in self.departments})
        self._evidence = frozenset(evidence_party(d) for d in self.departments)
        self._public_key: PaillierPublicKey | None = None
        self._home_lists: dict[tuple[str, str, int], bytes] = {}
        self._index_cache: dict[tuple[str, str, int], dict[bytes, int]] = {}
        self._records: dict[str, list[bytes]] = {}
        self._matches: dict[str, _Matches] = {}
        self.view = CoordinatorView()

    # -- step 1 -------------------------------------------------------------------
    def receive_public_key(self, msg: HomePublicKey) -> None:
        self.guard.accept(msg, senders={self.lead})
        self.guard.require(self._public_key is None, "second public key for the run")
        try:
            self._public_key = PaillierPublicKey.from_bytes(msg.public_key)
        except (CryptoError, ValueError) as exc:
            raise self.guard.fail(f"invalid public key: {exc}") from exc

    def drop_department(self, dep: str) -> tuple[str, ...]:
        """Leave out a department that failed before its payloads were joined.

        Departments whose tokens use ``dep``'s scalar (shared evidence keys) cannot be
        joined without it and are left out too (drop before receiving any of their
        records). Returns every department left out; () if ``dep`` already was.
        """
        self.guard.live()
        if dep not in self.layouts and dep in self.domain_of:
            return ()  # already left out (it shared the key of a department dropped before)
        self.guard.require(dep in self.layouts, f"unknown department {dep!r}")
        gone = tuple(d for d in self.departments if d == dep or self.domain_of.get(d) == dep)
        self.guard.require(not any(d in self._matches for d in gone),
                           f"{dep}: its evidence is already joined")
        for d in gone:
            del self.layouts[d]
            self._records.pop(d, None)
            self.view.department_sizes.pop(d, None)
        self.departments = tuple(d for d in self.departments if d not in gone)
        self._evidence = frozenset(evidence_party(d) for d in self.departments)
        for key in [k for k in self._home_lists if k[0] == dep]:
            del self._home_lists[key]
            self._index_cache.pop(key, None)
        return gone

    # -- step 3 -------------------------------------------------------------------
    def receive_reblinded_home_keys(self, msg: EvidenceReblindedHomeKeys) -> None:
        batch = self.guard.accept(msg, senders=self._evidence, tag=msg.home)
        dep = msg.header.sender.removeprefix("evidence:")
        self.guard.require(self.domain_of.get(dep) == dep,
                           f"{dep} is not a key domain of this run")
        self.guard.require(msg.home in self.homes, f"unknown home agency {msg.home!r}")
        self._check_points(msg.points)
        self._home_lists[(dep, msg.home, batch)] = msg.points
        if batch == 0:
            self.view.home_sizes[msg.home] = msg.count

    # -- step 5 -------------------------------------------------------------------
    def receive_reblinded_records(self, msg: HomeReblindedRecords) -> None:
        self.guard.accept(msg, senders={self.lead}, tag=msg.department)
        self.guard.require(msg.department in self.layouts,
                           f"unknown department {msg.department!r}")
        self._check_points(msg.points)
        self._records[msg.department] = split_points(msg.points)
        self.view.department_sizes[msg.department] = msg.count

    # -- step 6 -------------------------------------------------------------------
    def receive_payloads(self, msg: EvidencePayloads) -> None:
        """Check the ciphertexts and join the department's records to every home list."""
        self.guard.accept(msg, senders=self._evidence)
        dep = msg.header.sender.removeprefix("evidence:")
        pk = self.guard.need(self._public_key, "payloads before the public key")
        self.guard.require(msg.key_fingerprint == pk.fingerprint,
                           f"{dep}: payloads encrypted under another key")
        records = self.guard.need(self._records.get(dep),
                                  f"{dep}: payloads before its reblinded records")
        self.guard.require(msg.record_count == len(records),
                           f"{dep}: {msg.record_count} payload records for {len(records)} tokens")
        k = self.layouts[dep].slots(pk.bits)
        self.guard.require(msg.slots == k, f"{dep}: {msg.slots} slots per ciphertext, expected {k}")
        self.guard.require(len(msg.ciphertexts) == -(-len(records) // k),
                           f"{dep}: {len(msg.ciphertexts)} ciphertexts for {len(records)} records")
        try:
            pk.validate_received(msg.ciphertexts)
        except CryptoError as exc:
            raise self.guard.fail(f"{dep}: {exc}") from exc
        per_home = {h: self._join(dep, h, records, k, batch=0) for h in self.homes}
        self._matches[dep] = _Matches(list(msg.ciphertexts), k, per_home)
        for h, (_, _, pos) in per_home.items():
            self.view.matched_positions.setdefault(h, {})[dep] = pos
        if self.domain_of[dep] == dep and list(self.domain_of.values()).count(dep) == 1:
            for h in self.homes:  # per-department scalars: this index is not needed again
                self._index_cache.pop((dep, h, 0), None)

    def _index(self, domain: str, home: str, batch: int) -> dict[bytes, int]:
        key = (domain, home, batch)
        idx = self._index_cache.get(key)
        if idx is None:
            pts = self.guard.need(self._home_lists.get(key),
                                  f"no key list of {home} from {domain}")
            idx = {p: i for i, p in enumerate(split_points(pts))}
            self._index_cache[key] = idx
        return idx

    def _join(self, dep: str, home: str, records: list[bytes], k: int, *, batch: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = self._index(self.domain_of[dep], home, batch)
        rec: list[int] = []
        pos: list[int] = []
        for i, tok in enumerate(records):
            p = idx.get(tok)
            if p is not None:
                rec.append(i)
                pos.append(p)
        r = np.asarray(rec, dtype=np.int64)
        return ((r // k).astype(np.uint32), (r % k).astype(np.uint32),
                np.asarray(pos, dtype=np.uint32))

    def _check_points(self, points: bytes) -> None:
        # Points are validated by libsodium when the next party blinds them; here C only
        # refuses the identity element, which would join every list to every other.
        for i in range(0, len(points), POINT_BYTES):
            if points[i : i + POINT_BYTES] == _IDENTITY:
                raise self.guard.fail("identity point in a token list")
        self.guard.distinct(points, "token list")

    # -- step 7 -------------------------------------------------------------------
    def batch_matches(self, home: str, batch: int) -> dict[str, _Matches]:
        """Join a later key list (batch > 0) of one home against the stored records."""
        self.guard.live()
        self.guard.require(batch > 0, "batch matches need batch > 0")
        out: dict[str, _Matches] = {}
        for dep, m in self._matches.items():
            joined = self._join(dep, home, self._records[dep], m.slots, batch=batch)
            out[dep] = _Matches(m.ciphertexts, m.slots, {home: joined})
        for dep in self.departments:
            self._index_cache.pop((self.domain_of[dep], home, batch), None)
        return out

    def results(self, *, batch: int = 0, homes: Sequence[str] | None = None,
                matches: Mapping[str, _Matches] | None = None) -> list[CoordinatorResults]:
        """One message per home agency: masked ciphertexts holding its matches."""
        self.guard.live()
        pk = self.guard.need(self._public_key, "results before the public key")
        table = self._matches if matches is None else matches
        self.guard.require(set(table) == set(self.departments) or batch > 0,
                           "results before every department's payloads")
        plan: list[tuple[str, int, int, int]] = []  # (home, dep index, ct index, mask) order
        masks: list[int] = []
        per_home_parts: dict[str, list[tuple[int, int, np.ndarray, np.ndarray]]] = {}
        targets = tuple(self.homes if homes is None else homes)
        for h in targets:
            parts: list[tuple[int, int, np.ndarray, np.ndarray]] = []
            for d_i, dep in enumerate(self.departments):
                m = table.get(dep)
                if m is None:
                    continue
                ct_idx, slot, pos = m.per_home[h]
                if not len(ct_idx):
                    continue
                lay = self.layouts[dep]
                order = np.argsort(ct_idx, kind="stable")
                groups, starts = np.unique(ct_idx[order], return_index=True)
                for g, sel in zip(groups.tolist(), np.split(order, starts[1:]), strict=True):
                    matched = set(slot[sel].tolist())
                    mask = 0
                    for s in range(m.slots):
                        if s not in matched:
                            mask |= secrets.randbits(lay.width + MASK_BITS) << (s * lay.slot_bits)
                    plan.append((h, d_i, int(g), len(masks)))
                    masks.append(mask)
                    parts.append((d_i, int(g), slot[sel], pos[sel]))
            per_home_parts[h] = parts
        enc = pk.encrypt_ints(masks) if masks else []
        out: list[CoordinatorResults] = []
        cursor = 0
        for h in targets:
            cts: list[int] = []
            ct_dep: list[int] = []
            m_ct: list[np.ndarray] = []
            m_slot: list[np.ndarray] = []
            m_pos: list[np.ndarray] = []
            for j, (d_i, g, slot, pos) in enumerate(per_home_parts[h]):
                _, _, _, mask_i = plan[cursor + j]
                src = table[self.departments[d_i]].ciphertexts[g]
                cts.append(src * enc[mask_i] % pk.n_square)
                ct_dep.append(d_i)
                m_ct.append(np.full(len(slot), j, dtype=np.uint32))
                m_slot.append(slot)
                m_pos.append(pos)
            cursor += len(per_home_parts[h])
            empty = np.zeros(0, dtype=np.uint32)
            out.append(CoordinatorResults(
                header=self.guard.header(recipient=h, kind=MessageKind.COORDINATOR_RESULTS,
                                         batch=batch),
                departments=self.departments,
                department_slots=np.asarray(
                    [table[d].slots if d in table else 0 for d in self.departments],
                    dtype=np.uint32),
                ciphertexts=tuple(cts),
                ciphertext_department=np.asarray(ct_dep, dtype=np.uint32),
                match_ciphertext=np.concatenate(m_ct) if m_ct else empty,
                match_slot=np.concatenate(m_slot) if m_slot else empty,
                match_position=np.concatenate(m_pos) if m_pos else empty))
        return out

    # -- step 8 -------------------------------------------------------------------
    def receive_aggregates(self, msg: HomeAggregates) -> None:
        self.guard.accept(msg, senders=frozenset(self.homes))
        g = self.guard
        g.require(len(msg.names) == len(msg.values), "aggregate names and values differ")
        g.require(len(set(msg.names)) == len(msg.names), "aggregates repeat a name")
        bad = [v for v in msg.values if not -1 <= v <= MAX_COUNT]
        g.require(not bad, f"released counts must be -1 (suppressed) or in [0, {MAX_COUNT}]. "
                           f"Got {bad[:1]}")
        g.require(msg.epsilon_milli <= 1_000_000, f"released epsilon must be <= 1000. "
                                                  f"Got {msg.epsilon_milli / 1000}.")
        self.view.released[msg.header.sender] = dict(zip(msg.names, msg.values, strict=True))
        self.view.released_epsilon[msg.header.sender] = msg.epsilon_milli / 1000

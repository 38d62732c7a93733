"""Home agency role (education side): steps 1, 2, 5 and 8 of :mod:`fedid.matching.protocol`.

Transport-free: methods take received messages and return the messages to send. The
agency keeps its key positions (a secret random order of its distinct student and
guardian IDs) and maps decrypted matches back to its students.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fedid.errors import CryptoError, DataValidationError, IdNumberError
from fedid.ids import to_canonical
from fedid.matching.evidence import split_points
from fedid.matching.messages import (
    CoordinatorResults,
    EvidenceBlindedRecords,
    HomeBlindedKeys,
    HomePublicKey,
    HomeReblindedRecords,
    MessageKind,
)
from fedid.matching.policy import DepartmentLayout
from fedid.matching.protocol import (
    COORDINATOR,
    HomeKeyring,
    StepGuard,
    evidence_party,
    hash_domain,
    home_party,
)

__all__ = ["HomeAgency", "canonical_keys"]

_LOG = logging.getLogger(__name__)


def canonical_keys(frame: pd.DataFrame, column: str, *, required: bool) -> np.ndarray:
    """Canonical 18-digit IDs of a column (object array, None where null and allowed)."""
    raw = frame[column]
    null = raw.isna().to_numpy()
    if required and null.any():
        raise DataValidationError(f"column {column}: {int(null.sum())} null IDs")
    out = np.full(len(raw), None, dtype=object)
    if (~null).any():
        try:
            out[~null] = to_canonical(raw[~null].astype(str).to_numpy())
        except IdNumberError as exc:
            raise DataValidationError(f"column {column}: {exc}") from exc
    return out


class HomeAgency:
    """One education-side agency in one run.

    ``students`` has ``student_id``, ``guardian1_id``, ``guardian2_id`` (nullable).
    ``keyring`` is the education side's secrets for the run (shared in province mode).
    ``is_lead``: this agency publishes the key and reblinds the departments' records.
    ``key_departments``: the departments its blinded key list goes to (those that
    reblind home keys).
    """

    def __init__(
        self,
        *,
        run_id: bytes,
        agency_id: str,
        students: pd.DataFrame,
        keyring: HomeKeyring,
        layouts: Mapping[str, DepartmentLayout],
        key_departments: Sequence[str],
        is_lead: bool,
    ) -> None:
        self.agency_id = agency_id
        self.party = home_party(agency_id)
        self.guard = StepGuard(run_id=run_id, party=self.party)
        self._keyring = keyring
        self.layouts = dict(layouts)
        self.key_departments = tuple(key_departments)
        self.is_lead = is_lead
        self.student_ids = canonical_keys(students, "student_id", required=True)
        if len(set(self.student_ids.tolist())) != len(self.student_ids):
            raise DataValidationError(f"{agency_id}: student_id values must be unique")
        self.guardian_ids = [
            canonical_keys(students, c, required=False) for c in ("guardian1_id", "guardian2_id")
        ]
        keys = {k for k in self.student_ids.tolist()}
        for g in self.guardian_ids:
            keys.update(k for k in g.tolist() if k is not None)
        ordered = sorted(keys)
        perm = np.random.default_rng(secrets.randbits(128)).permutation(len(ordered))
        self._keys = [ordered[i] for i in perm]  # secret random order: positions reveal nothing
        self.position = {k: i for i, k in enumerate(self._keys)}
        self.results: dict[str, tuple[np.ndarray, list[int]]] = {}
        self._pending_results = True

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # -- step 1 -----------------------------------------------------------------------
    def public_key_messages(self, recipients: Sequence[str], *, homes: Sequence[str] = ()
                            ) -> list[HomePublicKey]:
        """Lead only: the run's Paillier public key and manifest (``homes``: the run's home
        agency ids; departments: this role's) to C, every evidence agency, every other home."""
        self.guard.require(self.is_lead, "only the lead home agency publishes the key")
        body = self._keyring.public_key.to_bytes()
        manifest = tuple(sorted(homes or [self.agency_id])), tuple(sorted(self.layouts))
        return [HomePublicKey(header=self.guard.header(recipient=r,
                                                       kind=MessageKind.HOME_PUBLIC_KEY),
                              public_key=body, homes=manifest[0], departments=manifest[1],
                              blinding=self._keyring.backend)
                for r in recipients]

    @property
    def key_fingerprint(self) -> bytes:
        """Fingerprint of the run's whole Paillier public key (``n`` and ``h``)."""
        return self._keyring.public_key.fingerprint

    # -- step 2 -----------------------------------------------------------------------
    def blinded_keys(self, *, keys: Sequence[str] | None = None, batch: int = 0
                     ) -> list[HomeBlindedKeys]:
        """Its distinct keys hashed and blinded with ``h``, to each key department."""
        ids = [k.encode("ascii") for k in (self._keys if keys is None else keys)]
        points = b"".join(self._keyring.blinding.hash_and_blind(
            ids, domain=hash_domain(self.guard.run_id)))
        return [HomeBlindedKeys(header=self.guard.header(
            recipient=evidence_party(d), kind=MessageKind.HOME_BLINDED_KEYS, batch=batch),
            points=points) for d in self.key_departments]

    # -- step 5 -----------------------------------------------------------------------
    def reblind_records(self, msg: EvidenceBlindedRecords) -> HomeReblindedRecords:
        """Lead only: a department's blinded records raised to ``h``, order kept, to C."""
        deps = frozenset(evidence_party(d) for d in self.layouts)
        batch = self.guard.accept(msg, senders=deps)
        self.guard.require(batch == 0, f"records are reblinded in batch 0 only. Got {batch}.")
        self.guard.require(self.is_lead, "only the lead home agency reblinds records")
        self.guard.distinct(msg.points, "department's record list")
        try:
            points = self._keyring.blinding.blind(split_points(msg.points))
        except CryptoError as exc:
            raise self.guard.fail(f"invalid point in a department's list: {exc}") from exc
        return HomeReblindedRecords(
            header=self.guard.header(recipient=COORDINATOR,
                                     kind=MessageKind.HOME_REBLINDED_RECORDS),
            department=msg.header.sender.removeprefix("evidence:"), points=b"".join(points))

    # -- step 7 (receiving) -----------------------------------------------------------
    def receive_results(self, msg: CoordinatorResults, *, key_count: int | None = None
                        ) -> dict[str, tuple[np.ndarray, list[int]]]:
        """Decrypt; return department -> (key positions, payloads) of the matched records."""
        self.guard.accept(msg, senders={COORDINATOR})
        g = self.guard
        g.require(set(msg.departments) <= set(self.layouts), "results name unknown departments")
        g.require(len(set(msg.departments)) == len(msg.departments), "results repeat a department")
        g.require(len(msg.department_slots) == len(msg.departments), "department slot count")
        n_ct = len(msg.ciphertexts)
        g.require(len(msg.ciphertext_department) == n_ct, "ciphertext department count")
        n_m = len(msg.match_ciphertext)
        g.require(len(msg.match_slot) == n_m and len(msg.match_position) == n_m,
                  "match arrays differ in length")
        if n_ct:
            g.require(int(msg.ciphertext_department.max()) < len(msg.departments),
                      "ciphertext department index out of range")
        if n_m:
            g.require(int(msg.match_ciphertext.max()) < n_ct, "match ciphertext out of range")
            limit = self.key_count if key_count is None else key_count
            g.require(int(msg.match_position.max()) < limit, "match position out of range")
            slots_of = msg.department_slots[msg.ciphertext_department[msg.match_ciphertext]]
            g.require(bool(np.all(msg.match_slot < slots_of)), "match slot out of range")
            pairs = msg.match_ciphertext.astype(np.int64) * 65536 + msg.match_slot
            g.require(len(np.unique(pairs)) == n_m, "two matches share a slot")
            dep_pos = (msg.ciphertext_department[msg.match_ciphertext].astype(np.int64)
                       * (1 << 32) + msg.match_position)
            g.require(len(np.unique(dep_pos)) == n_m,
                      "a key position matches two records of one department")
        try:
            self._keyring.public_key.validate_received(msg.ciphertexts)
            plain = self._keyring.private_key.decrypt_ints(msg.ciphertexts)
        except CryptoError as exc:
            raise g.fail(f"invalid ciphertext in results: {exc}") from exc
        bits = self._keyring.public_key.bits
        out: dict[str, tuple[list[int], list[int]]] = {}
        for ct, slot, pos in zip(msg.match_ciphertext.tolist(), msg.match_slot.tolist(),
                                 msg.match_position.tolist(), strict=True):
            dep = msg.departments[int(msg.ciphertext_department[ct])]
            lay = self.layouts[dep]
            k = lay.slots(bits)
            g.require(int(msg.department_slots[msg.departments.index(dep)]) == k,
                      f"{dep}: wrong slot count")
            value = (plain[ct] >> (slot * lay.slot_bits)) & ((1 << lay.slot_bits) - 1)
            g.require(value < (1 << lay.width), f"{dep}: matched slot carries a mask")
            entry = out.setdefault(dep, ([], []))
            entry[0].append(pos)
            entry[1].append(value)
        result = {d: (np.asarray(p, dtype=np.int64), v) for d, (p, v) in out.items()}
        if msg.header.step < 16:
            self.results = result
        _LOG.info("%s: %d matched records decrypted", self.agency_id, n_m)
        return result

"""Evidence agency role (a department): steps 3, 4 and 6 of :mod:`fedid.matching.protocol`.

Transport-free: each method takes the received message and returns the messages to send.
The agency never sees a home agency's IDs (only blinded points) and never a result.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedid.errors import CryptoError, DataValidationError, IdNumberError
from fedid.ids import to_canonical
from fedid.matching.messages import (
    POINT_BYTES,
    EvidenceBlindedRecords,
    EvidencePayloads,
    EvidenceReblindedHomeKeys,
    HomeBlindedKeys,
    HomePublicKey,
    MessageKind,
)
from fedid.matching.policy import DepartmentLayout
from fedid.matching.protocol import (
    COORDINATOR,
    DEFAULT_BLINDING,
    BlindingKey,
    StepGuard,
    blinding_backend,
    evidence_party,
    hash_domain,
)
from privacy.paillier import PaillierPublicKey

__all__ = ["EvidenceAgency", "split_points"]

_LOG = logging.getLogger(__name__)


def split_points(buf: bytes) -> list[bytes]:
    return [buf[i : i + POINT_BYTES] for i in range(0, len(buf), POINT_BYTES)]


class EvidenceAgency:
    """One department in one run.

    ``table`` has ``person_id`` plus the source-field columns of ``layout``; IDs are
    normalised and 15-digit ones upgraded. ``blinding`` is the department's scalar for the
    run (a fresh :class:`BlindingKey` unless ``evidence_keys="shared"``). ``homes`` are the
    home parties whose key lists it may receive; ``lead`` the one that reblinds its records;
    ``reblinds_home_keys`` False when another department does it for a shared scalar.
    ``backend`` names the run's blinding backend (the lead's signed manifest must agree).
    """

    def __init__(
        self,
        *,
        run_id: bytes,
        department: str,
        table: pd.DataFrame,
        layout: DepartmentLayout,
        homes: Sequence[str],
        lead: str,
        blinding: BlindingKey | None = None,
        reblinds_home_keys: bool = True,
        backend: str = DEFAULT_BLINDING,
    ) -> None:
        self.department = department
        self.party = evidence_party(department)
        self.guard = StepGuard(run_id=run_id, party=self.party)
        self.layout = layout
        self._homes = frozenset(homes)
        self._lead = lead
        self.backend = backend
        self._blinding = blinding or blinding_backend(backend).BlindingKey.generate()
        self.reblinds_home_keys = reblinds_home_keys
        if "person_id" not in table.columns:
            raise DataValidationError(f"{department}: table has no person_id column")
        try:
            ids = to_canonical(table["person_id"].to_numpy())
        except IdNumberError as exc:
            raise DataValidationError(f"{department}: person_id column: {exc}") from exc
        if len(set(ids.tolist())) != len(ids):
            raise DataValidationError(f"{department}: person_id values must be unique")
        order = np.arange(len(ids))
        rng = np.random.default_rng(secrets.randbits(128))
        rng.shuffle(order)  # the shuffle hides table order from H and C
        self._ids = [str(ids[i]).encode("ascii") for i in order]
        self._payloads = layout.encode(table.iloc[order].reset_index(drop=True))
        self._public_key: PaillierPublicKey | None = None
        self._home_lists_done: set[str] = set()

    @property
    def size(self) -> int:
        return len(self._ids)

    def receive_public_key(self, msg: HomePublicKey) -> None:
        """Step 1: the run's Paillier key (checked: size, shape)."""
        self.guard.accept(msg, senders={self._lead})
        self.guard.require(self._public_key is None, "second public key for the run")
        try:
            self._public_key = PaillierPublicKey.from_bytes(msg.public_key)
        except (CryptoError, ValueError) as exc:
            raise self.guard.fail(f"invalid public key: {exc}") from exc
        self.guard.require(self._public_key.h is not None, "public key lacks the DJN base")
        self.guard.require(msg.blinding == self.backend,
                           f"the run blinds with {msg.blinding!r}, not {self.backend!r}")
        if msg.homes or msg.departments:  # the lead's signed manifest of the run
            self.guard.require(self.department in msg.departments,
                               f"the run's manifest does not list {self.department!r}")
            self.guard.require({f"home:{h}" for h in msg.homes} == set(self._homes),
                               "the run's manifest lists other home agencies")

    def reblind_home_keys(self, msg: HomeBlindedKeys) -> EvidenceReblindedHomeKeys:
        """Step 3: raise a home agency's list to this department's scalar (order kept)."""
        batch = self.guard.accept(msg, senders=self._homes)
        self.guard.require(self.reblinds_home_keys, "this department does not reblind keys")
        self.guard.require(self._public_key is not None, "home key list before the public key")
        self.guard.distinct(msg.points, "home key list")
        try:
            points = self._blinding.blind(split_points(msg.points))
        except CryptoError as exc:
            raise self.guard.fail(f"invalid point in home key list: {exc}") from exc
        self._home_lists_done.add(msg.header.sender)
        return EvidenceReblindedHomeKeys(
            header=self.guard.header(recipient=COORDINATOR,
                                     kind=MessageKind.EVIDENCE_REBLINDED_HOME_KEYS, batch=batch),
            home=msg.header.sender, points=b"".join(points))

    def blinded_records(self) -> EvidenceBlindedRecords:
        """Step 4: this department's IDs hashed and blinded, in shuffled order, to lead H."""
        points = self._blinding.hash_and_blind(self._ids, domain=hash_domain(self.guard.run_id))
        return EvidenceBlindedRecords(
            header=self.guard.header(recipient=self._lead,
                                     kind=MessageKind.EVIDENCE_BLINDED_RECORDS),
            points=b"".join(points))

    def payloads(self) -> EvidencePayloads:
        """Step 6: packed encrypted payloads (same shuffled order) to C."""
        pk = self.guard.need(self._public_key, "payloads requested before the key")
        plaintexts = self.layout.pack(self._payloads, modulus_bits=pk.bits)
        k = self.layout.slots(pk.bits)
        cts = pk.encrypt_ints(plaintexts)
        _LOG.info("%s: %d records in %d ciphertexts", self.department, self.size, len(cts))
        return EvidencePayloads(
            header=self.guard.header(recipient=COORDINATOR, kind=MessageKind.EVIDENCE_PAYLOADS),
            key_fingerprint=pk.fingerprint, record_count=self.size, slots=k,
            ciphertexts=tuple(cts))

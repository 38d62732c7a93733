"""Incremental resolution (the 48-hour green channel) on top of a completed run.

A sudden hardship should not wait for the next full round. After
:func:`~fedid.matching.run.match_in_process`,
the roles of each run keep their state: the coordinator holds every department's
doubly blinded tokens and packed ciphertexts, each department its scalar, the home
agencies the keyring. :meth:`GreenChannel.resolve` resolves a few students (new or
re-checked) of one home agency: steps 2, 3 and 7 of :mod:`fedid.matching.protocol` run
again for their keys only (batch ``b`` > 0 in the header's step); no department
re-encrypts anything. (Evidence registered after the run is not seen until a department
re-submits; that is left to the next run.)

Leakage per batch is that of the protocol restricted to the batch: E_j learns the batch
size; C learns which of the batch's pseudonymous positions matched which departments
(and, by timing, that these are green-channel cases); H learns the batch's evidence.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedid.errors import ProtocolError
from fedid.matching.home import canonical_keys
from fedid.matching.resolve import resolve_students
from fedid.matching.run import RunGroup
from fedid.matching.transport import InMemoryTransport
from fedid.schema import Schema

__all__ = ["BatchResult", "GreenChannel"]

_LOG = logging.getLogger(__name__)

MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class BatchResult:
    resolved: pd.DataFrame
    latency_s: float
    batch: int
    keys: int


class GreenChannel:
    """Resolve small batches against the state of one completed run (``group``)."""

    def __init__(self, group: RunGroup, *, schema: Schema,
                 transport: InMemoryTransport | None = None) -> None:
        self.group = group
        self.schema = schema
        self.transport = transport or InMemoryTransport()
        self._batch = 0

    def _next_batch(self) -> int:
        self._batch += 1
        if self._batch * 16 >= 2**32:
            raise ProtocolError("batch counter exhausted for this run")
        return self._batch

    def resolve(self, agency_id: str, students: pd.DataFrame) -> BatchResult:
        """Resolve the given students (student_id, guardian1_id, guardian2_id) of one agency."""
        if not 0 < len(students) <= MAX_BATCH:
            raise ProtocolError(f"batch size must be 1..{MAX_BATCH}. Got {len(students)}.")
        t0 = time.perf_counter()
        g = self.group
        home = g.homes.get(agency_id)
        if home is None:
            raise ProtocolError(f"no home agency {agency_id!r} in this run")
        batch = self._next_batch()
        keys: set[str] = set(canonical_keys(students, "student_id", required=True).tolist())
        for c in ("guardian1_id", "guardian2_id"):
            keys.update(k for k in canonical_keys(students, c, required=False).tolist() if k)
        ordered = sorted(keys)
        perm = np.random.default_rng(secrets.randbits(128)).permutation(len(ordered))
        batch_keys = [ordered[i] for i in perm]
        position = {k: i for i, k in enumerate(batch_keys)}
        t = self.transport
        for msg in home.blinded_keys(keys=batch_keys, batch=batch):
            dep = msg.header.recipient.removeprefix("evidence:")
            out = g.evidence[dep].reblind_home_keys(t.deliver(msg))
            g.coordinator.receive_reblinded_home_keys(t.deliver(out))
        matches = g.coordinator.batch_matches(home.party, batch)
        (res_msg,) = g.coordinator.results(batch=batch, homes=[home.party], matches=matches)
        results = home.receive_results(t.deliver(res_msg), key_count=len(batch_keys))
        frame = resolve_students(schema=self.schema, layouts=home.layouts, students=students,
                                 results=results, position=position, key_count=len(batch_keys))
        latency = time.perf_counter() - t0
        _LOG.info("green channel batch %d: %d students in %.3f s", batch, len(students), latency)
        return BatchResult(resolved=frame, latency_s=latency, batch=batch, keys=len(batch_keys))

"""Private matching of students with departmental evidence (see :mod:`.protocol`).

Roles (transport-free, one method per step): :class:`HomeAgency`, :class:`EvidenceAgency`,
:class:`Coordinator`; messages in :mod:`.messages` (``to_bytes``/``decode_message``); a
whole round in one process: :func:`match_in_process`; signed messages: :mod:`.auth`; the
green channel:
:class:`~fedid.matching.incremental.GreenChannel`.

Driving the roles over a transport (what :func:`match_in_process` does; a Flower app carries
each message's signed bytes in a ``query.match`` message, in this order, per department
``d``):

1. lead ``H.public_key_messages([coordinator, evidence:d...])`` ->
   ``C.receive_public_key`` / ``E_d.receive_public_key``
2. every ``H.blinded_keys()`` -> one message per key department
3. ``E_d.reblind_home_keys(msg)`` -> ``C.receive_reblinded_home_keys``
4. ``E_d.blinded_records()`` -> lead ``H.reblind_records(msg)``
5. -> ``C.receive_reblinded_records``
6. ``E_d.payloads()`` -> ``C.receive_payloads``   (steps 3-6 for every department)
7. ``C.results()`` -> one message per home -> ``H.receive_results``; then
   :func:`~fedid.matching.resolve.resolve_home` gives the merged table
8. ``HomeAggregates`` (from :func:`~fedid.matching.aggregates.release_counts`) ->
   ``C.receive_aggregates``

Every role raises :class:`~fedid.errors.ProtocolError` on a bad message and refuses
every later call (fail closed). Across processes, the province grouping's shared
:class:`HomeKeyring` travels sealed from the lead home to the others
(:func:`privacy.identity.seal`, :mod:`clients.matching`).
"""

from __future__ import annotations

from fedid.matching.aggregates import ReleaseConfig
from fedid.matching.coordinator import Coordinator
from fedid.matching.evidence import EvidenceAgency
from fedid.matching.home import HomeAgency
from fedid.matching.output import write_outputs
from fedid.matching.policy import EvidencePolicy, FieldRelease, build_layouts, default_policies
from fedid.matching.protocol import HomeKeyring
from fedid.matching.run import MatchingConfig, MatchingResult, match_in_process
from fedid.matching.transport import InMemoryTransport

__all__ = [
    "Coordinator",
    "EvidenceAgency",
    "EvidencePolicy",
    "FieldRelease",
    "HomeAgency",
    "HomeKeyring",
    "InMemoryTransport",
    "MatchingConfig",
    "MatchingResult",
    "ReleaseConfig",
    "build_layouts",
    "default_policies",
    "match_in_process",
    "write_outputs",
]

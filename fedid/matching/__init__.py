"""Private matching of students with departmental evidence (see :mod:`.protocol`).

Roles (transport-free, one method per step): :class:`HomeAgency`, :class:`EvidenceAgency`,
:class:`Coordinator`; messages in :mod:`.messages`; a whole round in one process:
:func:`run_matching`.
"""

from __future__ import annotations

from fedid.matching.aggregates import ReleaseConfig
from fedid.matching.coordinator import Coordinator
from fedid.matching.evidence import EvidenceAgency
from fedid.matching.home import HomeAgency
from fedid.matching.policy import EvidencePolicy, FieldRelease, build_layouts, default_policies
from fedid.matching.protocol import HomeKeyring
from fedid.matching.run import MatchingConfig, MatchingResult, run_matching, write_outputs
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
    "run_matching",
    "write_outputs",
]

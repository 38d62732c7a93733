"""Leakage record of a matching run: per party, what it received and what it can learn.

Computed from the transport's transcript (message kinds, counts, bytes received), plus the
protocol's statement of what each role can learn (:mod:`fedid.matching.protocol`) with
the run's actual set sizes filled in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from fedid.matching.protocol import COORDINATOR
from fedid.matching.transport import TranscriptEntry

__all__ = ["PartyLeakage", "leakage_record"]

_STATEMENTS = {
    "home": (
        "Learns the released fields of the department records matched to its own students "
        "and guardians (and which departments hold them); the lead home agency also learns "
        "each department's list size. Other records in the ciphertexts it receives are "
        "hidden by the coordinator's masks (statistical distance <= 2^-{mask} per slot)."
    ),
    "evidence": (
        "Learns the size of each home key list it reblinds ({home_sizes}); nothing about "
        "which of its records match or who is a student."
    ),
    "coordinator": (
        "Learns set sizes (home lists {home_sizes}, department lists {dep_sizes}) and, per "
        "pseudonymous home key position, which departments matched; {extra}never an ID, a "
        "field value or a key that decrypts (it holds only the public key). Receives the "
        "released aggregates."
    ),
}


@dataclass(frozen=True, slots=True)
class PartyLeakage:
    party: str
    messages: dict[str, int]
    bytes_by_kind: dict[str, int]
    total_bytes: int
    statement: str

    def to_dict(self) -> dict[str, Any]:
        return {"party": self.party, "messages": self.messages,
                "bytes_by_kind": self.bytes_by_kind, "total_bytes": self.total_bytes,
                "can_learn": self.statement}


def leakage_record(
    entries: list[TranscriptEntry], *, home_sizes: dict[str, int], dep_sizes: dict[str, int],
    grouping: str, evidence_keys: str, mask_bits: int,
) -> list[PartyLeakage]:
    """One :class:`PartyLeakage` per party that received anything."""
    msgs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in entries:
        msgs[e.recipient][e.kind] += 1
        sizes[e.recipient][e.kind] += e.size
    extra = ""
    if grouping == "province":
        extra += "which positions of different home agencies share a key; "
    if evidence_keys == "shared":
        extra += "which records of different departments belong to one (unknown) person; "
    out = []
    for party in sorted(msgs):
        role = "coordinator" if party == COORDINATOR else party.split(":", 1)[0]
        text = _STATEMENTS[role].format(mask=mask_bits, home_sizes=home_sizes,
                                        dep_sizes=dep_sizes, extra=extra)
        out.append(PartyLeakage(party=party, messages=dict(msgs[party]),
                                bytes_by_kind=dict(sizes[party]),
                                total_bytes=sum(sizes[party].values()), statement=text))
    return out

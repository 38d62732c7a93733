"""Authenticated masking keys for the secure sum: each key signed with its party's roster key.

Without this, the coordinator that relays the masking keys of :mod:`privacy.secure_sum`
can hand a party its own X25519 key in place of a peer's; it then knows every pair seed
of that party and unmasks its vector. When every party holds an agency identity and the
roster of public identities (:mod:`privacy.identity`, the keys that already sign matching
messages), steps 1 and 2 of :mod:`privacy.secure_sum` become:

1. keys   the coordinator names the instance (:class:`MaskingInstance`): run, session,
          round, attempt and the sorted participants ``P``. Each party of ``P`` makes its
          fresh X25519 key pair and signs the 32-byte public key with its Ed25519 identity
          key (:func:`sign_masking_key`): label ``fedid.secure-sum.key.v1``, context
          ``{run, session, round, attempt, participants = ",".join(P), sender, issued}``,
          body the public key. It sends the key, the issue time (unix seconds) and the
          64-byte signature (:class:`MaskingKeySignature`).
2. check  before it masks anything, a party checks the coordinator's key list
          (:func:`verify_masking_keys`): it names exactly ``P``, and every peer's key
          carries a signature that verifies under that peer's roster key over this
          instance's context, issued at most :data:`MAX_AGE_S` ago and at most
          :data:`MAX_SKEW_S` in the future. Any failure raises
          :class:`~privacy.errors.CryptoError` and the party masks nothing.

What the coordinator learns: what it learned before, plus the signatures and issue times.
What it can no longer do: substitute a key (the signature would have to be the peer's),
strip a signature, replay a key signed for another run, session, round, attempt or
participant set (the context differs), or replay an old one of the same context once it is
older than :data:`MAX_AGE_S`. What it still can do is in THREAT_MODEL.md (dropping parties
and rerunning with fewer, as the secure sum has no dropout recovery).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from privacy.errors import CryptoError
from privacy.identity import SIGNATURE_BYTES, AgencyIdentity, Context, Roster
from privacy.secure_sum import PublicKeyList, check_public_key

__all__ = ["MASKING_KEY_LABEL", "MAX_AGE_S", "MAX_SKEW_S", "MaskingInstance",
           "MaskingKeySignature", "sign_masking_key", "verify_masking_keys"]

MASKING_KEY_LABEL = "fedid.secure-sum.key.v1"
#: a key is used within one round (the key step, then the node's training); a day covers
#: the slowest round and any later use is a replay
MAX_AGE_S = 24 * 3600
MAX_SKEW_S = 300  # clocks of agencies may differ by this much


@dataclass(frozen=True, slots=True)
class MaskingInstance:
    """One secure-sum instance as the coordinator names it to every party."""

    run: str
    session: str
    round: int
    attempt: int
    participants: tuple[str, ...]

    def __post_init__(self) -> None:
        parts = self.participants
        if len(parts) < 2:
            raise CryptoError(f"a secure sum needs at least 2 participants. Got {len(parts)}.")
        if list(parts) != sorted(set(parts)):
            raise CryptoError("the participants must be distinct and sorted.")
        if any(not p or "," in p for p in parts):
            raise CryptoError("a participant name must be non-empty and hold no comma.")

    def context(self, *, sender: str, issued: int) -> Context:
        """What a masking key's signature covers besides the key itself."""
        return {"run": self.run, "session": self.session, "round": self.round,
                "attempt": self.attempt, "participants": ",".join(self.participants),
                "sender": sender, "issued": issued}


@dataclass(frozen=True, slots=True)
class MaskingKeySignature:
    """A party's signature over its masking key for one instance, with its issue time."""

    issued: int
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != SIGNATURE_BYTES:
            raise CryptoError(f"a masking key signature must be {SIGNATURE_BYTES} bytes. "
                              f"Got {len(self.signature)}.")
        if self.issued < 0:
            raise CryptoError(f"issue time must be >= 0. Got {self.issued}.")


def sign_masking_key(identity: AgencyIdentity, *, public_key: bytes,
                     instance: MaskingInstance, issued: int) -> MaskingKeySignature:
    """Sign this party's masking key for ``instance`` (the party must be a participant)."""
    if identity.agency not in instance.participants:
        raise CryptoError(f"{identity.agency!r} is not a participant of this secure sum.")
    check_public_key(public_key)
    context = instance.context(sender=identity.agency, issued=issued)
    return MaskingKeySignature(issued=issued, signature=identity.sign(
        label=MASKING_KEY_LABEL, context=context, body=public_key))


def verify_masking_keys(keys: PublicKeyList, signatures: Mapping[str, MaskingKeySignature],
                        *, roster: Roster, instance: MaskingInstance, own: str,
                        now: float) -> None:
    """CryptoError unless every peer's key in ``keys`` is signed for ``instance``.

    ``own`` names the checking party: its own key is checked by the masking itself
    (:meth:`privacy.secure_sum.MaskingParty.mask`), every other one here.
    """
    if keys.parties != instance.participants:
        raise CryptoError(f"the key list names {len(keys.parties)} parties, not the "
                          f"{len(instance.participants)} participants this party signed for.")
    for party, key in keys.keys:
        if party == own:
            continue
        signed = signatures.get(party)
        if signed is None:
            raise CryptoError(f"the masking key of {party!r} is not signed.")
        age = now - signed.issued
        if not -MAX_SKEW_S <= age <= MAX_AGE_S:
            raise CryptoError(f"the masking key of {party!r} was issued {int(age)} s ago; "
                              f"accepted: -{MAX_SKEW_S}..{MAX_AGE_S} s.")
        roster.get(party).verify(signed.signature, label=MASKING_KEY_LABEL,
                                 context=instance.context(sender=party, issued=signed.issued),
                                 body=key)

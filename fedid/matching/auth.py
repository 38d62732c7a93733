"""Signed matching messages: the coordinator relays them, it cannot forge or alter them.

Every message an agency sends travels in a :class:`SignedMessage`::

    magic b"FIDA" | version u8 | signer (u8 length + agency id) | issued u64 (unix seconds)
    | home key fingerprint 32 | message (u32 length + Message.to_bytes()) | signature 64

The signature is the sender agency's Ed25519 key (:mod:`privacy.identity`) over
:func:`privacy.identity.signed_bytes` with label ``fedid.matching.v1`` and the context
``run``, ``step`` (batch * 16 + step), ``batch``, ``kind``, ``sender``, ``recipient``,
``signer``, ``issued``, ``sizes`` (the list sizes the message carries, :func:`sizes_of`) and
``home-key`` (SHA-256 of the home's WHOLE Paillier public key, ``n`` and the DJN base
``h``, as the signer knows it); the body signed is the whole message, header and body.
So a receiver that verifies against its roster (:class:`Verifier`) knows that the agency
named as sender sent exactly these bytes, in this run and step, to it, under this home
key: the coordinator cannot forge a message, inject points into a list, reorder or drop
items of a list, put an old body under a new header, move a message to another run, step
or recipient, or substitute its own Paillier key. Replays are refused by the roles (one
message per sender, step and tag; :class:`~fedid.matching.protocol.StepGuard`), by the
nodes (a run id is taken part in once) and by age (``issued`` at most ``MAX_AGE_S`` old).

The party a message names as sender maps to the roster: ``home:<agency>`` to an
education agency, ``evidence:<department>`` to the one agency registered for that
department. The coordinator signs nothing (it holds no key the agencies trust); what it
sends (the results of step 7) is checked by the home agency for shape and ciphertext
validity only: see THREAT_MODEL.md, Matching protocol, for what it can still do.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from fedid.errors import ProtocolError
from fedid.matching.messages import (
    CoordinatorResults,
    EvidencePayloads,
    HomeAggregates,
    HomePublicKey,
    Message,
    decode_message,
)
from fedid.matching.protocol import STEP_SPAN
from fedid.matching.wire import POINT_BYTES, Reader
from privacy.errors import CryptoError
from privacy.identity import SIGNATURE_BYTES, AgencyIdentity, PublicIdentity, Roster
from privacy.paillier import PaillierPublicKey

__all__ = [
    "LABEL",
    "MAX_AGE_S",
    "SignedMessage",
    "Signer",
    "Verifier",
    "key_fingerprint",
    "party_identity",
    "sizes_of",
]

LABEL = "fedid.matching.v1"
MAX_AGE_S = 24 * 3600  # a run (1M students) takes well under an hour; older is a replay
MAX_SKEW_S = 300  # clocks of agencies may differ by this much
_MAGIC = b"FIDA"
_VERSION = 1
_FP_BYTES = 32

Clock = Callable[[], float]


def key_fingerprint(public_key_bytes: bytes) -> bytes:
    """The home key fingerprint (``n`` and ``h``) of a serialised Paillier public key."""
    try:
        return PaillierPublicKey.from_bytes(public_key_bytes).fingerprint
    except (CryptoError, ValueError) as exc:
        raise ProtocolError(f"invalid home public key: {exc}") from exc


def sizes_of(msg: Message) -> str:
    """The list sizes a message carries, as signed (e.g. ``points=1200``)."""
    points = getattr(msg, "points", None)
    if isinstance(points, bytes):
        return f"points={len(points) // POINT_BYTES}"
    if isinstance(msg, EvidencePayloads):
        return f"records={msg.record_count},ciphertexts={len(msg.ciphertexts)},slots={msg.slots}"
    if isinstance(msg, HomePublicKey):
        return f"homes={len(msg.homes)},departments={len(msg.departments)}"
    if isinstance(msg, HomeAggregates):
        return f"values={len(msg.values)}"
    if isinstance(msg, CoordinatorResults):
        return f"ciphertexts={len(msg.ciphertexts)},matches={len(msg.match_position)}"
    return ""


def party_identity(roster: Roster, party: str) -> PublicIdentity:
    """The roster entry of a protocol party (``home:<agency>`` or ``evidence:<dept>``)."""
    role, _, name = party.partition(":")
    try:
        if role == "home":
            pub = roster.get(name)
            if pub.kind != "education":
                raise ProtocolError(f"party {party!r} is not an education agency in the roster")
            return pub
        if role == "evidence":
            return roster.holder_of(name)
    except CryptoError as exc:
        raise ProtocolError(str(exc)) from exc
    raise ProtocolError(f"party {party!r} signs nothing: it is not an agency")


def _context(msg: Message, *, signer: str, issued: int, home_key: bytes
             ) -> dict[str, str | int | bytes]:
    h = msg.header
    return {"run": h.run_id, "step": h.step, "batch": h.step // STEP_SPAN,
            "kind": int(msg.KIND), "sender": h.sender, "recipient": h.recipient,
            "signer": signer, "issued": issued, "sizes": sizes_of(msg), "home-key": home_key}


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A matching message with its sender agency's signature (see the module docstring)."""

    signer: str
    issued: int
    home_key: bytes
    message: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        signer = self.signer.encode()
        return b"".join((_MAGIC, bytes([_VERSION, len(signer)]), signer,
                         struct.pack("<Q", self.issued), self.home_key,
                         struct.pack("<I", len(self.message)), self.message, self.signature))

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedMessage:
        r = Reader(data)
        if r.take(4) != _MAGIC:
            raise ProtocolError("not a signed matching message (bad magic)")
        if r.u8() != _VERSION:
            raise ProtocolError(f"signed message version must be {_VERSION}.")
        try:
            signer = r.take(r.u8()).decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("signer is not valid UTF-8") from exc
        issued = int(struct.unpack("<Q", r.take(8))[0])
        home_key = r.take(_FP_BYTES)
        message = r.blob()
        signature = r.take(SIGNATURE_BYTES)
        r.end()
        return cls(signer=signer, issued=issued, home_key=home_key, message=message,
                   signature=signature)


class Signer:
    """Signs one agency's outgoing messages with its identity key."""

    def __init__(self, identity: AgencyIdentity, *, clock: Clock = time.time) -> None:
        self.identity = identity
        self._clock = clock

    def sign(self, msg: Message, *, home_key: bytes) -> SignedMessage:
        if len(home_key) != _FP_BYTES:
            raise ProtocolError(f"home key fingerprint must be {_FP_BYTES} bytes.")
        issued = int(self._clock())
        body = msg.to_bytes()
        ctx = _context(msg, signer=self.identity.agency, issued=issued, home_key=home_key)
        return SignedMessage(signer=self.identity.agency, issued=issued, home_key=home_key,
                             message=body,
                             signature=self.identity.sign(label=LABEL, context=ctx, body=body))

    def seal(self, msg: Message, *, home_key: bytes) -> bytes:
        """:meth:`sign` and serialise."""
        return self.sign(msg, home_key=home_key).to_bytes()


class Verifier:
    """Checks received signed messages against the roster the node holds."""

    def __init__(self, roster: Roster, *, clock: Clock = time.time) -> None:
        self.roster = roster
        self._clock = clock

    def open(self, data: bytes, *, home_key: bytes | None) -> Message:
        """The verified message; ``home_key``: the fingerprint the receiver expects (None
        only for the step-1 key itself, whose fingerprint must match what it carries)."""
        env = SignedMessage.from_bytes(data)
        msg = decode_message(env.message)
        pub = party_identity(self.roster, msg.header.sender)
        if env.signer != pub.agency:
            raise ProtocolError(f"message from {msg.header.sender!r} is signed by "
                                f"{env.signer!r}, not by its agency {pub.agency!r}")
        age = self._clock() - env.issued
        if not -MAX_SKEW_S <= age <= MAX_AGE_S:
            raise ProtocolError(f"message {msg.KIND.name} was issued {int(age)} s ago; "
                                f"accepted: -{MAX_SKEW_S}..{MAX_AGE_S} s")
        ctx = _context(msg, signer=env.signer, issued=env.issued, home_key=env.home_key)
        try:
            pub.verify(env.signature, label=LABEL, context=ctx, body=env.message)
        except CryptoError as exc:
            raise ProtocolError(f"message {msg.KIND.name}: {exc}") from exc
        expected = home_key
        if isinstance(msg, HomePublicKey):
            carried = key_fingerprint(msg.public_key)
            if env.home_key != carried or (expected is not None and expected != carried):
                raise ProtocolError("home public key does not match its signed fingerprint")
        elif expected is None or env.home_key != expected:
            raise ProtocolError(f"message {msg.KIND.name} from {msg.header.sender} was made "
                                "under another home key")
        return msg

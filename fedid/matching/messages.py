"""Messages of the matching protocol (see :mod:`fedid.matching.protocol` for the steps).

Every message is a frozen, slotted dataclass named by its sender and step, with
``to_bytes()`` and ``from_bytes()``. The wire form is a header followed by a body::

    magic  b"FIDM"        4 bytes
    version               u16   (WIRE_VERSION)
    kind                  u16   (MessageKind)
    run_id                16 bytes
    sender, recipient     u8 length + UTF-8 party name each ("home:<agency>", "evidence:<dept>",
                          "coordinator")
    step                  u32   batch * 16 + step number (1-8, equal to the kind code)
    body                  kind specific; every variable part is length prefixed

Curve points travel as 32-byte encodings of the run's blinding backend (X25519
u-coordinates or ristretto255);
Paillier integers as fixed-width big-endian bytes (the width of ``n`` or ``n^2``); small
integer arrays as little-endian numpy buffers. Decoding checks every length and rejects
trailing bytes, so a truncated or padded message raises
:class:`~fedid.errors.ProtocolError`. Semantic checks (the run, the parties, the step
order, point validity, the modulus) are made by the receiving role.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from fedid.errors import ProtocolError
from fedid.matching.wire import MAX_ITEMS, POINT_BYTES, Reader, U32Array, Writer

__all__ = [
    "MAGIC",
    "MAX_ITEMS",
    "POINT_BYTES",
    "RUN_ID_BYTES",
    "WIRE_VERSION",
    "CoordinatorResults",
    "EvidenceBlindedRecords",
    "EvidencePayloads",
    "EvidenceReblindedHomeKeys",
    "Header",
    "HomeAggregates",
    "HomeBlindedKeys",
    "HomePublicKey",
    "HomeReblindedRecords",
    "Message",
    "MessageKind",
    "decode_message",
]

MAGIC = b"FIDM"
WIRE_VERSION = 2
RUN_ID_BYTES = 16


class MessageKind(enum.IntEnum):
    """Wire code of each message kind = its step number in :mod:`fedid.matching.protocol`.

    (Wire version 2 swapped codes 5 and 6 of version 1 so that codes and steps agree.)
    """

    HOME_PUBLIC_KEY = 1
    HOME_BLINDED_KEYS = 2
    EVIDENCE_REBLINDED_HOME_KEYS = 3
    EVIDENCE_BLINDED_RECORDS = 4
    HOME_REBLINDED_RECORDS = 5
    EVIDENCE_PAYLOADS = 6
    COORDINATOR_RESULTS = 7
    HOME_AGGREGATES = 8


@dataclass(frozen=True, slots=True)
class Header:
    """Routing and replay protection: the run, the parties and the step sequence number."""

    run_id: bytes
    sender: str
    recipient: str
    step: int

    def __post_init__(self) -> None:
        if len(self.run_id) != RUN_ID_BYTES:
            raise ProtocolError(f"run id must be {RUN_ID_BYTES} bytes. Got {len(self.run_id)}.")
        for name in (self.sender, self.recipient):
            if not name or len(name.encode()) > 255:
                raise ProtocolError(f"party name must be 1-255 bytes. Got {len(name.encode())}.")
        if not 0 <= self.step < 2**32:
            raise ProtocolError(f"step must be in [0, 2^32). Got {self.step}.")


def _write_header(w: Writer, kind: MessageKind, h: Header) -> None:
    w.parts.append(MAGIC)
    w.parts.append(struct.pack("<HH", WIRE_VERSION, int(kind)))
    w.parts.append(h.run_id)
    for name in (h.sender, h.recipient):
        raw = name.encode()
        w.u8(len(raw))
        w.parts.append(raw)
    w.u32(h.step)


def _read_header(r: Reader) -> tuple[MessageKind, Header]:
    if r.take(4) != MAGIC:
        raise ProtocolError("not a fedid matching message (bad magic)")
    version = r.u16()
    if version != WIRE_VERSION:
        raise ProtocolError(f"wire version must be {WIRE_VERSION}. Got {version}.")
    code = r.u16()
    try:
        kind = MessageKind(code)
    except ValueError as exc:
        raise ProtocolError(f"unknown message kind {code}") from exc
    run_id = r.take(RUN_ID_BYTES)
    sender = r.take(r.u8()).decode(errors="strict")
    recipient = r.take(r.u8()).decode(errors="strict")
    return kind, Header(run_id=run_id, sender=sender, recipient=recipient, step=r.u32())


class Message:
    """Base of every message: a header plus a body; subclasses set ``KIND``."""

    __slots__ = ()
    KIND: ClassVar[MessageKind]
    header: Header

    def _body(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        w = Writer()
        _write_header(w, self.KIND, self.header)
        self._body(w)
        return b"".join(w.parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        msg = decode_message(data)
        if not isinstance(msg, cls):
            raise ProtocolError(f"expected message kind {cls.KIND.name}. Got {msg.KIND.name}.")
        return msg


def _count(points: bytes) -> int:
    return len(points) // POINT_BYTES


@dataclass(frozen=True, slots=True)
class HomePublicKey(Message):
    """Step 1, lead H -> C and every E: the run's Paillier public key (``n`` and DJN ``h``)
    and the run's manifest: its home agencies and departments (agency ids, sorted) and the
    blinding backend (:data:`fedid.matching.protocol.BLINDING_BACKENDS`)."""

    KIND: ClassVar[MessageKind] = MessageKind.HOME_PUBLIC_KEY
    header: Header
    public_key: bytes
    homes: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    blinding: str = "x25519"

    def _body(self, w: Writer) -> None:
        w.blob(self.public_key)
        for names in (self.homes, self.departments):
            w.u32(len(names))
            for name in names:
                w.text(name)
        w.text(self.blinding)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        key = r.blob()
        lists: list[tuple[str, ...]] = []
        for what in ("home", "department"):
            count = r.u32()
            if count > 4096:
                raise ProtocolError(f"{what} count must be <= 4096. Got {count}.")
            lists.append(tuple(r.text() for _ in range(count)))
        return cls(header=header, public_key=key, homes=lists[0], departments=lists[1],
                   blinding=r.text())


@dataclass(frozen=True, slots=True)
class HomeBlindedKeys(Message):
    """Step 2, H -> each E: ``hash_to_group(key)^h`` for H's distinct keys, in H's order."""

    KIND: ClassVar[MessageKind] = MessageKind.HOME_BLINDED_KEYS
    header: Header
    points: bytes

    @property
    def count(self) -> int:
        return _count(self.points)

    def _body(self, w: Writer) -> None:
        w.points(self.points)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        return cls(header=header, points=r.points())


@dataclass(frozen=True, slots=True)
class EvidenceReblindedHomeKeys(Message):
    """Step 3, E -> C: H's list raised to E's scalar, order kept; ``home`` names the list."""

    KIND: ClassVar[MessageKind] = MessageKind.EVIDENCE_REBLINDED_HOME_KEYS
    header: Header
    home: str
    points: bytes

    @property
    def count(self) -> int:
        return _count(self.points)

    def _body(self, w: Writer) -> None:
        w.text(self.home)
        w.points(self.points)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        return cls(header=header, home=r.text(), points=r.points())


@dataclass(frozen=True, slots=True)
class EvidenceBlindedRecords(Message):
    """Step 4, E -> lead H: ``hash_to_group(person)^e`` for E's records, shuffled."""

    KIND: ClassVar[MessageKind] = MessageKind.EVIDENCE_BLINDED_RECORDS
    header: Header
    points: bytes

    @property
    def count(self) -> int:
        return _count(self.points)

    def _body(self, w: Writer) -> None:
        w.points(self.points)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        return cls(header=header, points=r.points())


@dataclass(frozen=True, slots=True)
class EvidencePayloads(Message):
    """Step 6, E -> C: packed Paillier ciphertexts of the records, in the shuffled order.

    Record ``i`` sits in slot ``i % slots`` of ciphertext ``i // slots``.
    ``key_fingerprint`` is SHA-256 of the whole public key (``n`` and ``h``) the payloads
    are encrypted under.
    """

    KIND: ClassVar[MessageKind] = MessageKind.EVIDENCE_PAYLOADS
    header: Header
    key_fingerprint: bytes
    record_count: int
    slots: int
    ciphertexts: tuple[int, ...]

    def _body(self, w: Writer) -> None:
        w.blob(self.key_fingerprint)
        w.u32(self.record_count)
        w.u32(self.slots)
        w.ints(self.ciphertexts, _ct_width(self.ciphertexts))

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        fp = r.blob()
        count = r.u32()
        slots = r.u32()
        cts, _ = r.ints()
        return cls(header=header, key_fingerprint=fp, record_count=count, slots=slots,
                   ciphertexts=cts)


@dataclass(frozen=True, slots=True)
class HomeReblindedRecords(Message):
    """Step 5, lead H -> C: E's shuffled list raised to ``h``, order kept; ``department``
    names it."""

    KIND: ClassVar[MessageKind] = MessageKind.HOME_REBLINDED_RECORDS
    header: Header
    department: str
    points: bytes

    @property
    def count(self) -> int:
        return _count(self.points)

    def _body(self, w: Writer) -> None:
        w.text(self.department)
        w.points(self.points)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        return cls(header=header, department=r.text(), points=r.points())


@dataclass(frozen=True, slots=True)
class CoordinatorResults(Message):
    """Step 7, C -> H: masked copies of the ciphertexts holding H's matches, and the matches.

    ``departments[d]`` packs ``department_slots[d]`` records per ciphertext; ciphertext
    ``i`` holds records of department ``ciphertext_department[i]``. Match ``j``: slot
    ``match_slot[j]`` of ciphertext ``match_ciphertext[j]`` is the record matched to H's
    key position ``match_position[j]``. Every other slot is masked.
    """

    KIND: ClassVar[MessageKind] = MessageKind.COORDINATOR_RESULTS
    header: Header
    departments: tuple[str, ...]
    department_slots: U32Array
    ciphertexts: tuple[int, ...]
    ciphertext_department: U32Array
    match_ciphertext: U32Array
    match_slot: U32Array
    match_position: U32Array

    def _body(self, w: Writer) -> None:
        w.u32(len(self.departments))
        for d in self.departments:
            w.text(d)
        w.u32s(self.department_slots)
        w.ints(self.ciphertexts, _ct_width(self.ciphertexts))
        w.u32s(self.ciphertext_department)
        w.u32s(self.match_ciphertext)
        w.u32s(self.match_slot)
        w.u32s(self.match_position)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        n_dep = r.u32()
        if n_dep > 1024:
            raise ProtocolError(f"department count must be <= 1024. Got {n_dep}.")
        deps = tuple(r.text() for _ in range(n_dep))
        dep_slots = r.u32s()
        cts, _ = r.ints()
        return cls(header=header, departments=deps, department_slots=dep_slots,
                   ciphertexts=cts, ciphertext_department=r.u32s(), match_ciphertext=r.u32s(),
                   match_slot=r.u32s(), match_position=r.u32s())


@dataclass(frozen=True, slots=True)
class HomeAggregates(Message):
    """Step 8, H -> C: released counts (suppressed or DP-noised by H before sending).

    ``values[i]`` is the released count named ``names[i]``; ``-1`` marks a suppressed cell.
    ``epsilon_milli`` is the total epsilon spent on the release times 1000 (0: no noise).
    """

    KIND: ClassVar[MessageKind] = MessageKind.HOME_AGGREGATES
    header: Header
    names: tuple[str, ...]
    values: tuple[int, ...]
    epsilon_milli: int

    def _body(self, w: Writer) -> None:
        w.u32(len(self.names))
        for name, value in zip(self.names, self.values, strict=True):
            w.text(name)
            w.parts.append(struct.pack("<q", value))
        w.u32(self.epsilon_milli)

    @classmethod
    def _parse(cls, header: Header, r: Reader) -> Self:
        count = r.u32()
        if count > 10_000:
            raise ProtocolError(f"aggregate count must be <= 10000. Got {count}.")
        names: list[str] = []
        values: list[int] = []
        for _ in range(count):
            names.append(r.text())
            values.append(int(struct.unpack("<q", r.take(8))[0]))
        return cls(header=header, names=tuple(names), values=tuple(values),
                   epsilon_milli=r.u32())


def _ct_width(values: tuple[int, ...]) -> int:
    top = max(values, default=1)
    return max(1, (top.bit_length() + 7) // 8)


_BY_KIND: dict[MessageKind, type[Message]] = {
    cls.KIND: cls
    for cls in (HomePublicKey, HomeBlindedKeys, EvidenceReblindedHomeKeys,
                EvidenceBlindedRecords, EvidencePayloads, HomeReblindedRecords,
                CoordinatorResults, HomeAggregates)
}


def decode_message(data: bytes) -> Message:
    """Parse any matching message; raises ProtocolError on a malformed or truncated one."""
    r = Reader(data)
    try:
        kind, header = _read_header(r)
        msg = _BY_KIND[kind]._parse(header, r)
    except UnicodeDecodeError as exc:
        raise ProtocolError("party name is not valid UTF-8") from exc
    r.end()
    return msg

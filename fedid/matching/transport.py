"""In-memory transport: every message goes through bytes, and a transcript is recorded.

:class:`InMemoryTransport` serialises each message with ``to_bytes()`` (or, with
:meth:`~InMemoryTransport.deliver_signed`, as a signed message that the receiver verifies),
records the recipient, sender, kind and byte size (and, with ``keep_bytes``, the bytes
themselves for transcript scans in tests), and hands the recipient the message decoded
from those bytes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

from fedid.errors import ProtocolError
from fedid.matching.auth import Signer, Verifier
from fedid.matching.messages import HomePublicKey, Message

__all__ = ["InMemoryTransport", "TranscriptEntry"]

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    sender: str
    recipient: str
    kind: str
    size: int


@dataclass
class InMemoryTransport:
    """Delivers messages as bytes; ``received[party]`` keeps the bytes when ``keep_bytes``."""

    keep_bytes: bool = False
    entries: list[TranscriptEntry] = field(default_factory=list)
    received: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    def _record(self, msg: Message, data: bytes) -> None:
        h = msg.header
        self.entries.append(TranscriptEntry(h.sender, h.recipient, msg.KIND.name, len(data)))
        if self.keep_bytes:
            self.received[h.recipient].append(data)

    def deliver(self, msg: M) -> M:
        data = msg.to_bytes()
        self._record(msg, data)
        return type(msg).from_bytes(data)

    def deliver_signed(self, msg: M, *, signer: Signer, verifier: Verifier,
                       home_key: bytes) -> M:
        """Sign as the sender, then verify as the receiver, who expects ``home_key``."""
        data = signer.seal(msg, home_key=home_key)
        self._record(msg, data)
        expect = None if isinstance(msg, HomePublicKey) else home_key
        got = verifier.open(data, home_key=expect)
        if not isinstance(got, type(msg)):
            raise ProtocolError(f"expected {msg.KIND.name}. Got {got.KIND.name}.")
        return got

    def bytes_received(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for e in self.entries:
            out[e.recipient] += e.size
        return dict(out)

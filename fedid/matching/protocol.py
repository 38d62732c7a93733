"""The fedid matching protocol: private join of students with departmental evidence.

Parties: coordinator C; one or more home agencies H_a (education side: they own the
students); evidence agencies E_1..E_m (departments). Agencies are semi-honest toward each
other; C colludes with no agency but may be actively malicious: every agency message is
signed by its sender's registered key (:mod:`fedid.matching.auth`) and verified by its
receiver against the roster, so C relays what it cannot read, forge or alter
(THREAT_MODEL.md, Matching protocol, says what C can still learn and do). Over Flower every
step travels in a ``query.match`` message (:mod:`clients.matching`, :mod:`server.matching`).

Keys of a run (:class:`HomeKeyring`): a Paillier key pair and a blinding scalar ``h`` for
the education side. Blinding backend (``blinding``, signed in the run's manifest): X25519
with an Elligator 2 hash (:mod:`privacy.blinding_x25519`, the default: 1.89x
openmined-psi's PSI records per CPU-second against 1.25x, BENCHMARKS.md) or ristretto255
(:mod:`privacy.blinding`).
``grouping="per_agency"`` gives every home agency its own keyring and its own run.
``grouping="province"`` shares ONE keyring among the home agencies of the run, so each
department blinds and encrypts its records once per run instead of once per home agency;
C splits the results per home agency. The lead home makes it and sends it to each other
home sealed to that home's agreement key and signed (:func:`privacy.identity.seal`): C
relays the box and cannot open it; it exists only in the homes' memory for the run. Each E_j draws
a scalar ``e_j`` per run; ``evidence_keys="shared"`` gives every department the same
scalar ``e`` (cheaper: H's list is raised once, by the first department).

Steps (header ``step`` = ``batch * 16 + step``, and the message kind code = the step;
batch 0 is the full run, later batches are incremental resolutions,
:mod:`fedid.matching.incremental`):

1. ``HomePublicKey`` lead H -> C, every E and every other H: the Paillier public key (``n``
   and the DJN base) and the run's manifest (its homes and departments).
2. ``HomeBlindedKeys`` H_a -> E_j: ``hash_to_group(id)^h`` for every distinct normalised
   student and guardian ID of H_a, in a secret random order (H_a's key positions).
3. ``EvidenceReblindedHomeKeys`` E_j -> C: that list raised to ``e_j``, order kept.
4. ``EvidenceBlindedRecords`` E_j -> lead H: ``hash_to_group(person)^e_j``, shuffled.
5. ``HomeReblindedRecords`` lead H -> C: that list raised to ``h``, order kept.
6. ``EvidencePayloads`` E_j -> C: the records' released fields, ``slots`` records per
   packed Paillier plaintext (record ``i`` of the shuffled order in slot ``i % slots`` of
   ciphertext ``i // slots``), encrypted under H's key, with the key's fingerprint.
7. ``CoordinatorResults`` C -> H_a: C joins the tokens of steps 3 and 5. For every
   ciphertext holding at least one record matched to H_a, C adds a fresh encryption of a
   uniform ``MASK_BITS + width``-bit mask in every slot NOT matched to H_a (statistical
   hiding, distance <= 2^-40 per slot) and sends it with, per slot, H_a's key position
   (or empty) and the department.
8. H_a decrypts, keeps the matched slots, maps key positions to students (student-keyed
   fields from the student's own record, guardian-keyed ones combined over guardians by
   the schema's ``combine`` rule) and sends C ``HomeAggregates``: counts with small cells
   suppressed and optional discrete-Laplace noise.

What each party learns (and nothing else, under DDH, DCR and the short-exponent DJN
assumption of :mod:`privacy.paillier.fast`; for C also when it deviates, thanks to the
signatures):

* H_a: the released fields of the records matched to its own students and guardians
  (which departments hold them), and the size of every department's set. Unmatched
  records reach it only masked.
* E_j: the size of each home agency's key list. Nothing about who is a student.
* C: set sizes; per home agency and key position (pseudonymous), which departments
  matched; with ``grouping="province"``, which positions of different home agencies share
  a key (e.g. siblings' guardians across schools); with ``evidence_keys="shared"``, which
  records of different departments belong to the same (unknown) person. Never an ID, a
  field value or a key that decrypts. The released aggregates of step 8.

Every message carries the run id, sender, recipient and step; roles reject a message of
another run, a wrong party, a repeated or out-of-order step, a wrong batch, a malformed
point, a list with a repeated point or more items than declared, a trivial ciphertext or
one outside ``(0, n^2)`` or under another key, a released count outside
``[-1, MAX_COUNT]``, with :class:`ProtocolError`, and refuse every later call once one has
been raised (fail closed). Points are validated by the party that blinds them (canonical,
on the curve, not of small order); C, which only compares the tokens it receives, refuses
the all-zero token and repeated tokens.

Cost: every department record is encrypted once per run, packed ``slots`` (20-70) to a
ciphertext, and each ciphertext holding a match is masked by C and decrypted by the
home agency that owns the match. EC work: ``|H|`` hash-and-blind + ``m |H|`` reblinds
(``|H|`` with shared evidence scalars) + ``2 sum |E_j|``.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal, TypeVar

from fedid.errors import ProtocolError
from fedid.matching.messages import RUN_ID_BYTES, Header, Message, MessageKind
from privacy import blinding, blinding_x25519
from privacy.blinding_x25519 import make_domain
from privacy.errors import CryptoError
from privacy.paillier import (
    DEFAULT_KEYSIZE,
    PaillierPrivateKey,
    PaillierPublicKey,
    generate_paillier_keypair,
)

__all__ = [
    "BLINDING_BACKENDS",
    "COORDINATOR",
    "DEFAULT_BLINDING",
    "MAX_COUNT",
    "PROTOCOL_NAME",
    "STEP_SPAN",
    "BlindingKey",
    "HomeKeyring",
    "StepGuard",
    "blinding_backend",
    "evidence_party",
    "home_party",
    "new_run_id",
    "step_code",
]

PROTOCOL_NAME = "fedid.matching.v1"
COORDINATOR = "coordinator"
STEP_SPAN = 16
MAX_COUNT = 1 << 31  # no released count of a province exceeds this (students are < 2^28)

STEP_OF: dict[MessageKind, int] = {
    MessageKind.HOME_PUBLIC_KEY: 1,
    MessageKind.HOME_BLINDED_KEYS: 2,
    MessageKind.EVIDENCE_REBLINDED_HOME_KEYS: 3,
    MessageKind.EVIDENCE_BLINDED_RECORDS: 4,
    MessageKind.HOME_REBLINDED_RECORDS: 5,
    MessageKind.EVIDENCE_PAYLOADS: 6,
    MessageKind.COORDINATOR_RESULTS: 7,
    MessageKind.HOME_AGGREGATES: 8,
}

T = TypeVar("T")
Blinding = Literal["x25519", "ristretto255"]
BlindingKey = blinding_x25519.BlindingKey | blinding.BlindingKey
BLINDING_BACKENDS: dict[str, ModuleType] = {"x25519": blinding_x25519,
                                            "ristretto255": blinding}
DEFAULT_BLINDING: Blinding = "x25519"  # the faster backend (privacy.blinding_x25519 docstring)


def blinding_backend(name: str) -> ModuleType:
    """The blinding module of a backend name; :class:`ProtocolError` if unknown."""
    try:
        return BLINDING_BACKENDS[name]
    except KeyError:
        raise ProtocolError(f"blinding must be one of {sorted(BLINDING_BACKENDS)}. "
                            f"Got {name!r}.") from None
EvidenceKeys = Literal["per_department", "shared"]
Grouping = Literal["per_agency", "province"]


def home_party(agency_id: str) -> str:
    return f"home:{agency_id}"


def evidence_party(department: str) -> str:
    return f"evidence:{department}"


def new_run_id() -> bytes:
    """A fresh random run id (16 bytes)."""
    return secrets.token_bytes(RUN_ID_BYTES)


def step_code(kind: MessageKind, batch: int = 0) -> int:
    return batch * STEP_SPAN + STEP_OF[kind]


def hash_domain(run_id: bytes) -> bytes:
    return make_domain(protocol=PROTOCOL_NAME, run_id=run_id)


@dataclass(frozen=True, slots=True)
class HomeKeyring:
    """The education side's secrets for one run: Paillier key pair and blinding scalar.

    Held by the home agencies of the run only; never by C or an evidence agency.
    """

    public_key: PaillierPublicKey
    private_key: PaillierPrivateKey = field(repr=False)
    blinding: BlindingKey = field(repr=False)
    backend: Blinding = DEFAULT_BLINDING

    @classmethod
    def generate(cls, *, paillier_bits: int = DEFAULT_KEYSIZE,
                 backend: str = DEFAULT_BLINDING) -> HomeKeyring:
        module = blinding_backend(backend)
        public, private = generate_paillier_keypair(n_length=paillier_bits)
        return cls(public_key=public, private_key=private,
                   blinding=module.BlindingKey.generate(), backend=_name(backend))

    def to_bytes(self) -> bytes:
        """The secrets, for sealed delivery to another home agency only (never a file)."""
        private = self.private_key.to_bytes()
        name = self.backend.encode()
        return (struct.pack("<B", len(name)) + name + struct.pack("<I", len(private)) + private
                + self.blinding.secret_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> HomeKeyring:
        try:
            name = data[1:1 + data[0]].decode()
            rest = data[1 + data[0]:]
            size = int(struct.unpack("<I", rest[:4])[0])
        except (IndexError, UnicodeDecodeError, struct.error) as exc:
            raise ProtocolError("keyring is malformed") from exc
        module = blinding_backend(name)
        if len(rest) != 4 + size + 32:
            raise ProtocolError(f"keyring must be {4 + size + 32} bytes. Got {len(rest)}.")
        try:
            private = PaillierPrivateKey.from_bytes(rest[4:4 + size])
            key = module.BlindingKey(rest[4 + size:])
        except (CryptoError, ValueError) as exc:
            raise ProtocolError(f"invalid keyring: {exc}") from exc
        return cls(public_key=private.public_key, private_key=private, blinding=key,
                   backend=_name(name))


def _name(backend: str) -> Blinding:
    blinding_backend(backend)
    return "ristretto255" if backend == "ristretto255" else "x25519"


class StepGuard:
    """Checks the header of every received message; fails closed after the first error."""

    def __init__(self, *, run_id: bytes, party: str) -> None:
        if len(run_id) != RUN_ID_BYTES:
            raise ProtocolError(f"run id must be {RUN_ID_BYTES} bytes. Got {len(run_id)}.")
        self.run_id = run_id
        self.party = party
        self.failed = False
        self._seen: set[tuple[str, int, str]] = set()

    def header(self, *, recipient: str, kind: MessageKind, batch: int = 0) -> Header:
        self.live()
        return Header(run_id=self.run_id, sender=self.party, recipient=recipient,
                      step=step_code(kind, batch))

    def live(self) -> None:
        if self.failed:
            raise ProtocolError(f"{self.party}: an earlier protocol error ended this run")

    def fail(self, message: str) -> ProtocolError:
        self.failed = True
        return ProtocolError(f"{self.party}: {message}")

    def accept(
        self, msg: Message, *, senders: set[str] | frozenset[str], tag: str = ""
    ) -> int:
        """Validate routing and replay; return the message's batch number.

        ``tag`` distinguishes messages of one kind a sender legitimately sends several
        times in a step (e.g. one reblinded list per home agency).
        """
        self.live()
        h = msg.header
        if h.run_id != self.run_id:
            raise self.fail(f"message {msg.KIND.name} belongs to another run")
        if h.recipient != self.party:
            raise self.fail(f"message {msg.KIND.name} is addressed to {h.recipient!r}")
        if h.sender not in senders:
            raise self.fail(f"message {msg.KIND.name} from unexpected sender {h.sender!r}")
        batch, step = divmod(h.step, STEP_SPAN)
        if step != STEP_OF[msg.KIND]:
            raise self.fail(f"message {msg.KIND.name} carries step {step}, expected "
                            f"{STEP_OF[msg.KIND]}")
        key = (h.sender, h.step, tag)
        if key in self._seen:
            raise self.fail(f"replayed message {msg.KIND.name} (step {h.step}) from {h.sender}")
        self._seen.add(key)
        return batch

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    def distinct(self, points: bytes, what: str) -> None:
        """Fail closed unless the 32-byte points of ``points`` are pairwise distinct."""
        n = len(points) // 32
        if len({points[i:i + 32] for i in range(0, len(points), 32)}) != n:
            raise self.fail(f"{what} repeats a point")

    def need(self, value: T | None, message: str) -> T:
        """``value`` if it is set; otherwise fail closed with ``message``."""
        if value is None:
            raise self.fail(message)
        return value

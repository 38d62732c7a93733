"""Agency identity keys: who said what, and delivery that only one agency can read.

Each agency node generates, on its own machine, an Ed25519 signing key and an X25519
key-agreement key (:meth:`AgencyIdentity.generate`). The private halves are written to the
node's folder with 0600 permissions (``identity.key``) and never leave it; the public halves
go to a small file (``identity.pub.toml``) that the operator collects, with every other
agency's, into a :class:`Roster` (agency id -> kind and public keys). The roster reaches
every node out of band, like the CA certificate; whoever writes it decides who is who
(the trust assumption in THREAT_MODEL.md, Matching protocol).

Signatures: Ed25519 over a domain-separated, canonical encoding of a ``label``, a
``context`` (named str/int/bytes fields such as run, step, sender, recipient, sizes) and the
SHA-256 of the body (:func:`signed_bytes`). A signature therefore verifies only for the same
label, the same context and the same body.

Sealed delivery (:func:`seal` / :func:`open_sealed`), from one agency to another::

    magic b"FIDS" | version u8 | ephemeral X25519 public 32 | nonce 12 | AEAD ciphertext | sig 64

    key  = HKDF-SHA256(X25519(ephemeral, recipient agreement key),
                       salt = ephemeral public || recipient agreement public,
                       info = signed_bytes("seal-key", context, b""))
    AEAD = ChaCha20-Poly1305(key, nonce, plaintext, aad = magic..nonce)
    sig  = sender's Ed25519 over signed_bytes("seal", context, magic..ciphertext)

``context`` always includes the sender, the recipient and the recipient's key fingerprint,
so a box opens only for that recipient, from that sender, in that run and step. Only the
recipient's X25519 key opens it; a relay (the coordinator) can drop it, never read or alter it.
"""

from __future__ import annotations

import hashlib
import secrets
import stat
import struct
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.atomic import atomic_write_bytes
from privacy.errors import CryptoError

__all__ = [
    "KEY_BYTES",
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "SIGNATURE_BYTES",
    "AgencyIdentity",
    "Context",
    "PublicIdentity",
    "Roster",
    "open_sealed",
    "seal",
    "signed_bytes",
]

KEY_BYTES = 32  # Ed25519 and X25519 public and private keys
SIGNATURE_BYTES = 64  # Ed25519 (RFC 8032)
NONCE_BYTES = 12  # ChaCha20-Poly1305 (RFC 8439)
PRIVATE_FILE = "identity.key"
PUBLIC_FILE = "identity.pub.toml"
_DOMAIN = b"fedid.identity.v1\x00"
_SEAL_MAGIC = b"FIDS"
_SEAL_VERSION = 1
_SEAL_HEAD = len(_SEAL_MAGIC) + 1 + KEY_BYTES + NONCE_BYTES
_PRIVATE_FORMAT = "fedid-identity-private-v1"
_PUBLIC_FORMAT = "fedid-identity-public-v1"
_ROSTER_FORMAT = "fedid-roster-v1"

Context = Mapping[str, str | int | bytes]


def _lp(raw: bytes) -> bytes:
    return struct.pack("<I", len(raw)) + raw


def _field(value: str | int | bytes) -> bytes:
    if isinstance(value, bool):
        raise CryptoError(f"context values must be str, int or bytes. Got {type(value).__name__}.")
    if isinstance(value, int):
        return b"i" + _lp(str(value).encode())
    if isinstance(value, str):
        return b"s" + _lp(value.encode())
    if isinstance(value, bytes):
        return b"b" + _lp(value)
    raise CryptoError(f"context values must be str, int or bytes. Got {type(value).__name__}.")


def signed_bytes(label: str, context: Context, body: bytes) -> bytes:
    """The exact bytes a signature covers: domain, label, sorted context, SHA-256(body)."""
    parts = [_DOMAIN, _lp(label.encode()), struct.pack("<I", len(context))]
    for name in sorted(context):
        parts.append(_lp(name.encode()))
        parts.append(_field(context[name]))
    parts.append(hashlib.sha256(body).digest())
    return b"".join(parts)


def _check_name(what: str, value: str) -> None:
    raw = value.encode()
    if not 0 < len(raw) <= 255 or any(ch < 0x20 for ch in raw):
        raise CryptoError(f"{what} must be 1-255 printable bytes. Got {len(raw)} bytes.")


def _hex_key(what: str, text: object) -> bytes:
    try:
        raw = bytes.fromhex(str(text))
    except ValueError as exc:
        raise CryptoError(f"{what} must be hex.") from exc
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"{what} must be {KEY_BYTES} bytes. Got {len(raw)}.")
    return raw


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """An agency's public halves: what the roster lists and every peer verifies against.

    ``department`` names the evidence a departmental agency holds ("" otherwise).
    """

    agency: str
    kind: str
    signing_key: bytes
    agreement_key: bytes
    department: str = ""

    def __post_init__(self) -> None:
        _check_name("agency id", self.agency)
        _check_name("agency kind", self.kind)
        if self.department:
            _check_name("department", self.department)
        for what, key in (("signing key", self.signing_key), ("agreement key", self.agreement_key)):
            if len(key) != KEY_BYTES:
                raise CryptoError(f"{what} must be {KEY_BYTES} bytes. Got {len(key)}.")
        try:
            Ed25519PublicKey.from_public_bytes(self.signing_key)
            X25519PublicKey.from_public_bytes(self.agreement_key)
        except ValueError as exc:
            raise CryptoError("public key does not decode") from exc

    def fingerprint(self) -> str:
        """SHA-256 (hex) over agency, kind and both public keys."""
        raw = (_DOMAIN + _lp(self.agency.encode()) + _lp(self.kind.encode())
               + _lp(self.department.encode()) + self.signing_key + self.agreement_key)
        return hashlib.sha256(raw).hexdigest()

    def verify(self, signature: bytes, *, label: str, context: Context, body: bytes) -> None:
        """Raise :class:`CryptoError` unless ``signature`` is this agency's over the inputs."""
        if len(signature) != SIGNATURE_BYTES:
            raise CryptoError(f"signature must be {SIGNATURE_BYTES} bytes. Got {len(signature)}.")
        try:
            Ed25519PublicKey.from_public_bytes(self.signing_key).verify(
                signature, signed_bytes(label, context, body))
        except InvalidSignature as exc:
            raise CryptoError(f"bad signature: not {self.agency}'s over this {label}") from exc

    def to_mapping(self) -> dict[str, str]:
        out = {"agency": self.agency, "kind": self.kind, "department": self.department,
               "signing-key": self.signing_key.hex(), "agreement-key": self.agreement_key.hex()}
        return out if self.department else {k: v for k, v in out.items() if k != "department"}

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> PublicIdentity:
        try:
            return cls(agency=str(raw["agency"]), kind=str(raw["kind"]),
                       signing_key=_hex_key("signing-key", raw["signing-key"]),
                       agreement_key=_hex_key("agreement-key", raw["agreement-key"]),
                       department=str(raw.get("department", "")))
        except KeyError as exc:
            raise CryptoError(f"public identity is missing field {exc.args[0]!r}") from exc

    def to_toml(self) -> bytes:
        body = {"format": _PUBLIC_FORMAT, **self.to_mapping(), "fingerprint": self.fingerprint()}
        return tomli_w.dumps(body).encode()

    @classmethod
    def from_toml(cls, data: bytes) -> PublicIdentity:
        raw = _read_toml(data, _PUBLIC_FORMAT, "public identity")
        pub = cls.from_mapping(raw)
        if "fingerprint" in raw and raw["fingerprint"] != pub.fingerprint():
            raise CryptoError("public identity fingerprint does not match its keys")
        return pub

    @classmethod
    def load(cls, path: Path) -> PublicIdentity:
        return cls.from_toml(_read(path))


@dataclass(frozen=True, slots=True)
class AgencyIdentity:
    """An agency's private keys. Generate on the node; :meth:`save` writes them 0600 there."""

    agency: str
    kind: str
    signing: Ed25519PrivateKey = field(repr=False)
    agreement: X25519PrivateKey = field(repr=False)
    department: str = ""

    @classmethod
    def generate(cls, *, agency: str, kind: str, department: str = "") -> AgencyIdentity:
        """Fresh keys from the OS CSPRNG."""
        return cls(agency=agency, kind=kind, signing=Ed25519PrivateKey.generate(),
                   agreement=X25519PrivateKey.generate(), department=department)

    @classmethod
    def from_seeds(cls, *, agency: str, kind: str, signing_seed: bytes,
                   agreement_private: bytes, department: str = "") -> AgencyIdentity:
        """Keys from given 32-byte secrets (RFC 8032 seed, RFC 7748 scalar).

        Warning: deterministic; for known-answer tests and for loading a saved key only.
        """
        if len(signing_seed) != KEY_BYTES or len(agreement_private) != KEY_BYTES:
            raise CryptoError(f"private keys must be {KEY_BYTES} bytes.")
        return cls(agency=agency, kind=kind,
                   signing=Ed25519PrivateKey.from_private_bytes(signing_seed),
                   agreement=X25519PrivateKey.from_private_bytes(agreement_private),
                   department=department)

    @property
    def public(self) -> PublicIdentity:
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        return PublicIdentity(agency=self.agency, kind=self.kind, department=self.department,
                              signing_key=self.signing.public_key().public_bytes(*raw),
                              agreement_key=self.agreement.public_key().public_bytes(*raw))

    def sign(self, *, label: str, context: Context, body: bytes) -> bytes:
        """Ed25519 signature over :func:`signed_bytes` (64 bytes, deterministic)."""
        return self.signing.sign(signed_bytes(label, context, body))

    def _private_toml(self) -> bytes:
        raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, \
            serialization.NoEncryption()
        return tomli_w.dumps({
            "format": _PRIVATE_FORMAT, "agency": self.agency, "kind": self.kind,
            "department": self.department,
            "signing-seed": self.signing.private_bytes(*raw).hex(),
            "agreement-private": self.agreement.private_bytes(*raw).hex(),
        }).encode()

    def save(self, folder: Path) -> Path:
        """Write ``identity.key`` (0600) and ``identity.pub.toml`` (0644); return the latter."""
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / PRIVATE_FILE, self._private_toml(), mode=0o600)
        public_path = folder / PUBLIC_FILE
        atomic_write_bytes(public_path, self.public.to_toml(), mode=0o644)
        return public_path

    @classmethod
    def load(cls, folder: Path) -> AgencyIdentity:
        """Read ``identity.key``; refuse a file that group or others may read."""
        path = folder / PRIVATE_FILE
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise CryptoError(f"cannot read identity key {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CryptoError(f"identity key {path} must be private (mode 0600). "
                              f"Got {stat.S_IMODE(mode):04o}.")
        raw = _read_toml(_read(path), _PRIVATE_FORMAT, "identity key")
        try:
            return cls.from_seeds(agency=str(raw["agency"]), kind=str(raw["kind"]),
                                  department=str(raw.get("department", "")),
                                  signing_seed=_hex_key("signing-seed", raw["signing-seed"]),
                                  agreement_private=_hex_key("agreement-private",
                                                             raw["agreement-private"]))
        except KeyError as exc:
            raise CryptoError(f"identity key is missing field {exc.args[0]!r}") from exc

    @classmethod
    def load_or_create(cls, folder: Path, *, agency: str, kind: str,
                       department: str = "") -> AgencyIdentity:
        """The node's identity in ``folder``: loaded if present (agency, kind and department
        must match), else generated and saved."""
        if not (folder / PRIVATE_FILE).exists():
            identity = cls.generate(agency=agency, kind=kind, department=department)
            identity.save(folder)
            return identity
        identity = cls.load(folder)
        if (identity.agency, identity.kind, identity.department) != (agency, kind, department):
            raise CryptoError(f"identity key in {folder} is for {identity.agency!r} "
                              f"({identity.kind}), not {agency!r} ({kind})")
        return identity


@dataclass(frozen=True, slots=True)
class Roster:
    """Agency id -> public identity: the nodes' out-of-band list of who is who."""

    agencies: Mapping[str, PublicIdentity]

    def __post_init__(self) -> None:
        seen: set[bytes] = set()
        for agency, pub in self.agencies.items():
            if agency != pub.agency:
                raise CryptoError(f"roster entry {agency!r} holds the keys of {pub.agency!r}")
            for key in (pub.signing_key, pub.agreement_key):
                if key in seen:
                    raise CryptoError(f"roster reuses a public key (agency {agency!r})")
                seen.add(key)

    @classmethod
    def of(cls, identities: Iterable[PublicIdentity]) -> Roster:
        entries: dict[str, PublicIdentity] = {}
        for pub in identities:
            if pub.agency in entries:
                raise CryptoError(f"roster lists agency {pub.agency!r} twice")
            entries[pub.agency] = pub
        return cls(agencies=entries)

    @classmethod
    def from_public_files(cls, paths: Iterable[Path]) -> Roster:
        return cls.of(PublicIdentity.load(p) for p in paths)

    def get(self, agency: str) -> PublicIdentity:
        try:
            return self.agencies[agency]
        except KeyError:
            raise CryptoError(f"agency {agency!r} is not in the roster") from None

    def of_kind(self, kind: str) -> tuple[str, ...]:
        """Agency ids of one kind, sorted."""
        return tuple(sorted(a for a, pub in self.agencies.items() if pub.kind == kind))

    def holder_of(self, department: str) -> PublicIdentity:
        """The one agency registered for ``department``."""
        found = [pub for pub in self.agencies.values() if pub.department == department]
        if len(found) != 1:
            raise CryptoError(f"department {department!r} must have exactly one agency in the "
                              f"roster. Got {len(found)}.")
        return found[0]

    def fingerprint(self) -> str:
        """SHA-256 (hex) over every entry's fingerprint, in agency order."""
        joined = "".join(f"{a}:{self.agencies[a].fingerprint()}\n" for a in sorted(self.agencies))
        return hashlib.sha256(_DOMAIN + joined.encode()).hexdigest()

    def to_toml(self) -> bytes:
        table = {a: {k: v for k, v in self.agencies[a].to_mapping().items() if k != "agency"}
                 for a in sorted(self.agencies)}
        return tomli_w.dumps({"format": _ROSTER_FORMAT, "agencies": table}).encode()

    @classmethod
    def from_toml(cls, data: bytes) -> Roster:
        raw = _read_toml(data, _ROSTER_FORMAT, "roster")
        table = raw.get("agencies")
        if not isinstance(table, dict):
            raise CryptoError("roster has no [agencies] table")
        return cls.of(PublicIdentity.from_mapping({"agency": a, **entry})
                      for a, entry in table.items())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.to_toml(), mode=0o644)

    @classmethod
    def load(cls, path: Path) -> Roster:
        return cls.from_toml(_read(path))


def _seal_context(sender: PublicIdentity, recipient: PublicIdentity, context: Context) -> Context:
    reserved = {"seal-sender", "seal-recipient", "seal-recipient-key"} & set(context)
    if reserved:
        raise CryptoError(f"seal context may not set {sorted(reserved)}")
    return {**context, "seal-sender": sender.agency, "seal-recipient": recipient.agency,
            "seal-recipient-key": recipient.fingerprint()}


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # OpenSSL refuses an all-zero result (low-order point)
        raise CryptoError("X25519 agreement failed (low-order public key)") from exc
    if shared == bytes(KEY_BYTES):
        raise CryptoError("X25519 shared secret is all zero (low-order public key)")
    return shared


def _seal_key(shared: bytes, *, ephemeral: bytes, recipient: bytes, context: Context) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=signed_bytes("seal-key", context, b""))
    return hkdf.derive(shared)


def seal(plaintext: bytes, *, sender: AgencyIdentity, recipient: PublicIdentity,
         context: Context, ephemeral: X25519PrivateKey | None = None,
         nonce: bytes | None = None) -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient`` opens it, signed by ``sender``.

    ``ephemeral`` and ``nonce`` default to fresh OS randomness; pass them only in
    known-answer tests (reusing them breaks confidentiality).
    """
    ctx = _seal_context(sender.public, recipient, context)
    eph = ephemeral if ephemeral is not None else X25519PrivateKey.generate()
    iv = nonce if nonce is not None else secrets.token_bytes(NONCE_BYTES)
    if len(iv) != NONCE_BYTES:
        raise CryptoError(f"nonce must be {NONCE_BYTES} bytes. Got {len(iv)}.")
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    shared = _exchange(eph, recipient.agreement_key)
    key = _seal_key(shared, ephemeral=eph_pub, recipient=recipient.agreement_key, context=ctx)
    head = _SEAL_MAGIC + bytes([_SEAL_VERSION]) + eph_pub + iv
    boxed = head + ChaCha20Poly1305(key).encrypt(iv, plaintext, head)
    return boxed + sender.sign(label="seal", context=ctx, body=boxed)


def open_sealed(sealed: bytes, *, recipient: AgencyIdentity, sender: PublicIdentity,
                context: Context) -> bytes:
    """Verify ``sender``'s signature and decrypt; :class:`CryptoError` on any mismatch."""
    if len(sealed) < _SEAL_HEAD + 16 + SIGNATURE_BYTES:
        raise CryptoError(f"sealed box is too short. Got {len(sealed)} bytes.")
    if sealed[:4] != _SEAL_MAGIC or sealed[4] != _SEAL_VERSION:
        raise CryptoError("not a fedid sealed box (bad magic or version)")
    ctx = _seal_context(sender, recipient.public, context)
    boxed, signature = sealed[:-SIGNATURE_BYTES], sealed[-SIGNATURE_BYTES:]
    sender.verify(signature, label="seal", context=ctx, body=boxed)
    eph_pub, iv = sealed[5:5 + KEY_BYTES], sealed[5 + KEY_BYTES:_SEAL_HEAD]
    shared = _exchange(recipient.agreement, eph_pub)
    key = _seal_key(shared, ephemeral=eph_pub, recipient=recipient.public.agreement_key,
                    context=ctx)
    try:
        return ChaCha20Poly1305(key).decrypt(iv, boxed[_SEAL_HEAD:], boxed[:_SEAL_HEAD])
    except InvalidTag as exc:
        raise CryptoError("sealed box does not decrypt (altered or not for this recipient)") \
            from exc


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CryptoError(f"cannot read {path}: {exc.strerror}") from exc


def _read_toml(data: bytes, expected: str, what: str) -> dict[str, object]:
    try:
        raw = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CryptoError(f"{what} is not valid TOML: {exc}") from exc
    if raw.get("format") != expected:
        raise CryptoError(f"{what} format must be {expected!r}. Got {raw.get('format')!r}.")
    return raw

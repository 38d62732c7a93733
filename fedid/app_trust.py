"""Which app bundles a node runs: Ed25519 signatures over a FAB, with a serial and issue time.

A node runs only app bundles (Flower FABs) signed by an entity it trusts. Two checks, both
on the node before any message of the run reaches its ClientApp:

- Flower's own: ``flower-supernode --trusted-entities FILE`` refuses, with an error reply
  to every message of the run, a FAB whose verification record carries no valid signature
  by one of the keys in ``FILE`` over ``signed_at (8 bytes, big-endian) || sha256(FAB)``.
- fedid's (:func:`check_bundle`, run inside the node's SuperNode by
  :mod:`clients.supernode`): the same signer's second signature over
  ``"fedid.app-bundle.v1\\0" || serial (8 bytes) || signed_at (8 bytes) || sha256(FAB)``
  must verify, and the serial must not be below the highest serial this node accepted
  before (recorded on the node's own disk, :data:`STATE_FILE`, written atomically); a
  bundle with the recorded serial must be the recorded FAB. With a maximum age set, a
  bundle signed longer ago (or more than :data:`MAX_SKEW_S` in the future) is refused too.
  So an old signed bundle cannot be replayed once a newer one ran, and a changed serial
  breaks the signature.

1. The signer (the party the agencies trust to review the code, e.g. the province's
   software office) makes a key pair (``fedid keygen --signer NAME``) and gives the public
   line (``ssh-ed25519 ...``) to every agency.
2. It builds the FAB of the reviewed app folder (Flower builds FABs byte for byte
   reproducibly) and signs its hash with the next release serial (``fedid sign-app
   --serial N``): a :class:`AppSignature` carrying both signatures.
3. The coordinator attaches the signature to the FAB it submits (it cannot make one: it
   lacks the private key). A changed file changes the hash and the signature no longer
   verifies; an unsigned FAB has no record at all. Either way every node refuses it.
4. Each node lists the keys it trusts (``fedid node --trust signer.pub``), written here as
   the YAML mapping Flower reads: ``{key id: "ssh-ed25519 ..."}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedid.errors import ConfigError, CryptoError, ProtocolError
from privacy.atomic import atomic_write_bytes

__all__ = ["MAX_SKEW_S", "STATE_FILE", "AcceptedBundle", "AppSignature", "check_bundle",
           "key_id", "sign_fab", "trusted_entities_text"]

#: the node's record of the newest bundle it accepted, in its own folder (``--out``)
STATE_FILE = "app_bundle.json"
MAX_SKEW_S = 300  # clocks of the signer and an agency may differ by this much
_BUNDLE_LABEL = b"fedid.app-bundle.v1\x00"


def _public_line(line: str) -> str:
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise ConfigError(
            f"an app signer's public key must be one 'ssh-ed25519 ...' line. Got {line[:40]!r}.")
    return f"{parts[0]} {parts[1]}"


def key_id(public_line: str) -> str:
    """Flower's public key id for an ``ssh-ed25519`` line: ``fpk_`` + 16 bytes of its hash."""
    raw = base64.b64decode(_public_line(public_line).split()[1])
    return "fpk_" + hashlib.sha256(raw).hexdigest()[:32]


def trusted_entities_text(public_lines: list[str]) -> str:
    """The ``--trusted-entities`` file for these public keys (JSON is valid YAML)."""
    if not public_lines:
        raise ConfigError("at least one trusted app signer is needed.")
    return json.dumps({key_id(p): _public_line(p) for p in public_lines}, indent=1) + "\n"


@dataclass(frozen=True, slots=True)
class AppSignature:
    """A signer's signatures over one FAB (as ``fedid sign-app`` writes it): Flower's over
    the issue time and the FAB's hash, fedid's over the serial, issue time and hash."""

    public_key_id: str
    fab_sha256: str
    signed_at: int
    signature: str  # base64url, no padding
    serial: int
    bundle_signature: str  # base64url, no padding

    def verification(self) -> dict[str, str]:
        """The FAB verification record Flower's SuperNode checks (Flower reads
        ``signature`` and ``signed_at``; fedid's check the serial and its signature)."""
        entry = {"signature": self.signature, "signed_at": self.signed_at,
                 "serial": self.serial, "bundle-signature": self.bundle_signature}
        return {"valid_license": "Valid", self.public_key_id: json.dumps(entry)}

    def to_json(self) -> str:
        return json.dumps({"public-key-id": self.public_key_id, "fab-sha256": self.fab_sha256,
                           "signed-at": self.signed_at, "signature": self.signature,
                           "serial": self.serial, "bundle-signature": self.bundle_signature},
                          indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> AppSignature:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read app signature {path}: {exc}") from exc
        if not isinstance(raw, dict) or "serial" not in raw:
            raise ConfigError(f"app signature {path} carries no serial: nodes refuse it. Sign "
                              "the app again with `fedid sign-app --serial N`.")
        try:
            return cls(public_key_id=str(raw["public-key-id"]),
                       fab_sha256=str(raw["fab-sha256"]), signed_at=int(raw["signed-at"]),
                       signature=str(raw["signature"]), serial=int(raw["serial"]),
                       bundle_signature=str(raw["bundle-signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read app signature {path}: {exc}") from exc


def _message(digest: bytes, signed_at: int) -> bytes:
    return signed_at.to_bytes(8, "big") + digest


def _bundle_message(digest: bytes, signed_at: int, serial: int) -> bytes:
    return _BUNDLE_LABEL + serial.to_bytes(8, "big") + signed_at.to_bytes(8, "big") + digest


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign_fab(fab: bytes, private_key_pem: bytes, *, serial: int,
             signed_at: int | None = None) -> AppSignature:
    """Sign ``fab`` with an OpenSSH Ed25519 private key (``fedid keygen --signer``) as
    release ``serial`` (a positive integer the signer raises with every release)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not 0 < serial < 2**63:
        raise ConfigError(f"the app's serial must be a positive integer. Got {serial}.")
    key = serialization.load_ssh_private_key(private_key_pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CryptoError("an app signing key must be Ed25519 (fedid keygen --signer).")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    at = int(time.time()) if signed_at is None else signed_at
    digest = hashlib.sha256(fab).digest()
    return AppSignature(public_key_id=key_id(public), fab_sha256=digest.hex(), signed_at=at,
                        signature=_b64(key.sign(_message(digest, at))), serial=serial,
                        bundle_signature=_b64(key.sign(_bundle_message(digest, at, serial))))


@dataclass(frozen=True, slots=True)
class AcceptedBundle:
    """The newest bundle a node accepted: what :data:`STATE_FILE` records."""

    serial: int
    fab_sha256: str
    signed_at: int
    public_key_id: str

    def to_json(self) -> bytes:
        return json.dumps({"serial": self.serial, "fab-sha256": self.fab_sha256,
                           "signed-at": self.signed_at, "public-key-id": self.public_key_id},
                          indent=1).encode() + b"\n"

    @classmethod
    def load(cls, path: Path) -> AcceptedBundle | None:
        """The record in ``path``; None if the node accepted no bundle yet."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(serial=int(raw["serial"]), fab_sha256=str(raw["fab-sha256"]),
                       signed_at=int(raw["signed-at"]),
                       public_key_id=str(raw["public-key-id"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # a damaged record must not reopen the door to old bundles: refuse every one
            raise ConfigError(f"the node's app bundle record {path} is unreadable ({exc}); "
                              "restore it, or remove it to accept any signed bundle.") from exc


def _decode_b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise CryptoError("a bundle signature must be base64url text.")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise CryptoError("a bundle signature is not base64url.") from exc


def _signed_serial(digest: bytes, entry: object, public_line: str) -> tuple[int, int]:
    """(serial, signed_at) of one signer's entry; CryptoError unless fedid's signature
    over them and ``digest`` verifies under ``public_line``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not isinstance(entry, dict) or "serial" not in entry or "bundle-signature" not in entry:
        raise CryptoError("the bundle carries no signed serial (signed by an older fedid "
                          "sign-app?).")
    serial, signed_at = entry["serial"], entry.get("signed_at")
    if not (isinstance(serial, int) and isinstance(signed_at, int)
            and 0 < serial < 2**63 and 0 <= signed_at < 2**63):
        raise CryptoError("the bundle's serial or issue time is malformed.")
    key = serialization.load_ssh_public_key(_public_line(public_line).encode())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise CryptoError("an app signer's key must be Ed25519.")
    try:
        key.verify(_decode_b64(entry["bundle-signature"]),
                   _bundle_message(digest, signed_at, serial))
    except InvalidSignature as exc:
        raise CryptoError("the bundle's serial and issue time are not the signer's (bad "
                          "signature).") from exc
    return serial, signed_at


def check_bundle(fab: bytes, verifications: Mapping[str, str],
                 trusted: Mapping[str, str], *, state: Path, max_age: float | None,
                 now: float) -> AcceptedBundle:
    """fedid's check of a FAB Flower already verified (module docstring); records a newer
    serial in ``state``. CryptoError: no valid signed serial by a trusted signer;
    ProtocolError: a replay (lower serial, or the recorded serial on another FAB) or a
    bundle older than ``max_age`` seconds."""
    digest = hashlib.sha256(fab).digest()
    found: list[AcceptedBundle] = []
    problems: list[str] = []
    for kid, text in verifications.items():
        if kid not in trusted:
            continue
        try:
            serial, signed_at = _signed_serial(digest, json.loads(text), trusted[kid])
        except (CryptoError, ValueError) as exc:
            problems.append(str(exc))
            continue
        found.append(AcceptedBundle(serial=serial, fab_sha256=digest.hex(),
                                    signed_at=signed_at, public_key_id=kid))
    if not found:
        raise CryptoError("no trusted signer's serial verifies for this bundle"
                          + (f": {problems[0]}" if problems else "."))
    bundle = max(found, key=lambda b: b.serial)
    if max_age is not None and not -MAX_SKEW_S <= now - bundle.signed_at <= max_age:
        raise ProtocolError(f"the bundle was signed {int(now - bundle.signed_at)} s ago; this "
                            f"node accepts bundles signed at most {int(max_age)} s ago.")
    last = AcceptedBundle.load(state)
    if last is not None:
        if bundle.serial < last.serial:
            raise ProtocolError(f"the bundle's serial {bundle.serial} is below serial "
                                f"{last.serial}, which this node already ran (a replay).")
        if bundle.serial == last.serial and bundle.fab_sha256 != last.fab_sha256:
            raise ProtocolError(f"serial {bundle.serial} was accepted for another bundle; "
                                "a new bundle needs a higher serial.")
    if last is None or bundle.serial > last.serial:
        atomic_write_bytes(state, bundle.to_json(), mode=0o600)
    return bundle

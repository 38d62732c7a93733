"""Which app bundles a node runs: Ed25519 signatures over a FAB, checked by Flower.

A node runs only app bundles (Flower FABs) signed by an entity it trusts. The checks are
Flower's own: ``flower-supernode --trusted-entities FILE`` refuses, with an error reply to
every message of the run, a FAB whose verification record carries no valid signature by
one of the keys in ``FILE`` over ``signed_at (8 bytes, big-endian) || sha256(FAB)``.

1. The signer (the party the agencies trust to review the code, e.g. the province's
   software office) makes a key pair (``fedid keygen --signer NAME``) and gives the public
   line (``ssh-ed25519 ...``) to every agency.
2. It builds the FAB of the reviewed app folder (Flower builds FABs byte for byte
   reproducibly) and signs its hash (``fedid sign-app``): a :class:`AppSignature`.
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
from dataclasses import dataclass
from pathlib import Path

from fedid.errors import ConfigError, CryptoError

__all__ = ["AppSignature", "key_id", "sign_fab", "trusted_entities_text"]


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
    """A signer's signature over one FAB (as ``fedid sign-app`` writes it)."""

    public_key_id: str
    fab_sha256: str
    signed_at: int
    signature: str  # base64url, no padding

    def verification(self) -> dict[str, str]:
        """The FAB verification record Flower's SuperNode checks."""
        entry = {"signature": self.signature, "signed_at": self.signed_at}
        return {"valid_license": "Valid", self.public_key_id: json.dumps(entry)}

    def to_json(self) -> str:
        return json.dumps({"public-key-id": self.public_key_id, "fab-sha256": self.fab_sha256,
                           "signed-at": self.signed_at, "signature": self.signature},
                          indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> AppSignature:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(public_key_id=str(raw["public-key-id"]),
                       fab_sha256=str(raw["fab-sha256"]), signed_at=int(raw["signed-at"]),
                       signature=str(raw["signature"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read app signature {path}: {exc}") from exc


def _message(digest: bytes, signed_at: int) -> bytes:
    return signed_at.to_bytes(8, "big") + digest


def sign_fab(fab: bytes, private_key_pem: bytes, *, signed_at: int | None = None
             ) -> AppSignature:
    """Sign ``fab`` with an OpenSSH Ed25519 private key (``fedid keygen --signer``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = serialization.load_ssh_private_key(private_key_pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CryptoError("an app signing key must be Ed25519 (fedid keygen --signer).")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    at = int(time.time()) if signed_at is None else signed_at
    digest = hashlib.sha256(fab).digest()
    sig = base64.urlsafe_b64encode(key.sign(_message(digest, at))).decode().rstrip("=")
    return AppSignature(public_key_id=key_id(public), fab_sha256=digest.hex(), signed_at=at,
                        signature=sig)

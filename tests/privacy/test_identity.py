"""Agency identity keys: known answers, signatures bound to context, sealed delivery."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.errors import CryptoError
from privacy.identity import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    AgencyIdentity,
    PublicIdentity,
    Roster,
    open_sealed,
    seal,
    signed_bytes,
)

# RFC 8032 section 7.1, TEST 1 (Ed25519) and RFC 7748 section 6.1 (X25519 Alice and Bob).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUB = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

CTX = {"run": b"\x01" * 16, "step": 3}


def _alice() -> AgencyIdentity:
    return AgencyIdentity.from_seeds(agency="edu_a", kind="education",
                                     signing_seed=RFC8032_SEED, agreement_private=ALICE)


def _bob() -> AgencyIdentity:
    return AgencyIdentity.from_seeds(agency="dept_b", kind="department", department="tax",
                                     signing_seed=bytes(range(32)), agreement_private=BOB)


def test_known_answer_keys_match_the_rfcs() -> None:
    alice = _alice()
    assert alice.public.signing_key == RFC8032_PUB
    assert alice.public.agreement_key == ALICE_PUB
    assert alice.signing.sign(b"") == RFC8032_SIG_EMPTY
    assert _bob().public.agreement_key == BOB_PUB
    assert alice.agreement.exchange(X25519PublicKey.from_public_bytes(BOB_PUB)) == SHARED


def test_signature_verifies_with_plain_ed25519_over_the_documented_bytes() -> None:
    alice = _alice()
    sig = alice.sign(label="msg", context=CTX, body=b"body")
    Ed25519PublicKey.from_public_bytes(RFC8032_PUB).verify(sig, signed_bytes("msg", CTX, b"body"))
    alice.public.verify(sig, label="msg", context=CTX, body=b"body")


@pytest.mark.parametrize(("label", "context", "body"), [
    ("other", CTX, b"body"),
    ("msg", {**CTX, "step": 4}, b"body"),
    ("msg", {**CTX, "run": b"\x02" * 16}, b"body"),
    ("msg", {**CTX, "extra": 0}, b"body"),
    ("msg", {"run": b"\x01" * 16, "step": "3"}, b"body"),  # type is part of the encoding
    ("msg", CTX, b"bodY"),
])
def test_signature_is_bound_to_label_context_and_body(
    label: str, context: dict[str, str | int | bytes], body: bytes
) -> None:
    sig = _alice().sign(label="msg", context=CTX, body=b"body")
    with pytest.raises(CryptoError, match="bad signature"):
        _alice().public.verify(sig, label=label, context=context, body=body)


def test_signature_of_another_agency_is_refused() -> None:
    sig = _bob().sign(label="msg", context=CTX, body=b"body")
    with pytest.raises(CryptoError, match="edu_a"):
        _alice().public.verify(sig, label="msg", context=CTX, body=b"body")


def test_seal_round_trip_and_two_seals_differ() -> None:
    alice, bob = _alice(), _bob()
    one = seal(b"keyring", sender=alice, recipient=bob.public, context=CTX)
    two = seal(b"keyring", sender=alice, recipient=bob.public, context=CTX)
    assert one != two
    for box in (one, two):
        assert open_sealed(box, recipient=bob, sender=alice.public, context=CTX) == b"keyring"
    assert b"keyring" not in one


def test_seal_follows_the_documented_construction() -> None:
    """Open a box with the bare primitives, as the module docstring specifies."""
    alice, bob = _alice(), _bob()
    eph = X25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    box = seal(b"secret", sender=alice, recipient=bob.public, context=CTX, ephemeral=eph,
               nonce=bytes(12))
    assert box[:5] == b"FIDS\x01"
    eph_pub, nonce = box[5:37], box[37:49]
    ctx = {**CTX, "seal-sender": "edu_a", "seal-recipient": "dept_b",
           "seal-recipient-key": bob.public.fingerprint()}
    Ed25519PublicKey.from_public_bytes(RFC8032_PUB).verify(
        box[-64:], signed_bytes("seal", ctx, box[:-64]))
    shared = X25519PrivateKey.from_private_bytes(BOB).exchange(
        X25519PublicKey.from_public_bytes(eph_pub))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + BOB_PUB,
               info=signed_bytes("seal-key", ctx, b"")).derive(shared)
    assert ChaCha20Poly1305(key).decrypt(nonce, box[49:-64], box[:49]) == b"secret"
    # Deterministic inputs give a deterministic box (Ed25519 signatures are deterministic).
    assert box == seal(b"secret", sender=alice, recipient=bob.public, context=CTX,
                       ephemeral=eph, nonce=bytes(12))


@pytest.mark.parametrize("where", [0, 4, 5, 40, 50, -65, -1])
def test_tampered_box_is_refused(where: int) -> None:
    alice, bob = _alice(), _bob()
    box = bytearray(seal(b"keyring", sender=alice, recipient=bob.public, context=CTX))
    box[where] ^= 1
    with pytest.raises(CryptoError):
        open_sealed(bytes(box), recipient=bob, sender=alice.public, context=CTX)


def test_box_for_another_recipient_or_context_or_sender_is_refused() -> None:
    alice, bob = _alice(), _bob()
    carol = AgencyIdentity.generate(agency="dept_c", kind="department")
    box = seal(b"keyring", sender=alice, recipient=bob.public, context=CTX)
    with pytest.raises(CryptoError):
        open_sealed(box, recipient=carol, sender=alice.public, context=CTX)
    with pytest.raises(CryptoError):
        open_sealed(box, recipient=bob, sender=alice.public, context={**CTX, "step": 9})
    with pytest.raises(CryptoError):
        open_sealed(box, recipient=bob, sender=carol.public, context=CTX)
    with pytest.raises(CryptoError, match="too short"):
        open_sealed(box[:60], recipient=bob, sender=alice.public, context=CTX)
    with pytest.raises(CryptoError, match="may not set"):
        seal(b"x", sender=alice, recipient=bob.public, context={"seal-sender": "edu_a"})


def test_low_order_agreement_key_is_refused() -> None:
    zero = PublicIdentity(agency="evil", kind="department", signing_key=RFC8032_PUB,
                          agreement_key=bytes(32))
    with pytest.raises(CryptoError):
        seal(b"x", sender=_alice(), recipient=zero, context=CTX)


def test_save_load_permissions_and_public_file(tmp_path: Path) -> None:
    ident = AgencyIdentity.load_or_create(tmp_path / "node", agency="edu_a", kind="education")
    key = tmp_path / "node" / PRIVATE_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ident.signing.private_bytes_raw().hex() not in (tmp_path / "node" / PUBLIC_FILE
                                                           ).read_text()
    again = AgencyIdentity.load_or_create(tmp_path / "node", agency="edu_a", kind="education")
    assert again.public == ident.public
    assert PublicIdentity.load(tmp_path / "node" / PUBLIC_FILE) == ident.public
    with pytest.raises(CryptoError, match="not 'edu_b'"):
        AgencyIdentity.load_or_create(tmp_path / "node", agency="edu_b", kind="education")
    key.chmod(0o644)
    with pytest.raises(CryptoError, match="mode 0600"):
        AgencyIdentity.load(tmp_path / "node")
    assert sorted(p.name for p in (tmp_path / "node").iterdir()) == [PRIVATE_FILE, PUBLIC_FILE]


def test_public_file_with_wrong_fingerprint_is_refused(tmp_path: Path) -> None:
    text = _alice().public.to_toml().decode()
    bad = text.replace(_alice().public.fingerprint(), "00" * 32)
    with pytest.raises(CryptoError, match="fingerprint"):
        PublicIdentity.from_toml(bad.encode())


def test_roster_round_trip_lookup_and_fingerprint(tmp_path: Path) -> None:
    a, b = _alice(), _bob()
    paths = []
    for ident in (a, b):
        paths.append(ident.save(tmp_path / ident.agency))
    roster = Roster.from_public_files(paths)
    roster.save(tmp_path / "roster.toml")
    loaded = Roster.load(tmp_path / "roster.toml")
    assert loaded == roster
    assert loaded.get("edu_a") == a.public
    assert loaded.of_kind("department") == ("dept_b",)
    assert loaded.holder_of("tax") == b.public
    with pytest.raises(CryptoError, match="exactly one"):
        loaded.holder_of("health")
    assert loaded.fingerprint() == roster.fingerprint()
    fresh_b = AgencyIdentity.generate(agency="dept_b", kind="department", department="tax")
    other = Roster.of([a.public, fresh_b.public])
    assert other.fingerprint() != roster.fingerprint()
    with pytest.raises(CryptoError, match="not in the roster"):
        roster.get("dept_x")


def test_roster_refuses_duplicates_and_reused_keys() -> None:
    a = _alice().public
    with pytest.raises(CryptoError, match="twice"):
        Roster.of([a, a])
    clone = PublicIdentity(agency="edu_z", kind="education", signing_key=a.signing_key,
                           agreement_key=_bob().public.agreement_key)
    with pytest.raises(CryptoError, match="reuses"):
        Roster.of([a, clone])
    with pytest.raises(CryptoError, match="holds the keys"):
        Roster(agencies={"edu_b": a})
    with pytest.raises(CryptoError, match="format"):
        Roster.from_toml(b'format = "other"\n')

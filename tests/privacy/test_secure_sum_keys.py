"""Signed masking keys: a key verifies only as its party's, for its instance, while fresh."""

from __future__ import annotations

import dataclasses

import pytest

from privacy.errors import CryptoError
from privacy.identity import AgencyIdentity, Roster
from privacy.secure_sum import MaskingParty, PublicKeyList
from privacy.secure_sum_keys import (
    MAX_AGE_S,
    MAX_SKEW_S,
    MaskingInstance,
    MaskingKeySignature,
    sign_masking_key,
    verify_masking_keys,
)

NAMES = ("a", "b", "c")
NOW = 1_800_000_000
INSTANCE = MaskingInstance(run="77", session="year", round=2, attempt=1, participants=NAMES)


def _identity(name: str) -> AgencyIdentity:
    # Warning: fixed keys, for known-answer tests only
    return AgencyIdentity.from_seeds(agency=name, kind="education",
                                     signing_seed=bytes([ord(name)]) * 32,
                                     agreement_private=bytes([ord(name) + 1]) * 32)


IDS = {n: _identity(n) for n in NAMES}
ROSTER = Roster.of(i.public for i in IDS.values())


def _signed(instance: MaskingInstance = INSTANCE, issued: int = NOW
            ) -> tuple[PublicKeyList, dict[str, MaskingKeySignature]]:
    parties = {n: MaskingParty(n, instance.session, instance.round, instance.attempt)
               for n in instance.participants}
    keys = PublicKeyList.of({n: p.public_key() for n, p in parties.items()})
    sigs = {n: sign_masking_key(IDS[n], public_key=p.public_key(), instance=instance,
                                issued=issued) for n, p in parties.items()}
    return keys, sigs


def _verify(keys: PublicKeyList, sigs: dict[str, MaskingKeySignature],
            instance: MaskingInstance = INSTANCE, now: float = NOW) -> None:
    verify_masking_keys(keys, sigs, roster=ROSTER, instance=instance, own="a", now=now)


def test_signed_keys_verify_and_signatures_are_deterministic() -> None:
    keys, sigs = _signed()
    _verify(keys, sigs)
    again = sign_masking_key(IDS["b"], public_key=dict(keys.keys)["b"], instance=INSTANCE,
                             issued=NOW)
    assert again == sigs["b"]  # Ed25519 is deterministic: the inputs alone decide it
    # the checking party's own signature is not needed (it checks its own key itself)
    _verify(keys, {n: s for n, s in sigs.items() if n != "a"})


def test_substituted_or_unsigned_keys_are_refused() -> None:
    keys, sigs = _signed()
    mallory = MaskingParty("b", "year", 2, 1).public_key()
    swapped = PublicKeyList.of({**dict(keys.keys), "b": mallory})
    with pytest.raises(CryptoError, match="bad signature: not b's"):
        _verify(swapped, sigs)
    impostor = AgencyIdentity.generate(agency="b", kind="education")
    forged = sign_masking_key(impostor, public_key=mallory, instance=INSTANCE, issued=NOW)
    with pytest.raises(CryptoError, match="bad signature"):
        _verify(swapped, {**sigs, "b": forged})
    with pytest.raises(CryptoError, match="'c' is not signed"):
        _verify(keys, {n: s for n, s in sigs.items() if n != "c"})
    # c's genuine signature moved to b's key
    with pytest.raises(CryptoError, match="bad signature"):
        _verify(keys, {**sigs, "b": sigs["c"]})


@pytest.mark.parametrize("change", [{"run": "78"}, {"session": "year2"}, {"round": 3},
                                    {"attempt": 0}],
                         ids=["run", "session", "round", "attempt"])
def test_a_key_signed_for_another_instance_is_refused(change: dict[str, object]) -> None:
    keys, sigs = _signed(dataclasses.replace(INSTANCE, **change))  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="bad signature"):
        _verify(keys, sigs)


def test_the_list_must_name_exactly_the_signed_participants() -> None:
    four = AgencyIdentity.from_seeds(agency="d", kind="education", signing_seed=b"d" * 32,
                                     agreement_private=b"e" * 32)
    roster = Roster.of([*(i.public for i in IDS.values()), four.public])
    wider = dataclasses.replace(INSTANCE, participants=(*NAMES, "d"))
    keys, sigs = _signed()
    with pytest.raises(CryptoError, match="names 3 parties, not the 4"):
        verify_masking_keys(keys, sigs, roster=roster, instance=wider, own="a", now=NOW)
    # keys signed for {a, b} only do not verify for {a, b, c}, whatever the list says
    pair = dataclasses.replace(INSTANCE, participants=("a", "b"))
    pair_keys, pair_sigs = _signed(pair)
    listed = PublicKeyList.of({**dict(pair_keys.keys), "c": dict(keys.keys)["c"]})
    with pytest.raises(CryptoError, match="bad signature"):
        _verify(listed, {**pair_sigs, "c": sigs["c"]})


def test_age_and_skew_limits() -> None:
    keys, sigs = _signed()
    _verify(keys, sigs, now=NOW + MAX_AGE_S)
    _verify(keys, sigs, now=NOW - MAX_SKEW_S)
    with pytest.raises(CryptoError, match="issued 86401 s ago"):
        _verify(keys, sigs, now=NOW + MAX_AGE_S + 1)
    with pytest.raises(CryptoError, match=r"issued -301 s ago"):
        _verify(keys, sigs, now=NOW - MAX_SKEW_S - 1)


def test_bad_instances_and_signers_are_refused() -> None:
    with pytest.raises(CryptoError, match="at least 2"):
        MaskingInstance(run="1", session="s", round=1, attempt=0, participants=("a",))
    with pytest.raises(CryptoError, match="distinct and sorted"):
        MaskingInstance(run="1", session="s", round=1, attempt=0, participants=("b", "a"))
    with pytest.raises(CryptoError, match="comma"):
        MaskingInstance(run="1", session="s", round=1, attempt=0, participants=("a", "b,c"))
    outsider = AgencyIdentity.generate(agency="z", kind="education")
    with pytest.raises(CryptoError, match="not a participant"):
        sign_masking_key(outsider, public_key=MaskingParty("z", "s", 1).public_key(),
                         instance=INSTANCE, issued=NOW)
    with pytest.raises(CryptoError, match="64 bytes"):
        MaskingKeySignature(issued=NOW, signature=b"\x00" * 63)
    keys, sigs = _signed()
    unknown = Roster.of(IDS[n].public for n in ("a", "b"))
    with pytest.raises(CryptoError, match="'c' is not in the roster"):
        verify_masking_keys(keys, sigs, roster=unknown, instance=INSTANCE, own="a", now=NOW)

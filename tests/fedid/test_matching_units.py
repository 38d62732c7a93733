"""Messages (bytes round trip, header checks), policy encoding, released aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedid.errors import ConfigError, DataValidationError, ProtocolError
from fedid.matching.aggregates import ReleaseConfig, release_counts
from fedid.matching.messages import (
    CoordinatorResults,
    EvidenceBlindedRecords,
    EvidencePayloads,
    EvidenceReblindedHomeKeys,
    Header,
    HomeAggregates,
    HomeBlindedKeys,
    HomePublicKey,
    HomeReblindedRecords,
    decode_message,
)
from fedid.matching.policy import (
    MASK_BITS,
    EvidencePolicy,
    FieldRelease,
    build_layouts,
    default_policies,
)
from fedid.schema import load_schema

H = Header(run_id=bytes(range(16)), sender="home:a", recipient="coordinator", step=3)
U = np.array([1, 2, 3], dtype=np.uint32)
MESSAGES = [
    HomePublicKey(header=H, public_key=b"key"),
    HomeBlindedKeys(header=H, points=bytes(64)),
    EvidenceReblindedHomeKeys(header=H, home="home:a", points=bytes(32)),
    EvidenceBlindedRecords(header=H, points=bytes(96)),
    EvidencePayloads(header=H, key_fingerprint=b"f" * 32, record_count=3, slots=2,
                     ciphertexts=(5, 2**300 + 1)),
    HomeReblindedRecords(header=H, department="tax", points=bytes(32)),
    CoordinatorResults(header=H, departments=("tax", "health"), department_slots=U[:2],
                       ciphertexts=(7,), ciphertext_department=U[:1], match_ciphertext=U,
                       match_slot=U, match_position=U),
    HomeAggregates(header=H, names=("a", "b"), values=(12, -1), epsilon_milli=500),
]


def _eq(a: object, b: object) -> bool:
    for f in a.__dataclass_fields__:  # type: ignore[attr-defined]
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_and_truncation(msg):
    data = msg.to_bytes()
    back = type(msg).from_bytes(data)
    assert _eq(msg, back)
    assert decode_message(data).KIND == msg.KIND
    for cut in range(len(data) - 1, 0, -max(1, len(data) // 17)):
        with pytest.raises(ProtocolError):
            decode_message(data[:cut])


def test_wrong_kind_and_header_rules():
    data = MESSAGES[1].to_bytes()
    with pytest.raises(ProtocolError, match="expected message kind"):
        HomePublicKey.from_bytes(data)
    with pytest.raises(ProtocolError, match="run id"):
        Header(run_id=b"short", sender="a", recipient="b", step=1)
    with pytest.raises(ProtocolError, match="multiple of 32"):
        HomeBlindedKeys(header=H, points=bytes(33)).to_bytes()


def test_default_layouts_fit_and_never_carry():
    schema = load_schema()
    layouts = build_layouts(schema, default_policies(schema))
    assert len(layouts) == 12
    for lay in layouts.values():
        assert lay.slots(3072) >= 20
        assert lay.slot_bits == lay.width + MASK_BITS + 1
        top = (1 << lay.width) - 1
        packed = lay.pack([top] * lay.slots(3072), modulus_bits=3072)
        assert packed[0] < 1 << 3071
        masked = packed[0] + sum(((1 << (lay.width + MASK_BITS)) - 1) << (s * lay.slot_bits)
                                 for s in range(lay.slots(3072)))
        assert lay.unpack(masked, modulus_bits=3072)[0] == top + (1 << (lay.width + MASK_BITS)) - 1


def test_fixed_point_and_nulls_round_trip():
    schema = load_schema()
    lay = build_layouts(schema, default_policies(schema))["civil_affairs"]
    frame = pd.DataFrame({
        "household_income_per_capita": pd.Series([12345.67, None, 0.0], dtype="Float64"),
        "family_structure": pd.Series(["orphan", None, "both_parents"], dtype="string"),
        "dibao": pd.Series([True, False, None], dtype="boolean"),
        "tekun": pd.Series([None, None, False], dtype="boolean"),
        "low_income_edge": pd.Series([True, True, True], dtype="boolean"),
        "temporary_relief": pd.Series([0.01, 999999.99, None], dtype="Float64"),
    })
    decoded = [lay.decode(p) for p in lay.encode(frame)]
    assert decoded[0]["household_income_per_capita"] == 12345.67
    assert decoded[1]["household_income_per_capita"] is None
    assert decoded[0]["family_structure"] == "orphan"
    assert decoded[2]["dibao"] is None
    assert decoded[1]["dibao"] is False
    assert decoded[1]["temporary_relief"] == 999999.99
    bad = frame.assign(temporary_relief=pd.Series([2e6, 1, 1], dtype="Float64"))
    with pytest.raises(DataValidationError, match="outside the schema range"):
        lay.encode(bad)


def test_band_release_minimises_data():
    schema = load_schema()
    policy = EvidencePolicy(department="tax", releases={
        "taxable_income": FieldRelease(mode="band", band_edges=(10000.0, 50000.0))})
    lay = build_layouts(schema, {"tax": policy})["tax"]
    assert lay.width == 2
    payloads = lay.encode(pd.DataFrame({"taxable_income": [5.0, 20000.0, 60000.0]}))
    assert [lay.decode(p)["taxable_income"] for p in payloads] == [0.0, 10000.0, 50000.0]
    with pytest.raises(ConfigError):
        FieldRelease(mode="band", band_edges=(5.0, 1.0))
    with pytest.raises(ConfigError, match="does not own"):
        build_layouts(schema, {"tax": EvidencePolicy(department="tax", releases={
            "dibao": FieldRelease()})})


def test_release_suppresses_and_noises():
    counts = {"a": 3, "b": 500, "c": 10}
    plain = release_counts(counts, ReleaseConfig(min_cell=10))
    assert dict(zip(plain.names, plain.values, strict=True)) == {"a": -1, "b": 500, "c": 10}
    assert plain.epsilon == 0.0
    noisy = [release_counts(counts, ReleaseConfig(min_cell=0, epsilon=1.0)) for _ in range(200)]
    assert {r.epsilon for r in noisy} == {1.0}
    assert noisy[0].noise_scale == 3.0
    b_values = np.array([dict(zip(r.names, r.values, strict=True))["b"] for r in noisy])
    assert len(set(b_values.tolist())) > 3  # noise really added
    assert abs(b_values.mean() - 500) < 2.0  # unbiased (scale 3, 200 draws)
    with pytest.raises(ConfigError):
        ReleaseConfig(epsilon=0.0)


def test_province_totals_mark_suppressed_cells():
    from fedid.matching.output import province_totals

    got = province_totals({"a": {"x": 12, "y": -1}, "b": {"x": 30, "y": 15}})
    assert got == {"x": {"total": 42, "suppressed_cells": 0},
                   "y": {"total": 15, "suppressed_cells": 1}}

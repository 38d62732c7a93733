"""National ID numbers (GB 11643-1999): known answers, each rule, upgrade, properties."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedid.errors import DataValidationError, IdNumberError
from fedid.ids import (
    REGION_BY_PROVINCE,
    IdReason,
    check_characters,
    make_ids,
    normalise,
    parse,
    to_canonical,
    validate,
)

STANDARD = ["11010519491231002X", "440524188001010014"]
TODAY = dt.date(2026, 6, 1)


def test_standard_examples_are_valid() -> None:
    check = validate(STANDARD)
    assert check.ok.tolist() == [True, True]
    assert check.canonical.tolist() == STANDARD
    assert check.reason.tolist() == [0, 0]


def test_check_characters_known_answers() -> None:
    assert check_characters(["11010519491231002", "44052418800101001"]).tolist() == ["X", "4"]


def test_check_characters_rejects_non_digits() -> None:
    with pytest.raises(IdNumberError, match=r"17 ASCII digits.*index 1"):
        check_characters(["11010519491231002", "1101051949123100X"])


def test_normalise_spaces_full_width_and_lower_x() -> None:
    raw = [
        " 110105 1949 1231 002x ",
        "１１０１０５１９４９１２３１００２Ｘ",
        "\u3000440524188001010014\t",
    ]
    assert normalise(raw).tolist() == ["11010519491231002X", "11010519491231002X", STANDARD[1]]
    assert validate(raw).ok.all()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, IdReason.MISSING),
        ("", IdReason.MISSING),
        ("   ", IdReason.MISSING),
        ("1101051949123100", IdReason.LENGTH),
        ("11010519491231002XX", IdReason.LENGTH),
        ("1101051949123A002X", IdReason.CHARSET),
        ("11010519491231002Y", IdReason.CHARSET),
        ("11010549123100X", IdReason.CHARSET),
        ("990105194912310028", IdReason.PROVINCE),
        ("100105194912310028", IdReason.PROVINCE),
        ("110105194902300021", IdReason.BIRTH_DATE),
        ("110105190002290021", IdReason.BIRTH_DATE),  # 1900 is not a leap year
        ("110105194913010021", IdReason.BIRTH_DATE),
        ("110105179912310021", IdReason.BIRTH_DATE_RANGE),
        ("110105203001010021", IdReason.BIRTH_DATE_RANGE),
        ("110105194912310021", IdReason.CHECK),
    ],
)
def test_each_rule(value: str | None, reason: IdReason) -> None:
    check = validate(np.array([STANDARD[0], value], dtype=object), today=TODAY)
    assert check.ok.tolist() == [True, False]
    assert IdReason(int(check.reason[1])) is reason
    assert check.canonical[1] == ""


def test_leap_day_2000_is_a_real_date() -> None:
    (one,) = make_ids(address_codes=[110105], birth_dates=["2000-02-29"], sequences=[1])
    assert validate([one]).ok.all()


def test_fifteen_digit_upgrade_and_996_rule() -> None:
    check = validate(["110105491231002", "440524800101999"], today=TODAY)
    assert check.ok.all()
    assert check.legacy.tolist() == [True, True]
    first17 = ["11010519491231002", "44052418800101999"]
    expected = [f + c for f, c in zip(first17, check_characters(first17), strict=True)]
    assert check.canonical.tolist() == expected
    assert check.canonical[0] == STANDARD[0]


def test_to_canonical_raise_names_rule_and_index_not_the_id() -> None:
    bad = "110105194912310021"
    with pytest.raises(IdNumberError) as info:
        to_canonical([STANDARD[0], STANDARD[1], bad])
    msg = str(info.value)
    assert "index 2" in msg
    assert "check character" in msg
    assert bad not in msg
    assert STANDARD[0] not in msg
    assert isinstance(info.value, DataValidationError)


def test_to_canonical_mask() -> None:
    out = to_canonical(["110105491231002", "bad"], errors="mask")
    assert out.tolist() == [STANDARD[0], ""]
    with pytest.raises(ValueError, match="errors must be"):
        to_canonical(STANDARD, errors="ignore")  # type: ignore[arg-type]


def test_parse_fields() -> None:
    p = parse([*STANDARD, "510104200107150031"], today=TODAY)
    assert p.birth_date.astype(str).tolist() == ["1949-12-31", "1880-01-01", "2001-07-15"]
    assert p.sex.tolist() == ["female", "male", "male"]
    assert p.province.tolist() == [11, 44, 51]
    assert p.address_code.tolist() == ["110105", "440524", "510104"]
    assert p.region.tolist() == ["east", "east", "west"]


def test_parse_mask_invalid() -> None:
    p = parse(["x", STANDARD[0]], errors="mask")
    assert p.ok.tolist() == [False, True]
    assert np.isnat(p.birth_date[0])
    assert p.region.tolist() == ["", "east"]
    with pytest.raises(IdNumberError):
        parse(["x"])


def test_region_mapping_covers_every_province() -> None:
    regions = set(REGION_BY_PROVINCE.values())
    assert regions == {"east", "central", "west"}
    assert REGION_BY_PROVINCE[42] == "central"
    assert REGION_BY_PROVINCE[65] == "west"
    assert len(REGION_BY_PROVINCE) == 35


def test_make_ids_rejects_bad_parts() -> None:
    with pytest.raises(IdNumberError, match=r"province code.*index 1"):
        make_ids(address_codes=[110105, 990101], birth_dates="1990-01-01", sequences=1)
    with pytest.raises(IdNumberError, match="sequences"):
        make_ids(address_codes=110105, birth_dates="1990-01-01", sequences=[1000])
    with pytest.raises(IdNumberError, match="before 1800"):
        make_ids(address_codes=110105, birth_dates="1700-01-01", sequences=1)


def test_inputs_of_other_dtypes() -> None:
    assert validate(np.array([440524188001010014])).ok.all()
    assert validate(np.array([np.nan])).reason.tolist() == [IdReason.MISSING]
    assert len(validate([])) == 0
    with pytest.raises(TypeError):
        validate(STANDARD[0])


def test_counts_and_describe() -> None:
    check = validate([STANDARD[0], "", "990105194912310028", ""])
    assert check.counts() == {IdReason.MISSING: 2, IdReason.PROVINCE: 1}
    assert "3 of 4" in check.describe_failures()


PROVINCES = sorted(REGION_BY_PROVINCE)
address = st.builds(
    lambda p, rest: p * 10000 + rest, st.sampled_from(PROVINCES), st.integers(0, 9999)
)


@settings(max_examples=200, deadline=None)
@given(
    addr=st.lists(address, min_size=1, max_size=20),
    date=st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2025, 12, 31)),
    seq=st.integers(0, 999),
)
def test_make_ids_always_validates(addr: list[int], date: dt.date, seq: int) -> None:
    ids = make_ids(address_codes=addr, birth_dates=np.datetime64(date), sequences=seq)
    p = parse(ids)
    assert p.ok.all()
    assert (p.birth_date == np.datetime64(date)).all()
    assert set(p.sex.tolist()) == {"male" if seq % 2 else "female"}


@settings(max_examples=200, deadline=None)
@given(
    addr=address,
    year=st.integers(1800, 1999),
    day_of_year=st.integers(0, 364),
    seq=st.integers(0, 999),
)
def test_fifteen_to_eighteen_round_trip(addr: int, year: int, day_of_year: int, seq: int) -> None:
    seq = seq if (year >= 1900) == (seq < 996) else (seq % 996 if year >= 1900 else 996 + seq % 4)
    date = np.datetime64(f"{year}-01-01") + day_of_year
    (full,) = make_ids(address_codes=addr, birth_dates=date, sequences=seq)
    legacy = full[:6] + full[8:17]
    check = validate([legacy])
    assert check.ok.all()
    assert check.legacy.all()
    assert check.canonical[0] == full


def test_one_corrupted_character_is_caught() -> None:
    rng = np.random.default_rng(7)
    ids = make_ids(
        address_codes=rng.choice([110105, 440524, 510104], 500),
        birth_dates=np.datetime64("1960-01-01") + rng.integers(0, 20000, 500),
        sequences=rng.integers(0, 1000, 500),
    )
    pos = rng.integers(14, 17, 500)  # sequence digits: never a date or province change
    corrupted = []
    for s, k in zip(ids.tolist(), pos, strict=True):
        d = (int(s[k]) + int(rng.integers(1, 10))) % 10
        corrupted.append(s[:k] + str(d) + s[k + 1 :])
    reasons = validate(corrupted).reason
    assert (reasons == IdReason.CHECK).all()


def test_arrow_backed_inputs_match_numpy_path() -> None:
    import pandas as pd
    import pyarrow as pa

    values = [
        STANDARD[0],
        None,
        "110105491231002",
        " 11010519491231002x",
        "１１０１０５１９４９１２３１００２Ｘ",
        "",
        "110105194912310021",
        "12",
    ]
    reference = validate(np.array(values, dtype=object))
    for arrow_like in (
        pd.Series(values, dtype="str"),
        pa.array(values),
        pa.chunked_array([values[:3], values[3:]]),
        pd.Series(values[2:], dtype="str").iloc[1:],  # a sliced buffer (non-zero offset)
    ):
        got = validate(arrow_like)
        expect = reference if len(got) == len(values) else validate(np.array(values[3:], object))
        assert got.reason.tolist() == expect.reason.tolist()
        assert got.canonical.tolist() == expect.canonical.tolist()
    same_width = pa.array([STANDARD[0], STANDARD[1]])  # the zero-copy reshape path
    assert validate(same_width).ok.all()
    assert validate(pa.array([], type=pa.string())).ok.shape == (0,)


id_like = st.text(alphabet=st.sampled_from("0123456789xX １２Ｘ\u3000-a"), max_size=22)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(id_like | st.none(), max_size=12))
def test_validate_total_on_junk(values: list[str | None]) -> None:
    check = validate(np.array(values, dtype=object))
    assert len(check) == len(values)
    assert set(check.reason.tolist()) <= {int(r) for r in IdReason}
    assert (check.ok == (check.reason == 0)).all()
    for ok, canon in zip(check.ok, check.canonical, strict=True):
        assert (len(canon) == 18) == bool(ok)
    again = normalise(normalise(np.array(values, dtype=object)))
    assert again.tolist() == normalise(np.array(values, dtype=object)).tolist()

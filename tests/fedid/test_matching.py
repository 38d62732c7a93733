"""End-to-end matching: exact agreement with the plaintext reference join, all groupings."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fedid.matching import MatchingConfig, ReleaseConfig, match_in_process, write_outputs
from fedid.matching.run import MatchingResult
from fedid.schema import Schema, load_schema
from simulations.province.join import join_evidence
from simulations.province.schema_view import load_schema_view
from tests.fedid.matching_data import make_tables

KEY_BITS = 2048  # the smallest key the crypto core accepts; production default is 3072


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


@pytest.fixture(scope="module")
def tables(schema: Schema) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    return make_tables(schema, students=80, records=50, homes=2)


@pytest.fixture(scope="module")
def province_run(schema: Schema, tables: tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]
                 ) -> MatchingResult:
    homes, deps = tables
    return match_in_process(schema=schema, homes=homes, departments=deps,
                        config=MatchingConfig(paillier_bits=KEY_BITS))


def _same(a: object, b: object) -> bool:
    if a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a)):
        return b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b))
    if b is None or b is pd.NA:
        return False
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) < 0.005  # type: ignore[arg-type]
    return bool(a == b)


def assert_matches_reference(schema: Schema, result: MatchingResult,
                             homes: dict[str, pd.DataFrame], deps: dict[str, pd.DataFrame]
                             ) -> int:
    """Every evidence indicator of every student equals the reference join; returns #cells."""
    view = load_schema_view()
    checked = 0
    for agency, table in homes.items():
        ref = join_evidence(table, deps, view).reset_index(drop=True)
        got = result.resolved[agency]
        assert list(got["student_id"]) == list(table["student_id"])
        for ind in schema.indicators:
            if ind.department == "education":
                continue
            for i, (x, y) in enumerate(zip(got[ind.name].tolist(), ref[ind.name].tolist(),
                                           strict=True)):
                assert _same(x, y), f"{agency} row {i} {ind.name}: {x!r} != {y!r}"
                checked += 1
    return checked


def test_province_run_equals_reference_join(schema, tables, province_run):
    homes, deps = tables
    n = assert_matches_reference(schema, province_run, homes, deps)
    non_null = sum(int(f[i.name].notna().sum()) for f in province_run.resolved.values()
                   for i in schema.indicators if i.department != "education")
    assert n > 0
    assert non_null > 20


@pytest.mark.parametrize(("grouping", "keys"), [("per_agency", "shared")])
def test_other_groupings_equal_reference_join(schema, tables, grouping, keys):
    homes, deps = tables
    res = match_in_process(schema=schema, homes=homes, departments=deps,
                       config=MatchingConfig(paillier_bits=KEY_BITS, grouping=grouping,
                                             evidence_keys=keys))
    assert_matches_reference(schema, res, homes, deps)
    assert len(res.groups) == len(homes)


def test_guardian_and_legacy_matches_present(province_run, tables):
    _, deps = tables
    legacy = sum(int((t["person_id"].str.len() == 15).sum()) for t in deps.values())
    assert legacy > 0
    frame = pd.concat(province_run.resolved.values())
    assert frame["taxable_income"].notna().sum() > 0  # guardian-keyed, sum
    assert frame["family_structure"].notna().sum() > 0  # student-keyed


def test_aggregates_released_with_suppression(province_run):
    for released in province_run.released.values():
        assert "students_matched_by_2plus" in released
        assert all(v == -1 or v >= 10 for v in released.values())
    assert set(province_run.released_epsilon.values()) == {0.0}


def test_dp_release_records_epsilon(schema, tables):
    homes, deps = tables
    res = match_in_process(schema=schema, homes={"school_0": homes["school_0"]},
                       departments={"civil_affairs": deps["civil_affairs"]},
                       config=MatchingConfig(paillier_bits=KEY_BITS,
                                             release=ReleaseConfig(min_cell=0, epsilon=2.0)))
    assert res.released_epsilon == {"school_0": 2.0}


def test_leakage_record_counts_every_message(province_run):
    by_party = {p.party: p for p in province_run.leakage}
    assert set(by_party) >= {"coordinator", "home:school_0", "evidence:tax"}
    total = sum(p.total_bytes for p in province_run.leakage)
    assert total == sum(e.size for e in province_run.transport.entries)
    coord = by_party["coordinator"]
    assert coord.messages["EVIDENCE_PAYLOADS"] == 12
    assert "never an ID" in coord.statement
    assert by_party["evidence:tax"].messages == {"HOME_PUBLIC_KEY": 1, "HOME_BLINDED_KEYS": 2}


def test_write_outputs_atomic(tmp_path, province_run):
    out = tmp_path / "match"
    write_outputs(province_run, out)
    assert (out / "aggregates.json").exists()
    assert sorted(p.name for p in (out / "resolved").iterdir()) == [
        "school_0.parquet", "school_1.parquet"]
    bad = tmp_path / "bad"
    broken = MatchingResult(**{**{f: getattr(province_run, f) for f in (
        "resolved", "released", "released_epsilon", "leakage", "timings", "bytes_received",
        "views", "groups", "transport")}, "released": {"x": {"y": object()}}})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        write_outputs(broken, bad)
    assert not bad.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_green_channel_batch_equals_full_run(schema, tables, province_run):
    from fedid.matching.incremental import GreenChannel

    homes, _ = tables
    table = homes["school_1"]
    full = province_run.resolved["school_1"]
    gc = GreenChannel(province_run.groups[0], schema=schema)
    evidence = [i.name for i in schema.indicators if i.department != "education"]
    for rows in ([0], [1, 2, 3]):
        out = gc.resolve("school_1", table.iloc[rows])
        assert out.latency_s > 0
        for ind in evidence:
            for x, y in zip(out.resolved[ind].tolist(), full.iloc[rows][ind].tolist(),
                            strict=True):
                assert _same(x, y), ind
    assert gc.transport.entries  # went through bytes
    assert {e.kind for e in gc.transport.entries} == {
        "HOME_BLINDED_KEYS", "EVIDENCE_REBLINDED_HOME_KEYS", "COORDINATOR_RESULTS"}


def test_ristretto255_backend_is_a_configuration_with_the_same_result(
    schema: Schema, tables: tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]],
    province_run: MatchingResult,
) -> None:
    homes, deps = tables
    other = match_in_process(schema=schema, homes=homes, departments=deps,
                             config=MatchingConfig(paillier_bits=KEY_BITS,
                                                   blinding="ristretto255"))
    assert assert_matches_reference(schema, other, homes, deps) > 0
    for agency, frame in province_run.resolved.items():
        pd.testing.assert_frame_equal(frame, other.resolved[agency])
    with pytest.raises(Exception, match="blinding must be one of"):
        MatchingConfig(blinding="p256")  # type: ignore[arg-type]

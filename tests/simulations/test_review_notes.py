"""The report's notes say what a year went without."""

from __future__ import annotations

from simulations.review import _notes


def test_notes_name_departments_matching_went_without() -> None:
    year = {"matching": {"lost_departments": {"tax": ["county_a", "county_b"]}},
            "training": {"rounds": [{"round": 2, "excluded": {"county_c": "no reply"}}]}}
    notes = _notes(year)
    assert any("without tax" in n and "county_a, county_b" in n for n in notes)
    assert "round 2: excluded county_c: no reply" in notes


def test_notes_of_a_whole_year_mention_no_lost_department() -> None:
    assert not any("went on without" in n for n in _notes({"matching": {}}))

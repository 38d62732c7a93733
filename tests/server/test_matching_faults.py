"""Matching over Flower messages when a department's node fails: the year goes on without it.

The coordinator side (:func:`server.matching.coordinate_matching`) runs against every agency's real
node handler (:func:`clients.matching.handle`) in this process; a dead node answers nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flwr.app import Context, Message, RecordDict

from clients import training
from clients.config import NodeSettings
from clients.matching import handle
from fedid.errors import FederationError, ProtocolError
from fedid.matching.coordinator import Coordinator
from fedid.matching.policy import build_layouts, default_policies
from fedid.matching.protocol import new_run_id
from fedid.schema import load_schema
from privacy.identity import AgencyIdentity, Roster
from server.matching import coordinate_matching
from server.transport import AgencyInfo
from simulations.simulate import agencies_of

HOMES = 2  # the first education agencies of the small province
DEPARTMENTS = ("civil_affairs", "disability_federation", "tax")


@dataclass
class _Error:
    reason: str


@dataclass
class _Reply:
    content: RecordDict | None
    error: _Error | None = None

    def has_error(self) -> bool:
        return self.error is not None


class _Nodes:
    """A Messenger stand-in: each agency's own matching handler, with its own state."""

    def __init__(
        self,
        province: Path,
        out: Path,
        dead: frozenset[str],
        *,
        silent_first: frozenset[str] = frozenset(),
        erring: frozenset[str] = frozenset(),
    ) -> None:
        found = agencies_of(province)
        homes = [a for a in found if a[1] == "education"][:HOMES]
        deps = [a for a in found if a[1] == "department" and a[2] in DEPARTMENTS]
        self.settings: dict[str, NodeSettings] = {}
        self.contexts: dict[str, Context] = {}
        self.agencies: dict[str, AgencyInfo] = {}
        roster = Roster.of(AgencyIdentity.load_or_create(
            out / agency / "identity", agency=agency, kind=kind,
            department="" if kind == "education" else department).public
            for agency, kind, department, _ in homes + deps)
        roster.save(out / "roster.toml")
        for node, (agency, kind, department, table) in enumerate(homes + deps, start=1):
            self.settings[agency] = NodeSettings(
                agency_id=agency, kind=kind, department=department, data=table, schema=None,
                out=out / agency, epsilon=1.0, delta=1e-5, roster=out / "roster.toml",
            )
            self.contexts[agency] = Context(run_id=1, node_id=node, node_config={},
                                            state=RecordDict(), run_config={})
            self.agencies[agency] = AgencyInfo(agency_id=agency, kind=kind,
                                               department=department, node_id=node,
                                               labelled=kind == "education")
        self.dead = dead
        self.silent_first = set(silent_first)  # silent on their first message only
        self.erring = erring  # answer every message with an error
        self.asked: list[tuple[str, str]] = []

    def exchange_pairs(
        self, message_type: str, pairs: list[tuple[str, RecordDict]]
    ) -> list[_Reply | None]:
        replies: list[_Reply | None] = []
        for agency, content in pairs:
            self.asked.append((agency, str(content.config_records["config"]["step"])))
            if agency in self.dead or agency in self.silent_first:
                self.silent_first.discard(agency)
                replies.append(None)
                continue
            if agency in self.erring:
                replies.append(_Reply(None, _Error("ProtocolError: malformed key list")))
                continue
            msg = Message(content, dst_node_id=self.agencies[agency].node_id,
                          message_type=message_type)
            replies.append(_Reply(handle(self.settings[agency], msg, self.contexts[agency])))
        return replies


def _match(nodes: _Nodes, grouping: str = "province") -> dict[str, Any]:
    return coordinate_matching(nodes, schema=load_schema(), session="year",  # type: ignore[arg-type]
                        progress=lambda _e, _d: None, grouping=grouping)


def _homes(nodes: _Nodes) -> list[str]:
    return sorted(a for a, i in nodes.agencies.items() if i.kind == "education")


@pytest.mark.usefixtures("in_a_run")
def test_a_dead_department_is_left_out_and_matching_goes_on(
    small_province: Path, tmp_path: Path
) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset({"tax"}))
    result = _match(nodes)
    homes = _homes(nodes)
    assert result["lost_departments"] == {"tax": homes}
    assert ("tax", "evidence") in nodes.asked
    for home in homes:
        figures = result["per_home"][home]
        assert set(figures["matched_by_department"]) == {"civil_affairs", "disability_federation"}
        assert figures["matched_by_department"]["civil_affairs"] > 0
        assert not any("tax" in name for name in figures["released"])  # no count of nothing
        evidence = pd.read_parquet(tmp_path / home / "evidence.parquet")
        assert evidence["dibao"].notna().any()  # civil affairs' evidence arrived
        assert "taxable_income" not in evidence.columns or evidence["taxable_income"].isna().all()
        sources = json.loads((tmp_path / home / "evidence_sources.json").read_text())
        assert sources == {"covered": ["civil_affairs", "disability_federation"],
                           "missing": ["tax"]}
    # identification on the node says, for every student, whose evidence it could not see
    s = nodes.settings[homes[0]]
    counts = training.identify(s, training.initial_arrays(s, seed=0))
    assert counts["evidence_missing_departments"] == 1.0
    rec = pd.read_parquet(tmp_path / homes[0] / "recommendations.parquet")
    assert set(rec["evidence_missing"]) == {"tax"}


@pytest.mark.usefixtures("in_a_run")
def test_per_agency_runs_lose_a_department_only_where_it_was_silent(
    small_province: Path, tmp_path: Path
) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset(), silent_first=frozenset({"tax"}))
    result = _match(nodes, grouping="per_agency")
    first, second = _homes(nodes)  # runs go out in home order: tax is silent for the first
    assert result["lost_departments"] == {"tax": [first]}
    assert "tax" not in result["per_home"][first]["matched_by_department"]
    assert result["per_home"][second]["matched_by_department"]["tax"] > 0


@pytest.mark.usefixtures("in_a_run")
def test_a_run_left_without_departments_stops_the_year_naming_its_home(
    small_province: Path, tmp_path: Path
) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset(), silent_first=frozenset(DEPARTMENTS))
    first, second = _homes(nodes)
    with pytest.raises(FederationError, match="no department replied") as err:
        _match(nodes, grouping="per_agency")
    assert first in str(err.value)
    assert second not in str(err.value)


@pytest.mark.usefixtures("in_a_run")
def test_an_error_reply_is_not_blamed_on_the_department_and_stops_the_year(
    small_province: Path, tmp_path: Path
) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset(), erring=frozenset({"tax"}))
    with pytest.raises(FederationError, match="tax failed matching step evidence"):
        _match(nodes)


@pytest.mark.usefixtures("in_a_run")
def test_every_department_dead_stops_the_year_naming_them(
    small_province: Path, tmp_path: Path
) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset(DEPARTMENTS))
    with pytest.raises(FederationError, match="no department replied") as err:
        _match(nodes)
    for dep in DEPARTMENTS:
        assert dep in str(err.value)


@pytest.mark.usefixtures("in_a_run")
def test_a_dead_home_stops_the_year_naming_the_step(small_province: Path, tmp_path: Path) -> None:
    nodes = _Nodes(small_province, tmp_path, dead=frozenset())
    nodes.dead = frozenset({next(a for a, i in nodes.agencies.items() if i.kind == "education")})
    with pytest.raises(FederationError, match="home_start"):
        _match(nodes)


def test_dropping_a_key_domain_drops_the_departments_that_share_its_scalar() -> None:
    schema = load_schema()
    layouts = build_layouts(schema, default_policies(schema))
    a, b, c = list(layouts)[:3]
    coord = Coordinator(run_id=new_run_id(), homes=["home:h"], lead="home:h",
                        layouts={d: layouts[d] for d in (a, b, c)},
                        domain_of={a: a, b: a, c: c})
    assert coord.drop_department(a) == (a, b)
    assert coord.departments == (c,)
    assert coord.drop_department(c) == (c,)
    assert coord.departments == ()
    assert coord.drop_department(b) == ()  # already left out with a
    with pytest.raises(ProtocolError, match="unknown department"):
        coord.drop_department("no_such_department")

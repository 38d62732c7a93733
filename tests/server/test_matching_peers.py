"""A home's keyring allow-list (node config ``matching-peers``) against a coordinator that
names a colluding home in the run, run against every agency's REAL matching handler.

Three homes A < B < C (A leads a province run, as the coordinator chooses the first by
id). C colludes with the coordinator: named in a run, it would receive the run's keyring
and so decrypt every department's released fields. A home whose ``matching-peers`` leaves
C out must refuse the run before its keyring exists (lead) or before it opens the sealed
keyring (other home), and no home writes output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import clients.matching
import tests.server.test_matching_faults as faults
from fedid.errors import FederationError
from fedid.matching.protocol import HomeKeyring
from tests.server.test_matching_malicious import OUTPUTS, _homes, _Liar, _match


@pytest.fixture
def three_homes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "HOMES", 3)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often a keyring was generated, sealed and opened on any node."""
    calls = {"generate": 0, "seal": 0, "open": 0}

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(HomeKeyring, "generate",
                        staticmethod(counting("generate", HomeKeyring.generate)))
    monkeypatch.setattr(clients.matching, "seal", counting("seal", clients.matching.seal))
    monkeypatch.setattr(clients.matching, "open_sealed",
                        counting("open", clients.matching.open_sealed))
    return calls


def _peers(nodes: _Liar, agency: str, *peers: str) -> None:
    nodes.settings[agency] = dataclasses.replace(nodes.settings[agency],
                                                 matching_peers=tuple(sorted(peers)))


def _no_output(nodes: _Liar, tmp_path: Path) -> None:
    for home in _homes(nodes):
        for name in OUTPUTS:
            assert not (tmp_path / home / name).exists()


@pytest.mark.usefixtures("in_a_run", "three_homes")
def test_a_lead_refuses_a_colluding_home_before_making_any_key(
        small_province: Path, tmp_path: Path, watched: dict[str, int]) -> None:
    nodes = _Liar(small_province, tmp_path)
    a, b, c = _homes(nodes)
    _peers(nodes, a, b)  # A shares its keyring with B only; the coordinator adds C
    with pytest.raises(FederationError, match="failed matching step home_start"):
        _match(nodes)
    assert "outside this node's matching-peers" in nodes.refused[a]
    assert c in nodes.refused[a]
    assert watched == {"generate": 0, "seal": 0, "open": 0}
    _no_output(nodes, tmp_path)
    # fail closed: the same run asked again is refused as a replay
    honest = next(content for agency, _s, content in nodes.sent if agency == a)
    assert nodes.ask(a, honest).has_error()


@pytest.mark.usefixtures("in_a_run", "three_homes")
def test_another_home_refuses_to_open_a_keyring_shared_with_a_colluding_home(
        small_province: Path, tmp_path: Path, watched: dict[str, int]) -> None:
    nodes = _Liar(small_province, tmp_path)
    a, b, c = _homes(nodes)
    _peers(nodes, b, a)  # B accepts the lead A, not C
    with pytest.raises(FederationError, match="failed matching step home_start"):
        _match(nodes)
    assert "outside this node's matching-peers" in nodes.refused[b]
    assert c in nodes.refused[b]
    assert watched["open"] == 1  # C opened its box; B never opened its own
    assert set(nodes.refused) == {b}
    _no_output(nodes, tmp_path)


@pytest.mark.usefixtures("in_a_run", "three_homes")
def test_a_lead_outside_the_peers_is_refused_first(
        small_province: Path, tmp_path: Path, watched: dict[str, int]) -> None:
    nodes = _Liar(small_province, tmp_path)
    a, b, c = _homes(nodes)
    _peers(nodes, c, b)  # C would take A's keyring: A is not among its peers
    with pytest.raises(FederationError, match="failed matching step home_start"):
        _match(nodes)
    assert f"['{a}'] outside" in nodes.refused[c]
    assert watched["open"] == 1  # B's box only
    _no_output(nodes, tmp_path)


@pytest.mark.usefixtures("in_a_run", "three_homes")
def test_a_run_within_every_homes_peers_completes(
        small_province: Path, tmp_path: Path, watched: dict[str, int]) -> None:
    nodes = _Liar(small_province, tmp_path)
    a, b, c = _homes(nodes)
    _peers(nodes, a, b, c)
    _peers(nodes, b, a, c)
    _match(nodes)
    assert nodes.refused == {}
    assert watched == {"generate": 1, "seal": 2, "open": 2}
    for home in (a, b, c):
        assert (tmp_path / home / "evidence.parquet").exists()

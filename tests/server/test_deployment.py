"""Deployment on loopback: a real SuperLink and three SuperNodes with TLS and node auth.

Slow (Flower's deployment engine polls, about 3 s per hop): marked ``slow``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.config import NodeSettings
from clients.deploy import supernode_command
from clients.transcript import TRANSCRIPT_ENV
from fedid.pki import make_key_pair, make_trial_pki
from privacy.identity import AgencyIdentity, Roster
from server.deploy import SuperLinkLauncher, flower_env, node_agencies_arg, stop_group
from simulations.leakscan import needles_from_province, scan

pytestmark = pytest.mark.slow

EDUCATION = ("university_a", "university_b")
DEPARTMENT = "civil_affairs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Federation:
    def __init__(self, root: Path, province: Path) -> None:
        self.root = root
        self.province = province
        self.certs = root / "certs"
        names = [*EDUCATION, DEPARTMENT]
        make_trial_pki(self.certs, hosts=[])
        self.keys = root / "node-keys"  # each node's own key pair (one folder per node in life)
        for name in [*names, "intruder"]:
            make_key_pair(self.keys, name)
        # each node's matching identity made in its own folder; the roster of public keys
        Roster.of(AgencyIdentity.load_or_create(
            root / "identity" / n, agency=n, kind="education" if n in EDUCATION else "department",
            department="" if n in EDUCATION else n).public for n in names
        ).save(root / "roster.toml")
        self.coord = SuperLinkLauncher(out=root / "coordinator", certs=self.certs,
                                       port=_free_port())
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.bound: dict[int, str] = {}  # node id -> agency, from key registration

    def settings(self, name: str, tag: str = "a") -> NodeSettings:
        edu = name in EDUCATION
        folder = "education" if edu else "departments"
        return NodeSettings(
            agency_id=name, kind="education" if edu else "department",
            department="education" if edu else name,
            data=self.province / "agencies" / folder / f"{name}.parquet",
            schema=self.province / "schema.toml", out=self.root / f"nodes-{tag}" / name,
            epsilon=1.0, delta=1e-5,
            roster=self.root / "roster.toml", identity=self.root / "identity" / name)

    def start_node(self, name: str, key: str | None = None, tag: str = "a"
                   ) -> subprocess.Popen[bytes]:
        cmd = supernode_command(self.settings(name, tag), superlink=self.coord.address,
                                ca=self.certs / "ca.crt",
                                key=self.keys / f"{key or name}.key", port=_free_port())
        log = (self.root / f"node-{key or name}.log").open("wb")
        env = {**flower_env(), TRANSCRIPT_ENV: str(self.root / "transcript" / tag / name)}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        self.nodes[key or name] = proc
        return proc

    def run(self, **config: object) -> dict[str, object]:
        run_id = self.submit(**{"out": str(self.root / "run"), "timeout": 150.0, **config})
        return self.coord.wait(run_id, timeout=900)

    def submit(self, **config: object) -> int:
        """Start a run with every agency id bound to its registered key."""
        base: dict[str, object] = {"min-nodes": 3, "expected-nodes": 3, "wait-nodes": 180.0,
                                   "schema": str(self.province / "schema.toml"),
                                   "node-agencies": node_agencies_arg(self.bound)}
        return self.coord.submit({**base, **config})


@pytest.fixture(scope="module")
def federation(small_province: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("deploy"), small_province)
    fed.coord.start()
    for name in [*EDUCATION, DEPARTMENT]:
        fed.bound[fed.coord.register(fed.keys / f"{name}.pub", name)] = name
        fed.start_node(name)
    try:
        yield fed
    finally:
        for proc in fed.nodes.values():
            stop_group(proc)
        fed.coord.stop()


def test_short_run_with_tls_and_node_auth(federation: Federation) -> None:
    t0 = time.perf_counter()
    info = federation.run(rounds=1, session="short")
    assert info["status"] == "finished:completed"
    year = json.loads((federation.root / "run" / "coordinator" / "year.json").read_text())
    assert set(year["agencies"]) == {*EDUCATION, DEPARTMENT}
    assert year["matching"]["per_home"][EDUCATION[0]]["coverage"] > 0
    for name in EDUCATION:
        assert (federation.root / "nodes-a" / name / "recommendations.parquet").exists()
    # Every reply that left every node over the network: no raw ID, no plaintext value.
    files = sorted((federation.root / "transcript" / "a").rglob("*.bin"))
    kinds = {f.name.split("-")[1] for f in files}
    assert {"query.info", "query.match", "train", "query.identify"} <= kinds
    report = scan(files, needles_from_province(federation.province))
    assert report.bytes > 10_000
    assert report.clean, (report.id_hits, report.value_hits)
    (federation.root / "short_run_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}")


def test_unregistered_node_is_refused(federation: Federation) -> None:
    proc = federation.start_node(EDUCATION[0], key="intruder")
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_group(proc)
    log = (federation.root / "node-intruder.log").read_text(errors="replace")
    # The SuperLink refuses to activate a node whose key was never registered.
    assert "Failed to activate SuperNode" in log
    assert "SuperNode ID" not in log


def _three_round_run(federation: Federation, session: str, *, timeout: float) -> int:
    """Restart every node on fresh folders (the earlier runs spent these tables' budget, as
    they should) and submit a 3-round run without matching; its run id."""
    for name in [*EDUCATION, DEPARTMENT]:
        stop_group(federation.nodes[name])
        federation.start_node(name, tag=session)
    return federation.submit(out=str(federation.root / f"run_{session}"), timeout=timeout,
                             rounds=3, matching=False, session=session)


def _wait_until_trained(ledger: Path, key: str) -> None:
    """Until the node's own privacy ledger records round ``key`` (it has spent on it)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if ledger.exists() and key in ledger.read_text():
            return
        time.sleep(1.0)


def _finished_year(federation: Federation, run_id: int, session: str) -> dict[str, Any]:
    """The coordinator's year record once the run has completed all 3 rounds."""
    info = federation.coord.wait(run_id, timeout=900)
    assert info["status"] == "finished:completed"
    path = federation.root / f"run_{session}" / "coordinator" / "year.json"
    year: dict[str, Any] = json.loads(path.read_text())
    assert len(year["training"]["rounds"]) == 3
    return year


def test_node_killed_mid_round_run_completes(federation: Federation) -> None:
    victim = EDUCATION[1]
    run_id = _three_round_run(federation, "kill", timeout=240.0)
    _wait_until_trained(federation.root / "nodes-kill" / victim / "privacy_ledger.json", "kill-1")
    stop_group(federation.nodes[victim])
    year = _finished_year(federation, run_id, "kill")
    assert victim in year["training"]["rounds"][-1]["excluded"]
    assert year["identification"]["failed"] == [victim]


def test_node_that_comes_back_rejoins(federation: Federation) -> None:
    victim = EDUCATION[1]
    run_id = _three_round_run(federation, "rejoin", timeout=120.0)
    ledger = federation.root / "nodes-rejoin" / victim / "privacy_ledger.json"
    _wait_until_trained(ledger, "rejoin-1")
    stop_group(federation.nodes[victim])
    federation.start_node(victim, tag="rejoin")  # same key, same node folder: it comes back
    year = _finished_year(federation, run_id, "rejoin")
    assert victim in year["training"]["rounds"][-1]["used"]
    assert year["identification"]["failed"] == []
    assert (federation.root / "nodes-rejoin" / victim / "recommendations.parquet").exists()
    # the node's own ledger survived the restart: epsilon after each round it trained,
    # increasing and never past its budget
    after = json.loads(ledger.read_text())["epsilon_after"]
    assert "rejoin-1" in after
    assert "rejoin-3" in after
    values = [float(after[k]) for k in sorted(after)]
    assert values == sorted(values)
    assert values[-1] <= 1.0 + 1e-9

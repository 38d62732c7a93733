"""A deployment across separate "machines": the coordinator and four agency nodes, each in
its own network namespace (addresses from 198.18.0.0/15), no folder shared between them.

What crosses between machines is what an operator would carry: each node's public key to
the coordinator, the CA certificate and the app signer's public key to the nodes, the
app signature to the coordinator. Covered: TLS and node authentication; a node started
before the coordinator (it waits more than a minute, then joins); app bundles refused
when unsigned or modified, accepted when signed; a node whose --agency-id does not match
its key, excluded with its reason while the others finish matching and 3 rounds; every
process's exit code; no private key readable by the coordinator, none left by a node
except its own 0600 key. Slow (about 36 s per round plus start-up): marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.deploy import SuperLinkLauncher
from tests.server.netns import Network, netns_available

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FEDID = ["nice", "-n", "10", sys.executable, "-m", "cli.main"]
NODES = {  # machine (= key name) -> (--agency-id, kind, table folder)
    "university_a": ("university_a", "education", "education"),
    "university_b": ("university_b", "education", "education"),
    "civil_affairs": ("civil_affairs", "department", "departments"),
    "health": ("health_bureau", "department", "departments"),  # key made for "health"
}
MISFIT = "health"


def _env(home: Path) -> dict[str, str]:
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(home),
            "FLWR_HOME": str(home / ".flwr"), "TMPDIR": str(home / "tmp"),
            "PYTHONWARNINGS": "ignore", "FLWR_TELEMETRY_ENABLED": "0",
            "TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK": "true",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


def _private_key_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and b"PRIVATE KEY" in p.read_bytes())


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture
def network() -> Iterator[Network]:
    why = netns_available()
    if why:
        pytest.skip(f"network namespaces unavailable: {why}")
    net = Network()
    try:
        yield net
    finally:
        net.close()
        assert net.leftovers() == []


def test_separate_machines(network: Network, small_province: Path, tmp_path: Path) -> None:
    root = tmp_path
    coord_dir = root / "coordinator"
    coord_dir.mkdir()
    coord_ip = network.add("coordinator")
    dirs = {name: root / name for name in NODES}
    for name, folder in dirs.items():
        folder.mkdir()
        network.add(name)

    def run(machine: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return network.run(machine, [*FEDID, *args], cwd=cwd, env=_env(cwd))

    # --- keys, each made where it belongs; only public halves travel ---
    done = run("coordinator", coord_dir, "certs", "--out", "certs", "--host", coord_ip)
    assert done.returncode == 0, done.stderr
    for name, folder in dirs.items():
        sub = NODES[name][2]
        (folder / "data").mkdir()
        shutil.copy(small_province / "agencies" / sub / f"{name}.parquet", folder / "data")
        shutil.copy(small_province / "schema.toml", folder / "data")
        kind = NODES[name][1]
        done = run(name, folder, "keygen", "--out", "keys", "--agency-id", name, "--kind", kind,
                   *([] if kind == "education" else ["--department", name]))
        assert done.returncode == 0, done.stderr
        shutil.copy(folder / "keys" / f"{name}.pub", coord_dir / "certs" / "nodes")
        shutil.copy(coord_dir / "certs" / "ca.crt", folder)
    # --- the roster of identity keys, built by the province's operator (not the coordinator)
    # from each agency's public file and handed to every agency ---
    operator = root / "operator"
    operator.mkdir()
    for name, folder in dirs.items():
        shutil.copy(folder / "keys" / "identity" / "identity.pub.toml",
                    operator / f"{name}.identity.toml")
    done = subprocess.run([*FEDID, "roster", "--out", "roster.toml",
                           *sorted(str(p) for p in operator.glob("*.identity.toml"))],
                          cwd=operator, env=_env(operator), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    for folder in dirs.values():
        shutil.copy(operator / "roster.toml", folder)
    shutil.copy(small_province / "schema.toml", coord_dir)
    signer = root / "signer"
    for args in (["keygen", "--out", str(signer), "--signer", "province"],
                 ["sign-app", "--key", str(signer / "province.key"), "--out",
                  str(signer / "app.sig"), "--serial", "1"]):
        done = subprocess.run([*FEDID, *args], cwd=root, env=_env(root / "signer-home"),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    shutil.copy(signer / "app.sig", coord_dir)
    for folder in dirs.values():
        shutil.copy(signer / "province.pub", folder)
    modified = root / "modified_app"
    shutil.copytree(SuperLinkLauncher.default_app_dir() / "server", modified / "server",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SuperLinkLauncher.default_app_dir() / "pyproject.toml", modified)
    with (modified / "server" / "server_app.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# changed after signing\n")

    def start_node(name: str) -> subprocess.Popen[bytes]:
        agency, kind, _ = NODES[name]
        folder = dirs[name]
        return network.start(name, [
            *FEDID, "node", "--data", f"data/{name}.parquet", "--schema", "data/schema.toml",
            "--agency-id", agency, "--kind", kind, "--out", "out",
            "--superlink", f"{coord_ip}:9093", "--ca", "ca.crt", "--key",
            f"keys/{name}.key", "--trust", "province.pub", "--wait", "600",
            "--roster", "roster.toml", "--identity", "keys/identity", "--budget", "1",
            *([] if kind == "education" else ["--department", name]),
        ], cwd=folder, env=_env(folder), log=root / f"{name}.log")

    # --- a node started before any coordinator waits (longer than Flower's ~55 s) ---
    early = start_node("university_a")
    time.sleep(65)
    assert early.poll() is None

    # --- a coordinator that submits an unsigned, then a modified bundle: refused ---
    done = network.run("coordinator", [
        sys.executable, "-m", "tests.server.lying_coordinator", "out", "certs", coord_ip,
        "app.sig", str(modified)], cwd=coord_dir, env=_env(coord_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "unsigned": "finished:failed", "modified": "finished:failed"}
    early_log = (root / "university_a.log").read_text(errors="replace")
    assert "not reachable yet" in early_log
    # Flower's own checks: an unsigned FAB has no verification record at all, a modified one
    # a signature that does not verify
    assert "The FAB could not be verified" in early_log
    assert "FAB verification failed" in early_log
    assert "refused to run the coordinator's app bundle" in early_log
    assert early.poll() is None  # it keeps waiting for a signed bundle

    # --- the real year: signed app, the other nodes, one misconfigured ---
    nodes = {"university_a": early, **{n: start_node(n) for n in NODES if n != "university_a"}}
    t0 = time.perf_counter()
    coordinator = network.start("coordinator", [
        *FEDID, "coordinator", "--out", "out", "--certs", "certs", "--bind", coord_ip,
        "--advertise", coord_ip, "--port", "9093", "--app-signature", "app.sig",
        "--rounds", "3", "--min-nodes", "3", "--wait-nodes", "300", "--timeout", "150",
        "--schema", "schema.toml", "--session", "netns",
    ], cwd=coord_dir, env=_env(coord_dir), log=root / "coordinator.log")
    code = _wait(coordinator, 1500)
    wall = time.perf_counter() - t0
    coord_log = (root / "coordinator.log").read_text(errors="replace")
    assert code == 0, coord_log[-3000:]
    codes = {n: _wait(p, 120) for n, p in nodes.items()}
    logs = {n: (root / f"{n}.log").read_text(errors="replace") for n in NODES}
    assert codes == {"university_a": 0, "university_b": 0, "civil_affairs": 0, MISFIT: 12}, {
        n: logs[n][-1500:] for n in NODES}
    assert "--agency-id is 'health_bureau'" in logs[MISFIT]
    assert "registered its key for 'health'" in logs[MISFIT]
    for name in ("university_a", "university_b", "civil_affairs"):
        assert "year 'netns' finished" in logs[name]

    year = json.loads((coord_dir / "out" / "coordinator" / "year.json").read_text())
    assert set(year["agencies"]) == {"university_a", "university_b", "civil_affairs"}
    assert len(year["training"]["rounds"]) == 3
    assert year["matching"]
    [reason] = year["excluded_nodes"].values()
    assert "health_bureau" in reason
    for name in ("university_a", "university_b"):
        assert (dirs[name] / "out" / "recommendations.parquet").exists()

    # --- private keys: the coordinator holds only its own; each node only its own ---
    node_keys = {n: (dirs[n] / "keys" / f"{n}.key").read_bytes() for n in NODES}
    # ... and the agency identity keys (matching signatures, sealed keyring): on the node only
    node_keys |= {f"{n} identity": (dirs[n] / "keys" / "identity" / "identity.key").read_bytes()
                  for n in NODES}
    for name in NODES:
        ident = dirs[name] / "keys" / "identity" / "identity.key"
        assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    coord_private = _private_key_files(coord_dir)
    assert [p.relative_to(coord_dir).as_posix() for p in coord_private] == [
        "certs/ca.key", "certs/server.key"]
    for path in coord_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not any(k in blob for k in node_keys.values()), path
    for name, folder in dirs.items():
        found = _private_key_files(folder)
        assert found == [folder / "keys" / f"{name}.key"], found
        assert stat.S_IMODE(found[0].stat().st_mode) == 0o600

    rounds = [float(r["seconds"]) for r in year["training"]["rounds"]]
    print(json.dumps({"bench": "netns_deployment", "wall_s": round(wall, 1),
                      "round_s": [round(r, 1) for r in rounds],
                      "phase_s": {k: round(float(v), 1) for k, v in year["phase_seconds"].items()},
                      "load": os.getloadavg()}))

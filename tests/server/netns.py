"""Separate "machines" on one host: network namespaces linked by a bridge.

Each machine is a network namespace with one virtual Ethernet link to a switch namespace
that holds a bridge; addresses come from the benchmarking range 198.18.0.0/15 (RFC 2544),
never a private or public one. Everything is created by :class:`Network` and removed by
:meth:`Network.close` (processes first, then the namespaces; the switch namespace takes
the bridge and the veth ends with it). Needs root and ``ip netns``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from fedid.proc import stop_group

SUBNET = ipaddress.IPv4Network("198.18.0.0/24")
assert SUBNET.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_available() -> str:
    """'' if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "no `ip` command"
    name = f"fedid-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        return f"ip netns add failed: {exc.stderr.strip()}"
    _ip("netns", "del", name)
    return ""


class Network:
    """A switch namespace with a bridge, and machines plugged into it."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.switch = f"fedid-{self.tag}-sw"
        self.machines: dict[str, str] = {}  # machine -> address
        self.procs: list[subprocess.Popen[bytes]] = []
        _ip("netns", "add", self.switch)
        self._in(self.switch, "link", "add", "br0", "type", "bridge")
        self._in(self.switch, "link", "set", "br0", "up")

    def ns(self, machine: str) -> str:
        return f"fedid-{self.tag}-{machine}"

    def _in(self, ns: str, *args: str) -> None:
        _ip("-n", ns, *args)

    def add(self, machine: str) -> str:
        """A new machine; its address."""
        host = len(self.machines) + 1
        address = str(SUBNET[host])
        ns = self.ns(machine)
        _ip("netns", "add", ns)
        here, there = f"h{self.tag}{host}", f"s{self.tag}{host}"
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", here, "netns", ns)
        _ip("link", "set", there, "netns", self.switch)
        self._in(self.switch, "link", "set", there, "master", "br0")
        self._in(self.switch, "link", "set", there, "up")
        self._in(ns, "link", "set", "lo", "up")
        self._in(ns, "link", "set", here, "name", "eth0")
        self._in(ns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0")
        self._in(ns, "link", "set", "eth0", "up")
        self.machines[machine] = address
        return address

    def start(self, machine: str, cmd: list[str], *, cwd: Path, env: dict[str, str],
              log: Path) -> subprocess.Popen[bytes]:
        """Run ``cmd`` on ``machine`` (in its namespace), output to ``log``."""
        with log.open("wb") as handle:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(machine), *cmd], cwd=cwd,
                                    env=env, stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, machine: str, cmd: list[str], *, cwd: Path, env: dict[str, str]
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(machine), *cmd], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    def close(self) -> None:
        """Stop every process started here, then remove every namespace."""
        for proc in self.procs:
            stop_group(proc, grace=45)  # fedid stops its own children first
        for name in [*(self.ns(m) for m in self.machines), self.switch]:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)

    def leftovers(self) -> list[str]:
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                 check=False).stdout
        return [line.split()[0] for line in listing.splitlines()
                if line.startswith(f"fedid-{self.tag}-")]

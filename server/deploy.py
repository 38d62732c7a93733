"""Running the coordinator for real: a SuperLink, registered SuperNodes, one run.

:class:`SuperLinkLauncher` drives Flower's own executables (``flower-superlink``, ``flwr``):

1. writes a Flower home (``<out>/flwr/config.toml``, ``out`` made absolute against the
   working directory first, so nothing is ever written next to the installed package)
   with one SuperLink connection named ``fedid`` (address, CA certificate);
2. checks that ``bind:port`` is free (a busy port is named as such before anything is
   registered anywhere) and that the advertised name is in the server certificate, then
   starts ``flower-superlink`` on ``--host bind --port port`` (one HTTPS port serves the
   Fleet, Control and Runtime APIs) with TLS (``--ssl-ca-certfile/--ssl-certfile/
   --ssl-keyfile``), SuperNode authentication (``--enable-supernode-auth``) and runtime
   dependency installation off, its state in ``<out>/superlink.db``;
3. registers each agency's SuperNode public key (``flwr supernode register``); a
   node whose key is not registered is refused by the SuperLink;
4. submits the fedid app (``flwr run``) with the run config, then polls the run's status
   until it finishes (``flwr run --stream`` exits 0 even when a run fails, so the status
   is what counts) and raises FederationError if it did not finish completed.

``TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK=true`` is set for these processes: the
installed grpcio-health-checking was generated with a newer protobuf than the runtime
(the SuperLink does not start otherwise on this machine).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedid.app_trust import AppSignature
from fedid.errors import ConfigError, FederationError
from fedid.proc import stop_group
from privacy.atomic import atomic_write_bytes
from server.app_bundle import attach_signature, check_signed, fab_sha256

__all__ = [
    "PortBusyError",
    "SuperLinkLauncher",
    "flower_env",
    "node_agencies_arg",
    "run_config_arg",
    "stop_group",
]

_log = logging.getLogger(__name__)
CONNECTION = "fedid"


def flower_env(flwr_home: Path | None = None) -> dict[str, str]:
    """Environment for Flower's executables (telemetry off, no dependency installs)."""
    env = dict(os.environ)
    env["TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK"] = "true"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FederationError(f"{name} is not on PATH; install flwr (the fedid dependencies).")
    return path


def node_agencies_arg(bound: dict[int, str]) -> str:
    """``{node id: agency}`` as one run-config string: ``"id=agency,id=agency"``."""
    return ",".join(f"{node}={agency}" for node, agency in sorted(bound.items()))


def run_config_arg(config: dict[str, Any]) -> str:
    """``key=value`` pairs in Flower's run-config syntax (strings quoted)."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            parts.append(f'{key}="{value}"')
    return " ".join(parts)


class PortBusyError(FederationError):
    """The SuperLink's address is taken (another coordinator or service listens there)."""

    exit_code = 9


def _is_wildcard(host: str) -> bool:
    return host in {"0.0.0.0", "::", ""}  # noqa: S104 - a wildcard is what is being detected


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (as the SuperLink would, SO_REUSEADDR on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}. Is --bind an "
                              "address of this machine?") from exc
    return True


def certificate_names(cert: Path) -> set[str]:
    """DNS names and IP addresses the certificate ``cert`` is valid for."""
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    try:
        sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in sans.get_values_for_type(x509.DNSName)} | {
        str(a) for a in sans.get_values_for_type(x509.IPAddress)}


@dataclass
class SuperLinkLauncher:
    """One SuperLink plus the run of the fedid app on it.

    ``bind`` is the address the SuperLink listens on (``0.0.0.0`` for every interface);
    ``advertise`` the host name or address nodes use to reach it (default: ``bind``, or
    ``127.0.0.1`` for a wildcard); both must be in the server certificate.
    """

    out: Path
    certs: Path | None
    port: int = 9093
    bind: str = "127.0.0.1"
    advertise: str | None = None
    app_dir: Path = field(default_factory=lambda: SuperLinkLauncher.default_app_dir())
    process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def default_app_dir() -> Path:
        """The folder of the installed fedid app (its pyproject.toml), read, never written."""
        return Path(__file__).resolve().parents[1]

    def __post_init__(self) -> None:
        self.out = self.out.expanduser().resolve()  # against the working directory, once
        self.app_dir = self.app_dir.expanduser().resolve()
        if self.certs is not None:
            self.certs = self.certs.expanduser().resolve()
        if not (self.app_dir / "pyproject.toml").exists():
            raise ConfigError(f"no pyproject.toml with the fedid app in {self.app_dir}.")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535. Got {self.port}.")
        if self.certs is not None:
            for name in ("ca.crt", "server.crt", "server.key"):
                if not (self.certs / name).exists():
                    raise ConfigError(f"{self.certs / name} is missing; run `fedid certs`.")
            names = certificate_names(self.certs / "server.crt")
            for host in {self.local_host, self.advertised_host}:
                if _canonical(host) not in names:
                    raise ConfigError(
                        f"the SuperLink certificate {self.certs / 'server.crt'} is not valid "
                        f"for {host!r} (it names {sorted(names)}). Make it with "
                        f"`fedid certs --host {host}` (repeat --host for every name nodes use).")

    @property
    def flwr_home(self) -> Path:
        return self.out / "flwr"

    @property
    def database(self) -> Path:
        return self.out / "superlink.db"

    @property
    def local_host(self) -> str:
        """Where this machine's own ``flwr`` commands reach the SuperLink."""
        return "127.0.0.1" if _is_wildcard(self.bind) else self.bind

    @property
    def advertised_host(self) -> str:
        return self.advertise or self.local_host

    @property
    def address(self) -> str:
        """``host:port`` of the SuperLink for this machine's ``flwr`` commands."""
        return _join(self.local_host, self.port)

    @property
    def node_address(self) -> str:
        """``host:port`` nodes pass as ``fedid node --superlink``."""
        return _join(self.advertised_host, self.port)

    def _write_home(self) -> None:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
                 f'address = "{self.address}"']
        if self.certs is None:
            lines.append("insecure = true")
        else:
            lines.append(f'root-certificates = "{(self.certs / "ca.crt").resolve()}"')
        atomic_write_bytes(self.flwr_home / "config.toml", ("\n".join(lines) + "\n").encode())

    def start(self, *, wait: float = 90.0) -> None:
        """Start the SuperLink and wait until its Control API answers.

        PortBusyError (before anything starts or is registered) if ``bind:port`` is taken.
        """
        if not port_is_free(self.bind, self.port):
            raise PortBusyError(
                f"address already in use: {self.bind}:{self.port} is taken by another "
                "process (another coordinator?). Stop it, or choose another --port.")
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_home()
        cmd = [_exe("flower-superlink"), "--host", self.bind, "--port", str(self.port),
               "--database", str(self.database),
               "--disable-runtime-dependency-installation"]
        if self.certs is None:
            cmd.append("--insecure")
        else:
            c = self.certs.resolve()
            cmd += ["--ssl-ca-certfile", str(c / "ca.crt"), "--ssl-certfile",
                    str(c / "server.crt"), "--ssl-keyfile", str(c / "server.key"),
                    "--enable-supernode-auth"]
        log = (self.out / "superlink.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed executable and arguments
            cmd, stdout=log, stderr=subprocess.STDOUT, env=flower_env(self.flwr_home),
            start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._exited()
            code, out = self._flwr(["ls", CONNECTION, "--format", "json"], check=False)
            if code == 0 and '"success": true' in out:  # flwr exits 0 on failures too
                time.sleep(1.0)  # a SuperLink that lost the port race exits right after
                if self.process.poll() is not None:
                    self._exited()
                return
            time.sleep(1.0)
        raise FederationError(f"the SuperLink did not answer within {wait:.0f} s.")

    def _exited(self) -> None:
        log = self.out / "superlink.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if "address already in use" in text.lower():
            raise PortBusyError(
                f"address already in use: the SuperLink could not listen on {self.address}."
                " Stop the other process, or choose another --port.")
        code = self.process.returncode if self.process is not None else None
        raise FederationError(f"the SuperLink exited with code {code}; see {log}.")

    def _flwr(self, args: list[str], *, check: bool = True, cwd: Path | None = None,
              timeout: float = 120.0) -> tuple[int, str]:
        done = subprocess.run(  # noqa: S603 - fixed executable and arguments
            [_exe("flwr"), *args], capture_output=True, text=True, timeout=timeout,
            env=flower_env(self.flwr_home), cwd=cwd, check=False)
        if check and done.returncode != 0:
            raise FederationError(
                f"flwr {args[0]} failed (exit {done.returncode}): {done.stdout[-400:]}"
                f"{done.stderr[-400:]}")
        return done.returncode, done.stdout

    def register(self, public_key: Path, name: str) -> int:
        """Allow the SuperNode holding the private half of ``public_key`` to connect.

        Returns the node id the SuperLink bound to that key: pass ``{node id: agency}`` as
        the run's ``node-agencies`` so the coordinator accepts an agency id only from the
        node whose key was registered for it. Each id is also kept in ``node_ids.json``
        beside the SuperLink's database, so a coordinator restarted on the same ``out``
        (whose database already holds the key, and refuses it again) still knows it.
        """
        if not public_key.exists():
            raise ConfigError(f"public key {public_key} does not exist.")
        known_path = self.out / "node_ids.json"
        known: dict[str, int] = (
            json.loads(known_path.read_text(encoding="utf-8")) if known_path.exists() else {}
        )
        code, out = self._flwr(["supernode", "register", str(public_key.resolve()), CONNECTION,
                                "--name", name, "--format", "json"], check=False)
        try:
            node_id = int(json.loads(out[out.find("{"):])["node-id"])
        except (ValueError, KeyError) as exc:
            if name in known:  # registered by an earlier start on this folder
                return known[name]
            raise FederationError(
                f"flwr supernode register gave no node id (exit {code}): {out[-300:]}"
            ) from exc
        known[name] = node_id
        atomic_write_bytes(known_path, json.dumps(known, indent=1).encode())
        return node_id

    def submit(self, run_config: dict[str, Any], *, signature: AppSignature | None = None
               ) -> int:
        """Start the fedid app on the SuperLink; return the run id.

        With ``signature`` (the app signer's, over this app folder's FAB; ConfigError
        otherwise, before anything is submitted) the FAB carries it to the nodes.
        """
        fab_hash = fab_sha256(self.app_dir)
        if signature is not None:
            check_signed(signature, fab_hash)
        _, out = self._flwr(["run", str(self.app_dir), CONNECTION, "--run-config",
                             run_config_arg(run_config), "--format", "json"],
                            cwd=self.out)
        start = out.find("{")
        try:
            run_id = int(json.loads(out[start:])["run-id"])
        except (ValueError, KeyError) as exc:
            raise FederationError(f"flwr run gave no run id: {out[-300:]}") from exc
        if signature is not None:
            attach_signature(self.database, signature, fab_hash=fab_hash)
        return run_id

    def status(self, run_id: int) -> dict[str, Any]:
        _, out = self._flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"])
        runs = json.loads(out[out.find("{"):]).get("runs", [])
        if not runs:
            raise FederationError(f"run {run_id} is unknown to the SuperLink.")
        return dict(runs[0])

    def status_after(self, run_id: int, *, timeout: float = 600.0) -> str:
        """The run's final status (``finished:...``), whatever it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = str(self.status(run_id).get("status", ""))
            if status.startswith("finished"):
                return status
            time.sleep(2.0)
        raise FederationError(f"run {run_id} did not finish within {timeout:.0f} s.")

    def wait(self, run_id: int, *, timeout: float) -> dict[str, Any]:
        """Poll until the run finishes; FederationError unless it completed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.status(run_id)
            status = str(info.get("status", ""))
            if status.startswith("finished"):
                if status != "finished:completed":
                    raise FederationError(
                        f"run {run_id} ended {status}: {info.get('status-details', '')}.")
                return info
            time.sleep(2.0)
        raise FederationError(f"run {run_id} did not finish within {timeout:.0f} s.")

    def stop(self) -> None:
        """Stop the SuperLink and the processes it started (its own process group)."""
        stop_group(self.process)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

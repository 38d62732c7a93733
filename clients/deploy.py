"""Starting and supervising an agency's SuperNode for real (``fedid node``).

The node's settings travel as Flower node config (``--node-config``), read back by
:func:`clients.config.node_settings` inside the ClientApp: its own table, schema, output
folder and privacy budget. TLS: the CA certificate the SuperLink's certificate chains to
(``--root-certificates``); authentication: the node's private key
(``--auth-supernode-private-key``), made on this machine, whose public half the
coordinator registered; app bundles: only those signed by a trusted signer
(``--trusted-entities``), never older than the newest this node ran (see
:mod:`fedid.app_trust`, :mod:`clients.supernode`). Runtime dependency installation
stays off (the node runs the fedid it installed).

Lifecycle (:func:`wait_for_coordinator`, :func:`supervise`):

1. wait for the coordinator with backoff (1 s doubling to 30 s) up to ``wait`` seconds,
   then check its TLS certificate against the CA (a wrong CA is named as such);
2. run the SuperNode (it retries a lost connection for up to ``wait`` s too);
3. stop when the coordinator's notice arrives (:mod:`clients.lifecycle`) or the SuperNode
   stops; each outcome is an error class below with its own exit code.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from clients.config import NodeSettings, TrainingSettings
from clients.lifecycle import STATUS_FILE, read_status
from clients.supernode import REFUSED
from fedid.app_trust import STATE_FILE
from fedid.errors import ConfigError, FederationError
from fedid.proc import stop_group

__all__ = ["CoordinatorUnreachableError", "NodeRefusedError", "SuperNodeExitError",
           "TlsVerificationError", "YearFailedError", "node_config_arg", "parse_address",
           "supernode_command", "supervise", "wait_for_coordinator"]

_log = logging.getLogger(__name__)
Say = Callable[[str], None]


class CoordinatorUnreachableError(FederationError):
    """No coordinator answered at ``--superlink`` within ``--wait`` seconds."""

    exit_code = 10


class TlsVerificationError(FederationError):
    """The coordinator's TLS certificate does not verify against ``--ca``."""

    exit_code = 11


class NodeRefusedError(FederationError):
    """The coordinator refused this node (key not registered, or agency id mismatch)."""

    exit_code = 12


class YearFailedError(FederationError):
    """The coordinator reported that the year stopped with an error."""

    exit_code = 13


class SuperNodeExitError(FederationError):
    """The SuperNode stopped on its own before the year was over."""

    exit_code = 14


def node_config_arg(s: NodeSettings) -> str:
    """The ``--node-config`` string for ``s``: every setting the node's config can carry that
    differs from its default (paths made absolute), so nothing set on ``fedid node`` is lost
    on the way to the SuperNode (``tests/clients/test_config.py`` round-trips it)."""
    default = NodeSettings.from_mapping({
        "agency-id": s.agency_id, "kind": s.kind, "data": str(s.data), "out": str(s.out),
        "epsilon": s.epsilon, "delta": s.delta})
    pairs: dict[str, str] = {}
    for f in fields(NodeSettings):
        value = getattr(s, f.name)
        key = f.metadata.get("key") or f.name.replace("_", "-")
        if f.name == "training":
            pairs.update(_training_pairs(value))
        elif f.name in _ALWAYS or value != getattr(default, f.name):
            pairs[key] = _config_value(value)
    return " ".join(f"{k}={v}" for k, v in pairs.items())


_ALWAYS = frozenset({"agency_id", "kind", "department", "data", "out", "epsilon", "delta"})


def _config_value(value: object) -> str:
    """One node-config value: numbers bare, paths absolute, text in double quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        value = ",".join(str(v) for v in value)
    text = str(value.resolve()) if isinstance(value, Path) else str(value)
    if '"' in text or "\\" in text or any(ord(c) < 32 for c in text):
        raise ConfigError("node config values must not contain double quotes, backslashes or "
                          f"control characters (the SuperNode reads them as TOML). Got {text!r}.")
    return f'"{text}"'


def _training_pairs(t: TrainingSettings) -> dict[str, str]:
    """``train-<name>`` for the values the node set, ``-range`` where not the default."""
    default = TrainingSettings.from_mapping({})
    out = {f"train-{n}": repr(t.values[n]) for n in sorted(t.explicit)}
    out.update({f"train-{n}-range": f'"{lo!r},{hi!r}"' for n, (lo, hi) in t.ranges.items()
                if (lo, hi) != default.ranges[n]})
    if t.recipe_name != default.recipe_name:
        out["train-recipe"] = _config_value(t.recipe_name)
    return out


def supernode_command(
    s: NodeSettings,
    *,
    superlink: str,
    ca: Path | None,
    key: Path | None,
    port: int,
    trusted: Path | None = None,
    wait: float = 0.0,
    bundle_max_age: float | None = None,
) -> list[str]:
    """The SuperNode's arguments (Flower's SuperNode run by :mod:`clients.supernode`);
    ``ca``/``key`` None means insecure (tests only).

    ``trusted``: the trusted-entities file (only app bundles signed by one of its keys
    run, with a serial not below the highest this node ran, recorded in
    ``<out>/app_bundle.json``; signed at most ``bundle_max_age`` seconds ago when given);
    ``wait`` > 0: give up a lost connection after that many seconds.
    """
    if shutil.which("flower-supernode") is None:
        raise FederationError("flower-supernode is not on PATH; install flwr.")
    cmd = [sys.executable, "-m", "clients.supernode"]
    if trusted is not None:
        cmd += ["--bundle-state", str(s.out.resolve() / STATE_FILE)]
        if bundle_max_age is not None:
            if not bundle_max_age > 0:
                raise ConfigError(f"the app bundles' maximum age must be > 0. "
                                  f"Got {bundle_max_age}.")
            cmd += ["--bundle-max-age", repr(float(bundle_max_age))]
    cmd += ["--superlink", superlink, "--port", str(port), "--node-config", node_config_arg(s)]
    if wait > 0:
        cmd += ["--max-wait-time", str(wait)]
    if trusted is not None:
        cmd += ["--trusted-entities", str(trusted.resolve())]
    if ca is None:
        cmd.append("--insecure")
    else:
        if not ca.exists():
            raise ConfigError(f"CA certificate {ca} does not exist.")
        cmd += ["--root-certificates", str(ca.resolve())]
    if key is not None:
        if not key.exists():
            raise ConfigError(f"SuperNode private key {key} does not exist.")
        cmd += ["--auth-supernode-private-key", str(key.resolve())]
    return cmd


def parse_address(superlink: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as host and port; ConfigError otherwise."""
    host, sep, port = superlink.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--superlink must be HOST:PORT. Got {superlink!r}.")
    return host, int(port)


def _tls_check(host: str, port: int, ca: Path, superlink: str) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            return
    except ssl.SSLCertVerificationError as exc:
        raise TlsVerificationError(
            f"the coordinator at {superlink} presented a certificate that does not verify "
            f"against --ca {ca} ({exc.verify_message}). Check --ca: it must be the "
            "coordinator's ca.crt from `fedid certs`; if the CA is right, the certificate "
            f"must name {host!r} (`fedid certs --host {host}` on the coordinator).") from exc
    except ssl.SSLError as exc:
        raise TlsVerificationError(
            f"TLS with the coordinator at {superlink} failed ({exc.reason}). Check that "
            "--superlink is the coordinator's address and --ca its ca.crt.") from exc


def wait_for_coordinator(superlink: str, *, ca: Path | None, wait: float, say: Say,
                         first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """Return once the coordinator accepts connections (and its certificate verifies).

    ``wait`` <= 0 waits for ever. CoordinatorUnreachableError after ``wait`` seconds;
    TlsVerificationError at once if the certificate does not verify against ``ca``.
    """
    host, port = parse_address(superlink)
    start = time.monotonic()
    delay = first_delay
    while True:
        try:
            with socket.create_connection((host, port), timeout=10):
                pass
        except OSError as exc:
            waited = time.monotonic() - start
            if 0 < wait <= waited + delay:
                raise CoordinatorUnreachableError(
                    f"no coordinator answered at {superlink} within {wait:.0f} s "
                    f"({exc.strerror or exc}). Check --superlink and that the coordinator "
                    "is running; raise --wait to wait longer.") from exc
            say(f"coordinator at {superlink} not reachable yet ({exc.strerror or exc}); "
                f"retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        if ca is not None:
            _tls_check(host, port, ca, superlink)
        return


# What the SuperNode logs when it is refused, gives up, or refuses an app bundle.
_NOT_REGISTERED = "Failed to activate SuperNode"
_GAVE_UP = "Giving up reconnection"
_BUNDLE_REFUSED = ("FAB verification failed", "The FAB could not be verified")


def supervise(cmd: list[str], *, env: dict[str, str], out: Path, say: Say,
              grace: float = 8.0, registration_wait: float = 90.0) -> str:
    """Run the SuperNode until the year is over; the session that finished.

    Its output is passed through. A key the coordinator does not know yet (it registers
    keys just after its SuperLink starts) is retried for ``registration_wait`` seconds.
    Raises NodeRefusedError, YearFailedError, CoordinatorUnreachableError or
    SuperNodeExitError (each names the fix).
    """
    (out / STATUS_FILE).unlink(missing_ok=True)
    start = time.monotonic()
    delay = 2.0
    while True:
        seen = _run_once(cmd, env=env, out=out, say=say, grace=grace)
        if "session" in seen:
            return _ended(read_status(out) or {}, out, say)
        if "not-registered" in seen:
            if time.monotonic() - start + delay > registration_wait:
                raise NodeRefusedError(
                    "the coordinator refused this node's key: it is not registered. Send "
                    "the public key from `fedid keygen` (NAME.pub) to the coordinator, who "
                    "registers it under this node's agency id, then start the node again.")
            say(f"the coordinator does not know this node's key (yet?); retrying in "
                f"{delay:.0f} s")
            time.sleep(delay)
            delay = min(2 * delay, 30.0)
            continue
        if "gave-up" in seen:
            raise CoordinatorUnreachableError(
                "the connection to the coordinator was lost and it did not come back "
                "within --wait. Start the node again once the coordinator runs.")
        raise SuperNodeExitError(
            f"the SuperNode exited with code {seen.get('code')} before the year was over; "
            "its log is above.")


def _run_once(cmd: list[str], *, env: dict[str, str], out: Path, say: Say, grace: float
              ) -> dict[str, str]:
    """One SuperNode process until it exits, is refused, or a notice arrives: what it saw."""
    seen: dict[str, str] = {}
    proc = subprocess.Popen(  # noqa: S603 - fixed executable and arguments
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True)

    def pump() -> None:
        if proc.stdout is None:  # not with stdout=PIPE
            return
        for line in proc.stdout:
            print(line, end="", flush=True)
            if _NOT_REGISTERED in line:
                seen["not-registered"] = line
            if _GAVE_UP in line:
                seen["gave-up"] = line
            if REFUSED in line:
                seen["bundle-refused"] = line.split(REFUSED, 1)[1].strip()
            elif any(p in line for p in _BUNDLE_REFUSED):
                why = seen.pop("bundle-refused", "")
                say(f"refused to run the coordinator's app bundle: {why} The coordinator must "
                    "submit the current signed app; this node keeps waiting for it." if why
                    else "refused to run the coordinator's app bundle: it is not signed by "
                    "a signer this node trusts (--trust). The coordinator must submit the "
                    "signed app; this node keeps waiting for it.")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            status = read_status(out)
            if status is not None:
                seen["session"] = str(status.get("session", ""))
                time.sleep(grace)  # let the SuperNode deliver the acknowledgement
                return seen
            code = proc.poll()
            if code is not None or "not-registered" in seen:
                proc.wait()
                reader.join(timeout=5)
                seen["code"] = str(proc.returncode)
                return seen
            time.sleep(1.0)
    finally:
        stop_group(proc)


def _ended(status: dict[str, object], out: Path, say: Say) -> str:
    state, reason, session = (str(status.get(k, "")) for k in ("state", "reason", "session"))
    if state == "refused":
        raise NodeRefusedError(f"the coordinator excluded this node from year {session!r}: "
                               f"{reason}")
    if state == "failed":
        raise YearFailedError(f"year {session!r} stopped at the coordinator: {reason}. This "
                              "node's results and ledger are in " f"{out}.")
    say(f"year {session!r} finished; results and privacy ledger in {out}")
    return session

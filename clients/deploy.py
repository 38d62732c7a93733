"""Starting an agency's SuperNode for real (``fedid node``).

The node's settings travel as Flower node config (``--node-config``), read back by
:func:`clients.config.node_settings` inside the ClientApp: its own table, schema, output
folder and privacy budget. TLS: the CA certificate the SuperLink's certificate chains to
(``--root-certificates``); authentication: the node's private key
(``--auth-supernode-private-key``), whose public half the coordinator registered.
Runtime dependency installation stays off (the node runs the fedid it installed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clients.config import NodeSettings
from fedid.errors import ConfigError, FederationError

__all__ = ["node_config_arg", "supernode_command"]


def node_config_arg(s: NodeSettings) -> str:
    """The ``--node-config`` string for ``s`` (paths made absolute)."""
    pairs = {
        "agency-id": s.agency_id, "kind": s.kind, "department": s.department,
        "data": str(s.data.resolve()), "out": str(s.out.resolve()),
    }
    if s.schema is not None:
        pairs["schema"] = str(s.schema.resolve())
    if s.roster is not None:
        pairs["roster"] = str(s.roster.resolve())
    if s.identity is not None:
        pairs["identity"] = str(s.identity.resolve())
    for value in pairs.values():
        if '"' in value:
            raise ConfigError("node config values must not contain double quotes.")
    text = " ".join(f'{k}="{v}"' for k, v in pairs.items())
    return f"{text} epsilon={s.epsilon!r} delta={s.delta!r}"


def supernode_command(
    s: NodeSettings,
    *,
    superlink: str,
    ca: Path | None,
    key: Path | None,
    port: int,
) -> list[str]:
    """``flower-supernode`` arguments; ``ca``/``key`` None means insecure (tests only)."""
    exe = shutil.which("flower-supernode")
    if exe is None:
        raise FederationError("flower-supernode is not on PATH; install flwr.")
    cmd = [exe, "--superlink", superlink, "--port", str(port),
           "--node-config", node_config_arg(s)]
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

"""``fedid node``: run an agency's node (a Flower SuperNode) against a coordinator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``node`` command."""

    @app.command("node")
    def node(
        data: Annotated[Path, typer.Option("--data", help="This agency's table.")],
        agency_id: Annotated[str, typer.Option(
            "--agency-id", help="This agency's name; with node authentication it must be the"
            " name its key was made and registered under (`fedid certs --node NAME`).")],
        budget: Annotated[float, typer.Option(
            "--budget", help="Total privacy budget (epsilon) this node will spend.")] = 1.0,
        delta: Annotated[float, typer.Option("--delta", help="Delta of the budget.")] = 1e-5,
        kind: Annotated[str, typer.Option(
            "--kind", help="education (owns students) or department (holds evidence).")
            ] = "education",
        department: Annotated[str | None, typer.Option(
            "--department", help="Department name (departmental nodes).")] = None,
        schema: Annotated[Path | None, typer.Option("--schema", help="Schema TOML.")] = None,
        out: Annotated[Path, typer.Option(
            "--out", help="Where this node keeps results and its privacy ledger.")
            ] = Path("fedid-node"),
        superlink: Annotated[str, typer.Option(
            "--superlink", help="Coordinator address HOST:PORT.")] = "127.0.0.1:9093",
        ca: Annotated[Path | None, typer.Option(
            "--ca", help="CA certificate of the coordinator's TLS certificate.")] = None,
        key: Annotated[Path | None, typer.Option(
            "--key", help="This node's private authentication key.")] = None,
        port: Annotated[int, typer.Option("--port", help="Local ClientApp API port.")] = 9094,
        roster: Annotated[Path | None, typer.Option(
            "--roster", help="Roster of every agency's public identity keys (matching).")
            ] = None,
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="No TLS (local experiments only).")] = False,
    ) -> None:
        """Validate the local table, then start this agency's SuperNode."""
        from clients.config import NodeSettings
        from clients.deploy import supernode_command
        from fedid.errors import ConfigError
        from fedid.schema import load_schema
        from fedid.tables import load_agency_table
        from server.deploy import flower_env

        if not insecure and ca is None:
            raise ConfigError("--ca is required unless --insecure.")
        dept = department or ("education" if kind == "education" else "")
        settings = NodeSettings(agency_id=agency_id, kind=kind, department=dept, data=data,
                                schema=schema, out=out, epsilon=budget, delta=delta,
                                roster=roster)
        load_agency_table(data, schema=load_schema(schema),
                          kind="education" if kind == "education" else "department",
                          department=None if kind == "education" else dept)
        out.mkdir(parents=True, exist_ok=True)
        cmd = supernode_command(settings, superlink=superlink, ca=None if insecure else ca,
                                key=key, port=port)
        typer.echo(f"{agency_id}: table valid; starting SuperNode -> {superlink}")
        env = flower_env()
        os.environ.update({k: env[k] for k in ("TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK",
                                                "FLWR_TELEMETRY_ENABLED")})
        raise typer.Exit(subprocess.call(cmd, env=env))  # noqa: S603

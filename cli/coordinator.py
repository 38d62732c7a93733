"""``fedid coordinator``: start a SuperLink, register the agencies' nodes, run a year."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``coordinator`` command."""

    @app.command("coordinator")
    def coordinator(
        out: Annotated[Path, typer.Option("--out", help="Coordinator folder.")
                       ] = Path("fedid-coordinator"),
        certs: Annotated[Path | None, typer.Option(
            "--certs", help="Folder from `fedid certs` (CA, server cert, nodes/*.pub).")
            ] = None,
        port: Annotated[int, typer.Option("--port", help="SuperLink port.")] = 9093,
        rounds: Annotated[int, typer.Option("--rounds", help="Training rounds.")] = 5,
        min_nodes: Annotated[int, typer.Option(
            "--min-nodes", help="Nodes needed before the year starts.")] = 2,
        expected_nodes: Annotated[int | None, typer.Option(
            "--expected-nodes", help="Nodes to wait for (up to --wait-nodes) before the year"
            " starts; 0: start once --min-nodes are connected and no more come for 10 s."
            " Default: the number of registered keys (0 with --insecure).")
            ] = None,
        wait_nodes: Annotated[float, typer.Option(
            "--wait-nodes", help="Seconds to wait for --min-nodes before giving up.")] = 300.0,
        timeout: Annotated[float, typer.Option(
            "--timeout", help="Seconds to wait for replies to each step.")] = 600.0,
        schema: Annotated[Path | None, typer.Option("--schema", help="Schema TOML.")] = None,
        no_matching: Annotated[bool, typer.Option("--no-matching", help="Skip matching.")
                               ] = False,
        grouping: Annotated[str, typer.Option(
            "--grouping", help="province (one matching run; education nodes share a key "
            "folder) or per_agency.")] = "province",
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="No TLS, no node authentication (local experiments).")] = False,
        run_timeout: Annotated[float, typer.Option(
            "--run-timeout", help="Seconds to wait for the whole run.")] = 7200.0,
    ) -> None:
        """Start the SuperLink, register node keys, run the year, report its status."""
        from fedid.errors import ConfigError
        from server.deploy import SuperLinkLauncher, node_agencies_arg

        if certs is None and not insecure:
            raise ConfigError("--certs is required unless --insecure (see `fedid certs`).")
        coord = SuperLinkLauncher(out=out, certs=None if insecure else certs, port=port)
        coord.start()
        try:
            bound: dict[int, str] = {}
            if certs is not None and not insecure:
                for pub in sorted((certs / "nodes").glob("*.pub")):
                    bound[coord.register(pub, pub.stem)] = pub.stem
                    typer.echo(f"registered node key {pub.stem}")
            config: dict[str, object] = {
                "out": str(out.resolve()), "rounds": rounds, "min-nodes": min_nodes,
                "expected-nodes": expected_nodes, "wait-nodes": wait_nodes, "timeout": timeout,
                "matching": not no_matching,
                "grouping": grouping,
            }
            if bound:  # each agency id is believed only from the node of its own key
                config["node-agencies"] = node_agencies_arg(bound)
            if expected_nodes is None:  # every registered agency, if that meets the minimum
                config["expected-nodes"] = len(bound) if len(bound) >= min_nodes else 0
            if schema is not None:
                config["schema"] = str(schema.resolve())
            run_id = coord.submit(config)
            typer.echo(f"run {run_id} started; waiting for it to finish")
            info = coord.wait(run_id, timeout=run_timeout)
            typer.echo(f"run {run_id}: {info['status']} in {float(info['elapsed']):.0f} s; "
                       f"results in {out / 'coordinator'}")
        finally:
            coord.stop()

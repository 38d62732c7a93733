"""``fedid coordinator``: start a SuperLink, register the agencies' nodes, run a year.

Exit codes (also in the README): 0 the year completed; 2 a configuration error (missing
certificate, a name not in the certificate, an app that is not the signed one); 8 the year
failed (too few nodes, a timeout, a failed run); 9 the port is already in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``coordinator`` command."""

    @app.command("coordinator")
    def coordinator(
        out: Annotated[Path, typer.Option(
            "--out", help="Coordinator folder (SuperLink state, logs, results).")
            ] = Path("fedid-coordinator"),
        certs: Annotated[Path | None, typer.Option(
            "--certs", help="Folder from `fedid certs` (CA and server certificate).")] = None,
        nodes: Annotated[Path | None, typer.Option(
            "--nodes", help="Folder of the nodes' public keys, one <agency id>.pub each "
            "(default: <certs>/nodes).")] = None,
        bind: Annotated[str, typer.Option(
            "--bind", help="Address the SuperLink listens on (0.0.0.0: every interface).")
            ] = "127.0.0.1",
        advertise: Annotated[str | None, typer.Option(
            "--advertise", help="Host name or address nodes use to reach this coordinator "
            "(must be in the server certificate; default: --bind).")] = None,
        port: Annotated[int, typer.Option("--port", help="SuperLink port.")] = 9093,
        app_signature: Annotated[Path | None, typer.Option(
            "--app-signature", help="The app signer's signature of the app (`fedid "
            "sign-app`); nodes that check signatures refuse an unsigned app.")] = None,
        app_dir: Annotated[Path | None, typer.Option(
            "--app", help="App folder to submit (default: the installed fedid app).")
            ] = None,
        rounds: Annotated[int, typer.Option("--rounds", help="Training rounds.")] = 5,
        min_nodes: Annotated[int, typer.Option(
            "--min-nodes", help="Nodes needed for the year (it goes on without excluded "
            "nodes while this many remain).")] = 2,
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
            "--grouping", help="province (one matching run; the lead education node seals the "
            "run keyring to each other one, signed, through the coordinator, which cannot "
            "open it) or per_agency (one run per education agency).")] = "province",
        session: Annotated[str, typer.Option(
            "--session", help="Name of this year's run (nodes' ledgers key on it).")
            ] = "year",
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="No TLS, no node authentication (local experiments).")] = False,
        run_timeout: Annotated[float, typer.Option(
            "--run-timeout", help="Seconds to wait for the whole run.")] = 7200.0,
    ) -> None:
        """Start the SuperLink, register node keys, run the year, report its status."""
        from fedid.app_trust import AppSignature
        from fedid.errors import ConfigError
        from fedid.proc import exit_on_sigterm
        from server.deploy import SuperLinkLauncher, node_agencies_arg

        exit_on_sigterm()
        if certs is None and not insecure:
            raise ConfigError("--certs is required unless --insecure (see `fedid certs`).")
        signature = AppSignature.load(app_signature) if app_signature is not None else None
        coord = SuperLinkLauncher(out=out, certs=None if insecure else certs, port=port, bind=bind,
                            advertise=advertise,
                            app_dir=app_dir or SuperLinkLauncher.default_app_dir())
        keys = (nodes or (certs / "nodes" if certs is not None else Path("nodes"))).resolve()
        pubs = sorted(keys.glob("*.pub")) if not insecure else []
        if not insecure and not pubs:
            raise ConfigError(f"no node public keys in {keys}: copy each node's NAME.pub "
                              "(from `fedid keygen --agency-id NAME`) there.")
        coord.start()
        try:
            bound: dict[int, str] = {}
            for pub in pubs:
                bound[coord.register(pub, pub.stem)] = pub.stem
                typer.echo(f"registered node key {pub.stem}")
            config: dict[str, object] = {
                "out": str(coord.out), "rounds": rounds, "min-nodes": min_nodes,
                "expected-nodes": expected_nodes, "wait-nodes": wait_nodes, "timeout": timeout,
                "matching": not no_matching, "grouping": grouping, "session": session,
                "notify-nodes": True,
            }
            if bound:  # each agency id is believed only from the node of its own key
                config["node-agencies"] = node_agencies_arg(bound)
            if expected_nodes is None:  # every registered agency, if that meets the minimum
                config["expected-nodes"] = len(bound) if len(bound) >= min_nodes else 0
            if schema is not None:
                config["schema"] = str(schema.resolve())
            typer.echo(f"SuperLink listening on {bind}:{port}; nodes connect with "
                       f"--superlink {coord.node_address}")
            run_id = coord.submit(config, signature=signature)
            typer.echo(f"run {run_id} started; waiting for it to finish")
            info = coord.wait(run_id, timeout=run_timeout)
            typer.echo(f"run {run_id}: {info['status']} in {float(info['elapsed']):.0f} s; "
                       f"results in {coord.out / 'coordinator'}")
        finally:
            coord.stop()

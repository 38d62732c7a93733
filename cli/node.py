"""``fedid node``: run an agency's node (a Flower SuperNode) against a coordinator.

Exit codes (also in the README): 0 the year finished; 2 a configuration error; 3 the
table failed validation; 10 no coordinator within ``--wait``; 11 the coordinator's
certificate does not verify against ``--ca``; 12 refused by the coordinator; 13 the year
failed at the coordinator; 14 the SuperNode stopped on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

_SHOWN = 5  # table problems printed before the summary


def _table_error(data: Path, exc: Exception) -> str:
    """The first problems of a table with row, column and the fix."""
    report = getattr(exc, "report", None)
    lines = [f"{data}: the table failed validation; this node did not start."]
    problems = report.problems(limit=_SHOWN) if report is not None else []
    for p in problems:
        where = f"row {p.row}" if p.row is not None else "table"
        column = f", column {p.column!r}" if p.column else ""
        lines.append(f"  {where}{column}: {p.message}")
    total = report.errors if report is not None else 0
    if total > len(problems):
        lines.append(f"  ... {total - len(problems)} more errors")
    lines.append(f"Fix: correct these rows in {data} (rows count from 1 after the header; "
                 f"`fedid check {data}` lists every problem), then start the node again.")
    return "\n".join(lines)


def _peers(text: str | None) -> tuple[str, ...] | None:
    from clients.config import parse_matching_peers

    return None if text is None else parse_matching_peers("--matching-peers", text)


def register(app: typer.Typer) -> None:
    """Add the ``node`` command."""

    @app.command("node")
    def node(
        data: Annotated[Path, typer.Option("--data", help="This agency's table.")],
        agency_id: Annotated[str, typer.Option(
            "--agency-id", help="This agency's name; with node authentication it must be the"
            " name the coordinator registered this node's public key under"
            " (`fedid keygen --agency-id NAME`).")],
        budget: Annotated[float, typer.Option(
            "--budget", help="Total privacy budget (epsilon) this node will spend: required, "
            "the agency's own decision.")],
        delta: Annotated[float, typer.Option("--delta", help="Delta of the budget.")] = 1e-5,
        public_size: Annotated[int | None, typer.Option(
            "--public-size", help="Labelled students this agency declares public (e.g. its "
            "published enrolment): training is shaped by it, not by the real count. "
            "Default: the count plus noise, drawn once and charged to the budget.")] = None,
        require_secure_aggregation: Annotated[bool, typer.Option(
            "--require-secure-aggregation", help="Train only under secure aggregation: a "
            "plain train request is refused (set it when every node has a roster).")] = False,
        kind: Annotated[str, typer.Option(
            "--kind", help="education (owns students) or department (holds evidence).")
            ] = "education",
        department: Annotated[str | None, typer.Option(
            "--department", help="Department name (departmental nodes).")] = None,
        schema: Annotated[Path | None, typer.Option("--schema", help="Schema TOML.")] = None,
        out: Annotated[Path, typer.Option(
            "--out", help="This node's own folder: results, privacy ledger, status.")
            ] = Path("fedid-node"),
        superlink: Annotated[str, typer.Option(
            "--superlink", help="Coordinator address HOST:PORT (its --advertise and --port)."
            )] = "127.0.0.1:9093",
        ca: Annotated[Path | None, typer.Option(
            "--ca", help="The coordinator's CA certificate (ca.crt from `fedid certs`).")
            ] = None,
        key: Annotated[Path | None, typer.Option(
            "--key", help="This node's private key (made here by `fedid keygen`).")] = None,
        trust: Annotated[list[Path] | None, typer.Option(
            "--trust", help="Public key (ssh-ed25519 line) of an app signer this node "
            "trusts (repeatable); app bundles not signed by one of them are refused.")
            ] = None,
        app_max_age: Annotated[float | None, typer.Option(
            "--app-max-age", help="Refuse app bundles signed more than this many days ago "
            "(default: no limit; bundles below the highest serial this node ran are always "
            "refused).")] = None,
        wait: Annotated[float, typer.Option(
            "--wait", help="Seconds to wait for the coordinator (at start and after a lost "
            "connection), retrying with backoff; 0: for ever.")] = 600.0,
        port: Annotated[int, typer.Option("--port", help="Local ClientApp API port.")] = 9094,
        roster: Annotated[Path | None, typer.Option(
            "--roster", help="Roster of every agency's public identity keys, from the "
            "operator (`fedid roster`); matching needs it.")] = None,
        identity: Annotated[Path | None, typer.Option(
            "--identity", help="This agency's identity key folder (`fedid keygen`); "
            "default OUT/identity.")] = None,
        matching_grouping: Annotated[str, typer.Option(
            "--matching-grouping", help="province (share one run keyring with the roster's "
            "other education agencies) or per_agency (never share this agency's keyring).")
            ] = "province",
        matching_peers: Annotated[str | None, typer.Option(
            "--matching-peers", help="With --matching-grouping province: the only other "
            "education agencies (comma-separated ids) this agency shares a run keyring with; "
            "a run naming any other is refused. Default: any agency of the roster.")
            ] = None,
        distributed_noise_parties: Annotated[int | None, typer.Option(
            "--distributed-noise-parties", help="Opt into distributed noise under the secure "
            "sum: train only in rounds that ask for it, adding a 1/K share of the agreed "
            "noise, and refuse any sum with fewer than K participants (THREAT_MODEL.md).")
            ] = None,
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="No TLS, no app signature check (local experiments only).")
            ] = False,
    ) -> None:
        """Validate the local table, wait for the coordinator, run this agency's node
        until the year is over."""
        from clients.config import NodeSettings
        from clients.deploy import supernode_command, supervise, wait_for_coordinator
        from fedid.app_trust import trusted_entities_text
        from fedid.errors import ConfigError, DataValidationError
        from fedid.proc import exit_on_sigterm
        from fedid.schema import load_schema
        from fedid.tables import load_agency_table
        from privacy.atomic import atomic_write_bytes
        from server.deploy import flower_env

        exit_on_sigterm()
        if not insecure and ca is None:
            raise ConfigError("--ca is required unless --insecure: the coordinator's "
                              "ca.crt from `fedid certs`.")
        if not insecure and not trust:
            raise ConfigError("--trust is required unless --insecure: the public key of the "
                              "app signer this agency trusts (`fedid keygen --signer`).")
        for path, flag in ((ca, "--ca"), (key, "--key"), (data, "--data"), (schema, "--schema"),
                           *((t, "--trust") for t in trust or [])):
            if path is not None and not path.exists():
                raise ConfigError(f"{flag} {path} does not exist (relative paths are read "
                                  f"from {Path.cwd()}).")
        out = out.expanduser().resolve()
        dept = department or ("education" if kind == "education" else "")
        settings = NodeSettings(agency_id=agency_id, kind=kind, department=dept,
                                data=data.resolve(), schema=schema.resolve() if schema else None,
                                out=out, epsilon=budget, delta=delta,
                                roster=roster.resolve() if roster else None,
                                identity=identity.resolve() if identity else None,
                                matching_grouping=matching_grouping,
                                public_size=public_size,
                                require_secure_aggregation=require_secure_aggregation,
                                matching_peers=_peers(matching_peers),
                                distributed_noise=distributed_noise_parties is not None,
                                distributed_noise_parties=distributed_noise_parties)
        try:
            load_agency_table(data, schema=load_schema(schema),
                              kind="education" if kind == "education" else "department",
                              department=None if kind == "education" else dept)
        except DataValidationError as exc:
            raise DataValidationError(_table_error(data, exc), exc.report) from exc
        out.mkdir(parents=True, exist_ok=True)
        trusted = None
        if not insecure:
            trusted = out / "trusted_entities.yaml"
            text = trusted_entities_text([t.read_text(encoding="utf-8") for t in trust or []])
            atomic_write_bytes(trusted, text.encode())
        cmd = supernode_command(settings, superlink=superlink, ca=None if insecure else ca,
                                key=key, port=port, trusted=trusted, wait=wait,
                                bundle_max_age=None if app_max_age is None
                                else app_max_age * 86400.0)
        say = typer.echo
        say(f"{agency_id}: table valid; waiting for the coordinator at {superlink}")
        wait_for_coordinator(superlink, ca=None if insecure else ca, wait=wait, say=say)
        say(f"{agency_id}: starting SuperNode -> {superlink}")
        env = flower_env()
        os.environ.update({k: env[k] for k in ("TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK",
                                                "FLWR_TELEMETRY_ENABLED")})
        supervise(cmd, env=env, out=out, say=say)

"""``fedid certs``: a trial PKI for a deployment (:func:`fedid.pki.make_trial_pki` says what
it writes: CA, SuperLink TLS certificate, SuperNode auth key pairs; private keys mode 0600)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedid.pki import make_trial_pki

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``certs`` command."""

    @app.command("certs")
    def certs(
        out: Annotated[Path, typer.Option("--out", help="Folder for the keys.")] = Path("certs"),
        node: Annotated[list[str] | None, typer.Option(
            "--node", help="A SuperNode to make an auth key pair for, named by its agency id"
            " (repeatable); the coordinator believes a node only about that agency.")] = None,
        host: Annotated[list[str] | None, typer.Option(
            "--host", help="Extra host name or IP for the SuperLink certificate.")] = None,
        days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 30,
    ) -> None:
        """Make a trial CA, the SuperLink certificate and SuperNode auth keys."""
        make_trial_pki(out, nodes=list(node or []), hosts=list(host or []), days=days)
        typer.echo(f"wrote CA, server certificate and {len(node or [])} node key pairs to {out}")

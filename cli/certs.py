"""Trial PKI and keys for a deployment: ``fedid certs``, ``fedid keygen``, ``fedid sign-app``.

``fedid certs --out DIR --host NAME ...`` (on the coordinator's machine) writes:

- ``ca.key``, ``ca.crt``            a self-signed CA (EC P-384), valid ``--days``
- ``server.key``, ``server.crt``    the SuperLink's TLS certificate, signed by the CA, for
                                    ``localhost``, ``127.0.0.1``, ``::1`` and every
                                    ``--host`` (each name or address nodes use to reach it)
- ``nodes/``                        empty: the coordinator copies each node's public key
                                    here as ``<agency id>.pub``

``fedid keygen --out DIR --agency-id NAME`` (on each node's machine) writes the node's
SuperNode authentication key pair: ``NAME.key`` (EC P-384, OpenSSH, mode 0600; it never
leaves the node) and ``NAME.pub`` (sent to the coordinator, which registers it).
``fedid keygen --out DIR --signer NAME`` makes an app signer's Ed25519 pair the same way,
and ``fedid sign-app --serial N`` signs the app bundle with it as release N (nodes refuse
any bundle below the highest serial they ran; see :mod:`fedid.app_trust`).

Private keys are created with mode 0600 and never overwritten. For a trial: a production
province uses its own CA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedid.errors import ConfigError
from fedid.pki import make_key_pair, make_trial_pki

__all__ = ["make_key_pair", "make_trial_pki", "register"]


def register(app: typer.Typer) -> None:
    """Add the ``certs``, ``keygen``, ``roster`` and ``sign-app`` commands."""

    @app.command("certs")
    def certs(
        out: Annotated[Path, typer.Option("--out", help="Folder for the keys.")] = Path("certs"),
        host: Annotated[list[str] | None, typer.Option(
            "--host", help="Host name or IP address nodes use to reach the SuperLink "
            "(repeatable; the coordinator's --advertise and --bind).")] = None,
        node: Annotated[list[str] | None, typer.Option(
            "--node", hidden=True, help="Removed: nodes make their own keys.")] = None,
        days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 30,
    ) -> None:
        """Make a trial CA and the SuperLink's TLS certificate (no node keys)."""
        if node:
            raise ConfigError("`fedid certs --node` is gone: each node makes its own key pair "
                              "with `fedid keygen --agency-id NAME` on its machine and sends "
                              "NAME.pub to the coordinator (into <certs>/nodes/).")
        make_trial_pki(out, hosts=list(host or []), days=days)
        typer.echo(f"wrote CA and server certificate to {out}; put each node's NAME.pub "
                   f"into {out / 'nodes'}")

    @app.command("keygen")
    def keygen(
        out: Annotated[Path, typer.Option("--out", help="Folder for the key pair.")],
        agency_id: Annotated[str | None, typer.Option(
            "--agency-id", help="Make this node's SuperNode key pair (on the node).")] = None,
        signer: Annotated[str | None, typer.Option(
            "--signer", help="Make an app signer's key pair instead.")] = None,
        kind: Annotated[str, typer.Option(
            "--kind", help="education or department (the agency's identity keys).")
            ] = "education",
        department: Annotated[str, typer.Option(
            "--department", help="The department a department node holds records of.")
            ] = "",
    ) -> None:
        """Make key pairs on this machine; only the public files are handed out.

        With ``--agency-id``: the SuperNode key pair (``NAME.key``/``NAME.pub``) and the
        agency's identity keys for matching (``identity/``: Ed25519 signing and X25519
        agreement keys, :mod:`privacy.identity`; ``identity.pub.toml`` goes to the operator
        who builds the roster with ``fedid roster``).
        """
        from privacy.identity import PUBLIC_FILE, AgencyIdentity

        if (agency_id is None) == (signer is None):
            raise ConfigError("give exactly one of --agency-id NAME or --signer NAME.")
        name = agency_id or signer or ""
        private, public = make_key_pair(out, name, signer=signer is not None)
        who = "the coordinator" if signer is None else "every agency (for fedid node --trust)"
        typer.echo(f"wrote {private} (keep it here, mode 0600) and {public} (send to {who})")
        if agency_id is not None:
            if kind not in ("education", "department"):
                raise ConfigError(f"--kind must be education or department. Got {kind!r}.")
            if kind == "department" and not department:
                raise ConfigError("a department node's identity needs --department NAME.")
            folder = out / "identity"
            ident = AgencyIdentity.load_or_create(
                folder, agency=agency_id, kind=kind,
                department=department if kind == "department" else "")
            typer.echo(f"wrote {folder} (identity keys, keep them here) and "
                       f"{folder / PUBLIC_FILE} (send to the roster's operator; fingerprint "
                       f"{ident.public.fingerprint()})")

    @app.command("roster")
    def roster(
        out: Annotated[Path, typer.Option("--out", help="Roster file to write.")],
        public: Annotated[list[Path], typer.Argument(
            help="Each agency's identity.pub.toml (from fedid keygen).")],
    ) -> None:
        """Assemble the roster of every agency's public identity keys (for fedid node --roster).

        Every agency checks the printed fingerprint out of band (as with an SSH host key):
        the roster is the trust root of matching, so it must not come from the coordinator
        unchecked.
        """
        from privacy.identity import Roster

        built = Roster.from_public_files(list(public))
        built.save(out)
        typer.echo(f"wrote {out}: {len(built.agencies)} agencies, fingerprint "
                   f"{built.fingerprint()}")

    @app.command("sign-app")
    def sign_app(
        key: Annotated[Path, typer.Option("--key", help="App signer's private key.")],
        out: Annotated[Path, typer.Option("--out", help="Signature file to write.")],
        serial: Annotated[int, typer.Option(
            "--serial", help="This release's serial: a positive integer raised with every "
            "release you sign (e.g. 2026001). A node that ran serial N refuses any bundle "
            "below N, so an old signed bundle cannot be replayed.")],
        app_dir: Annotated[Path | None, typer.Option(
            "--app", help="The reviewed app folder (default: the installed fedid app).")
            ] = None,
    ) -> None:
        """Sign the app bundle (FAB) built from an app folder, with its serial and issue
        time."""
        from fedid.app_trust import sign_fab
        from server.app_bundle import build_fab
        from server.deploy import SuperLinkLauncher

        folder = (app_dir or SuperLinkLauncher.default_app_dir()).resolve()
        signature = sign_fab(build_fab(folder), key.read_bytes(), serial=serial)
        out.write_text(signature.to_json(), encoding="utf-8")
        typer.echo(f"signed the app in {folder} (FAB sha256 {signature.fab_sha256[:16]}...) "
                   f"as {signature.public_key_id}, serial {serial}; wrote {out}")

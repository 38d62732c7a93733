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
and ``fedid sign-app`` signs the app bundle with it (see :mod:`fedid.app_trust`).

Private keys are created with mode 0600 and never overwritten. For a trial: a production
province uses its own CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from fedid.errors import ConfigError

__all__ = ["make_key_pair", "make_trial_pki", "register"]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"names must be letters, digits, '-' or '_'. Got {name!r}.")


def make_trial_pki(out: Path, *, hosts: list[str], days: int = 30) -> None:
    """Create the CA and the SuperLink certificate (for ``hosts``) under ``out``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if days < 1:
        raise ConfigError(f"days must be >= 1. Got {days}.")
    if (out / "ca.key").exists():
        raise ConfigError(f"{out / 'ca.key'} exists; choose another --out (keys are never "
                          "overwritten).")
    out.mkdir(parents=True, exist_ok=True)
    (out / "nodes").mkdir(exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    nocrypt = serialization.NoEncryption()

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedid trial CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    _write_private(out / "ca.key", ca_key.private_bytes(pem, pkcs8, nocrypt))
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(pem))

    server_key = ec.generate_private_key(ec.SECP384R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in dict.fromkeys(["127.0.0.1", "::1", *hosts]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedid superlink")]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    _write_private(out / "server.key", server_key.private_bytes(pem, pkcs8, nocrypt))
    (out / "server.crt").write_bytes(server_cert.public_bytes(pem))


def make_key_pair(out: Path, name: str, *, signer: bool = False) -> tuple[Path, Path]:
    """A node's SuperNode auth pair (EC P-384) or an app signer's (Ed25519), OpenSSH format.

    Returns (private key path, public key path); the private file is 0600 and never
    overwritten.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    _check_name(name)
    out.mkdir(parents=True, exist_ok=True)
    private = out / f"{name}.key"
    public = out / f"{name}.pub"
    if private.exists():
        raise ConfigError(f"{private} exists; keys are never overwritten (remove it first "
                          "if you mean to replace this node's key).")
    key = ed25519.Ed25519PrivateKey.generate() if signer else ec.generate_private_key(
        ec.SECP384R1())
    _write_private(private, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


def register(app: typer.Typer) -> None:
    """Add the ``certs``, ``keygen`` and ``sign-app`` commands."""

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
    ) -> None:
        """Make a key pair on this machine; only the .pub file is handed out."""
        if (agency_id is None) == (signer is None):
            raise ConfigError("give exactly one of --agency-id NAME or --signer NAME.")
        name = agency_id or signer or ""
        private, public = make_key_pair(out, name, signer=signer is not None)
        who = "the coordinator" if signer is None else "every agency (for fedid node --trust)"
        typer.echo(f"wrote {private} (keep it here, mode 0600) and {public} (send to {who})")

    @app.command("sign-app")
    def sign_app(
        key: Annotated[Path, typer.Option("--key", help="App signer's private key.")],
        out: Annotated[Path, typer.Option("--out", help="Signature file to write.")],
        app_dir: Annotated[Path | None, typer.Option(
            "--app", help="The reviewed app folder (default: the installed fedid app).")
            ] = None,
    ) -> None:
        """Sign the app bundle (FAB) built from an app folder."""
        from fedid.app_trust import sign_fab
        from server.app_bundle import build_fab
        from server.deploy import Coordinator

        folder = (app_dir or Coordinator.default_app_dir()).resolve()
        signature = sign_fab(build_fab(folder), key.read_bytes())
        out.write_text(signature.to_json(), encoding="utf-8")
        typer.echo(f"signed the app in {folder} (FAB sha256 {signature.fab_sha256[:16]}...) "
                   f"as {signature.public_key_id}; wrote {out}")

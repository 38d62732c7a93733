"""``fedid certs``: a trial PKI for a deployment (CA, SuperLink TLS certificate, node keys).

Writes into ``--out``:

- ``ca.key``, ``ca.crt``            a self-signed CA (EC P-384), valid ``--days``
- ``server.key``, ``server.crt``    the SuperLink's TLS certificate, signed by the CA,
                                    for ``localhost``, ``127.0.0.1``, ``::1`` and every
                                    ``--host``
- ``nodes/<name>`` and ``nodes/<name>.pub``  one SuperNode authentication key pair per
                                    ``--node`` (EC P-384, OpenSSH format, as
                                    ``flower-supernode --auth-supernode-private-key`` and
                                    ``flwr supernode register`` expect)

Private keys are written with mode 0600. For a trial only: a production province uses
its own CA and keeps each node's private key on that node.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from fedid.errors import ConfigError

__all__ = ["make_trial_pki", "register"]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def make_trial_pki(out: Path, *, nodes: list[str], hosts: list[str], days: int = 30) -> None:
    """Create the CA, the server certificate and the node key pairs under ``out``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    for name in nodes:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"node names must be letters, digits, '-' or '_'. Got {name!r}.")
    if days < 1:
        raise ConfigError(f"days must be >= 1. Got {days}.")
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
    for host in ["127.0.0.1", "::1", *hosts]:
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

    for name in nodes:
        key = ec.generate_private_key(ec.SECP384R1())
        _write_private(out / "nodes" / name, key.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, nocrypt))
        (out / "nodes" / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))


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

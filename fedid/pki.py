"""A trial PKI for a deployment: a CA, the SuperLink's TLS certificate and node keys.

Writes into ``out``:

- ``ca.key``, ``ca.crt``            a self-signed CA (EC P-384), valid ``days``
- ``server.key``, ``server.crt``    the SuperLink's TLS certificate, signed by the CA,
                                    for ``localhost``, ``127.0.0.1``, ``::1`` and every
                                    host in ``hosts``
- ``nodes/<name>`` and ``nodes/<name>.pub``  one SuperNode authentication key pair per
                                    node name (EC P-384, OpenSSH format, as
                                    ``flower-supernode --auth-supernode-private-key`` and
                                    ``flwr supernode register`` expect)

Private keys are written with mode 0600. For a trial only: a production province uses
its own CA and keeps each node's private key on that node. ``fedid certs`` (:mod:`cli.certs`),
the deployment benchmark and the deployment tests call :func:`make_trial_pki`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from fedid.atomic import atomic_write_bytes
from fedid.errors import ConfigError

__all__ = ["make_trial_pki"]


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
    atomic_write_bytes(out / "ca.key", ca_key.private_bytes(pem, pkcs8, nocrypt), mode=0o600)
    atomic_write_bytes(out / "ca.crt", ca_cert.public_bytes(pem))

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
    atomic_write_bytes(out / "server.key", server_key.private_bytes(pem, pkcs8, nocrypt),
                       mode=0o600)
    atomic_write_bytes(out / "server.crt", server_cert.public_bytes(pem))

    for name in nodes:
        key = ec.generate_private_key(ec.SECP384R1())
        atomic_write_bytes(out / "nodes" / name, key.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, nocrypt), mode=0o600)
        atomic_write_bytes(out / "nodes" / f"{name}.pub", key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))

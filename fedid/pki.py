"""A trial PKI and key pairs, each made on the machine that uses it (see ``fedid certs``).

:func:`make_trial_pki` (coordinator): a CA and the SuperLink's TLS certificate for the
names nodes use. :func:`make_key_pair` (each node, or the app signer): one OpenSSH key
pair, the private half 0600 and never overwritten; only the public half is handed out.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from fedid.errors import ConfigError
from privacy.atomic import atomic_write_bytes

__all__ = ["make_key_pair", "make_trial_pki"]


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
    atomic_write_bytes(out / "ca.key", ca_key.private_bytes(pem, pkcs8, nocrypt), mode=0o600)
    atomic_write_bytes(out / "ca.crt", ca_cert.public_bytes(pem))

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
    atomic_write_bytes(out / "server.key", server_key.private_bytes(pem, pkcs8, nocrypt),
                       mode=0o600)
    atomic_write_bytes(out / "server.crt", server_cert.public_bytes(pem))


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
    atomic_write_bytes(private, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.OpenSSH,
                                                  serialization.NoEncryption()), mode=0o600)
    atomic_write_bytes(public, key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public

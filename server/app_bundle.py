"""The app bundle (FAB) the coordinator ships, and the signature it carries to the nodes.

Flower builds a FAB from the app folder (``pyproject.toml`` and ``server/``: the
``[tool.flwr.app] fab-include`` list; nodes import ``clients`` from the fedid they
installed). A FAB submitted with ``flwr run`` reaches the SuperLink with an empty
verification record; Flower 1.42 fills that record only for Flower Hub apps. So the
coordinator writes the signer's record (:meth:`fedid.app_trust.AppSignature.verification`)
into the SuperLink's own FAB table right after submitting, seconds before the ServerApp
sends its first message (a node that fetched the FAB earlier would answer that message with
an error and verify again at the next one, as Flower's SuperNode keeps no unverified run:
the failure is closed).
The coordinator holds no signing key: it can attach a signature, not make one, and the
nodes' SuperNodes check it (see :mod:`fedid.app_trust`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from fedid.app_trust import AppSignature
from fedid.errors import ConfigError, FederationError

__all__ = ["attach_signature", "build_fab", "check_signed", "fab_sha256"]


def build_fab(app_dir: Path) -> bytes:
    """The FAB Flower builds for ``app_dir`` (byte-identical on every build)."""
    from flwr.cli.build import build_fab_from_disk

    return bytes(build_fab_from_disk(app_dir))


def fab_sha256(app_dir: Path) -> str:
    return hashlib.sha256(build_fab(app_dir)).hexdigest()


def attach_signature(database: Path, signature: AppSignature, *, fab_hash: str) -> None:
    """Store ``signature`` as the verification record of FAB ``fab_hash`` in the SuperLink.

    The caller checks beforehand that the signature is over that FAB (see
    :func:`check_signed`); a record over another FAB is stored as asked and every node
    refuses the run (the deployment test plays such a coordinator).
    """
    with sqlite3.connect(database, timeout=30) as db:
        updated = db.execute("UPDATE fab SET verifications = ? WHERE fab_hash = ?",
                             (json.dumps(signature.verification()), fab_hash)).rowcount
    if updated != 1:
        raise FederationError(
            f"the SuperLink database {database} holds no FAB {fab_hash[:12]}... to sign.")


def check_signed(signature: AppSignature, fab_hash: str) -> None:
    """ConfigError unless ``signature`` is over the FAB ``fab_hash``."""
    if signature.fab_sha256 != fab_hash:
        raise ConfigError(
            f"the app to submit is not the app that was signed (signed FAB "
            f"{signature.fab_sha256[:12]}..., this app {fab_hash[:12]}...). Sign this app "
            "folder with `fedid sign-app`, or submit the folder that was signed (--app).")

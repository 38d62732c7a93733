"""Recording every message that leaves a node, for the leakage scan.

When ``FEDID_TRANSCRIPT_DIR`` is set, :func:`record_mod` writes the serialised form
of each reply (Flower's own ``deflate`` of every record, exactly what goes on the
wire) to ``<dir>/<agency-or-node>-<counter>.bin``. It records nothing otherwise. The
scan itself is :func:`scan_transcript`: it searches the bytes for national IDs in
either form and for plaintext values supplied by the caller.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

__all__ = ["TRANSCRIPT_ENV", "message_bytes", "record_mod", "scan_transcript"]

TRANSCRIPT_ENV = "FEDID_TRANSCRIPT_DIR"
_counter = itertools.count()


def message_bytes(msg: Message) -> bytes:
    """All serialised bytes of a message's content (every record, deflated)."""
    if not msg.has_content():
        return (msg.error.reason or "").encode("utf-8")
    parts: list[bytes] = []
    for name, record in msg.content.items():
        parts.append(name.encode())
        for child in _walk(record):
            parts.append(child)
    return b"\x00".join(parts)


def _walk(obj: object) -> Iterable[bytes]:
    deflate = getattr(obj, "deflate", None)
    if deflate is not None:
        yield deflate()
    children = getattr(obj, "children", None)
    if children is not None:
        kids = children() if callable(children) else children
        for child in (kids or {}).values():
            yield from _walk(child)


def record_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: pass the message on, record the reply's bytes if configured."""
    reply = call_next(msg, context)
    folder = os.environ.get(TRANSCRIPT_ENV)
    if folder:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        kind = msg.metadata.message_type
        name = f"{context.node_id}-{kind}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
        (out / f"{name}.bin").write_bytes(message_bytes(reply))
    return reply


def scan_transcript(folder: Path, needles: Iterable[bytes]) -> dict[str, int]:
    """Count, per needle (decoded), the transcript files that contain it."""
    blobs = [p.read_bytes() for p in sorted(folder.glob("*.bin"))]
    hits: dict[str, int] = {}
    for needle in needles:
        n = sum(1 for b in blobs if needle in b)
        if n:
            hits[needle.decode("latin-1")] = n
    return hits

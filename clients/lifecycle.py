"""A node's side of the year's lifecycle: the coordinator's notices, kept in ``--out``.

The ClientApp answers ``query.year`` (see :mod:`server.lifecycle` for the states) by
writing ``<out>/node_status.json`` (``state``, ``reason``, ``session``) and logging one
line that says what happened and what to do. ``fedid node`` watches that file and exits
with the code documented in the README (0 when the year finished). The reply is an empty
acknowledgement: nothing about the node's data leaves.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedid.errors import ProtocolError
from fedid.records import config_str
from privacy.atomic import atomic_write_bytes

__all__ = ["STATES", "STATUS_FILE", "read_status", "year_notice"]

_log = logging.getLogger(__name__)
STATUS_FILE = "node_status.json"
STATES = ("finished", "failed", "refused")


def year_notice(msg: Message, context: Context) -> RecordDict:
    """Record the coordinator's notice in this node's ``--out``; acknowledge it."""
    from clients.node import settings_of

    s = settings_of(context)
    state = config_str(msg, "state")
    if state not in STATES:
        raise ProtocolError(f"year notice state must be one of {STATES}. Got {state!r}.")
    reason = config_str(msg, "reason")[:500]
    session = config_str(msg, "session")
    record = {"state": state, "reason": reason, "session": session, "at": time.time()}
    earlier = read_status(s.out)
    if earlier is not None and earlier["state"] == "refused" and earlier["session"] == session:
        return RecordDict({"config": ConfigRecord({})})  # the refusal is what this node needs
    s.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(s.out / STATUS_FILE, json.dumps(record, indent=1).encode())
    if state == "finished":
        _log.warning("year %r finished: this node can stop; results in %s", session, s.out)
    elif state == "refused":
        _log.error("the coordinator excluded this node from year %r: %s", session, reason)
    else:
        _log.error("year %r stopped at the coordinator: %s", session, reason)
    return RecordDict({"config": ConfigRecord({})})


def read_status(out: Path) -> dict[str, Any] | None:
    """The last notice recorded in ``out``, or None."""
    path = out / STATUS_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("state") in STATES else None

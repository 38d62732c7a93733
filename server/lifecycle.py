"""Telling nodes where they stand: refused, or the year is over.

In a deployment an agency's node runs until the coordinator says the year is over, so an
operator can script it (``fedid node`` exits with a documented code). The ServerApp sends
one ``query.year`` message per node, config ``{"state", "reason", "session"}``:

- ``refused``   to a node excluded at discovery, with the named reason (its
                ``--agency-id`` is not the agency its key was registered for) and the fix;
                the year goes on without it while the minimum of nodes holds
- ``finished``  to every connected node when the year completed
- ``failed``    to every connected node when the year stopped with an error (the reason
                is the coordinator's error message, which carries no data)

Replies are acknowledgements with no content; a node that does not acknowledge within the
timeout is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

__all__ = ["announce", "refuse_misclaims"]

_log = logging.getLogger(__name__)
MESSAGE_TYPE = "query.year"


def _send(grid: Grid, notices: Mapping[int, tuple[str, str]], *, session: str,
          timeout: float) -> int:
    msgs = [
        Message(RecordDict({"config": ConfigRecord(
            {"state": state, "reason": reason, "session": session})}),
            dst_node_id=node, message_type=MESSAGE_TYPE)
        for node, (state, reason) in sorted(notices.items())
    ]
    if not msgs:
        return 0
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    acked = sum(1 for r in replies if not r.has_error())
    if acked < len(msgs):
        _log.warning("%s: %d of %d nodes acknowledged", MESSAGE_TYPE, acked, len(msgs))
    return acked


def refuse_misclaims(grid: Grid, claims: Mapping[int, str], bound: Mapping[int, str], *,
                     session: str, timeout: float = 60.0) -> dict[str, str]:
    """Tell each node whose agency claim was refused why; ``{node id: reason}``."""
    reasons = {
        node: (f"this node's --agency-id is {claim!r}, but the coordinator registered its key "
               f"for {bound.get(node)!r}. Restart the node with --agency-id "
               f"{bound.get(node)}, or give the coordinator the public key made with "
               f"`fedid keygen --agency-id {claim}`.")
        for node, claim in claims.items()
    }
    for node in sorted(reasons):
        _log.warning("node %s excluded from the year: agency id does not match its key", node)
    _send(grid, {n: ("refused", r) for n, r in reasons.items()}, session=session,
          timeout=timeout)
    return {str(n): r for n, r in reasons.items()}


def announce(grid: Grid, *, state: str, reason: str, session: str,
             timeout: float = 60.0) -> int:
    """Tell every connected node the year ended (``finished`` or ``failed``)."""
    if state not in {"finished", "failed"}:
        raise ValueError(f"state must be finished or failed. Got {state!r}.")
    nodes = sorted(grid.get_node_ids())
    return _send(grid, {n: (state, reason) for n in nodes}, session=session, timeout=timeout)

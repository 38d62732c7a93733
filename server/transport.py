"""Sending Flower messages to agencies by name, with timeouts and a node minimum.

The coordinator addresses agencies, not Flower node ids: it asks every connected node
who it is (``query.info``) and keeps the mapping. In a deployment the SuperLink binds each
node id to a registered public key; with ``bound`` (node id -> the agency that key was
registered for) a node is believed only about its own agency, so a registered node cannot
take over another agency's messages, even after that agency's node died. Every exchange has
a timeout; a node that does not answer in time is reported missing and the caller decides
whether enough remain. Waiting for nodes at start-up gives up with a FederationError naming
how many came, instead of waiting forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedid.errors import FederationError

__all__ = ["AgencyInfo", "Messenger"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgencyInfo:
    """What a node tells the coordinator about itself at start-up."""

    agency_id: str
    kind: str
    department: str
    node_id: int
    labelled: bool


@dataclass(slots=True)
class Messenger:
    """Agency-addressed request/reply over a Flower Grid."""

    grid: Grid
    timeout: float
    #: node id -> the agency whose key it registered (deployment); empty: claims not checked
    bound: Mapping[int, str] = field(default_factory=dict)
    agencies: dict[str, AgencyInfo] = field(default_factory=dict)
    #: node ids refresh() does not ask again: outside agencies, refused claims, replaced nodes
    outsiders: set[int] = field(default_factory=set)
    #: node id -> refresh() asks that went unanswered (silent, failed or a refused key claim)
    _strikes: dict[int, int] = field(default_factory=dict)
    #: claims refused because the node's key was registered for another agency
    refused_claims: dict[int, str] = field(default_factory=dict)
    on_message: Callable[[str, Message], None] | None = None

    def wait_for_nodes(
        self, minimum: int, wait: float, *, expected: int = 0, settle: float = 10.0
    ) -> list[int]:
        """Connected node ids once the federation has gathered; FederationError after ``wait`` s.

        Nodes connect one by one, so reaching ``minimum`` is not the end of it: with
        ``expected`` > 0 the coordinator waits for that many, and at least ``minimum`` (up to
        ``wait`` s, then goes on
        with what came if it is at least ``minimum``); with ``expected`` 0 (unknown) it goes on
        once at least ``minimum`` are connected and no new node has come for ``settle`` s.
        A node that connects later stays out of the year (see :meth:`refresh`).
        """
        start = time.monotonic()
        deadline = start + wait
        seen, changed = 0, start
        while True:
            ids = sorted(self.grid.get_node_ids())
            now = time.monotonic()
            if len(ids) != seen:
                seen, changed = len(ids), now
            if expected and len(ids) >= max(expected, minimum):
                return ids
            if not expected and len(ids) >= minimum and now - changed >= min(settle, wait):
                return ids
            if now > deadline:
                if len(ids) >= minimum:
                    if expected:
                        _log.warning("%d of the %d expected nodes connected within %.0f s;"
                                     " going on without the others", len(ids), expected, wait)
                    return ids
                raise FederationError(
                    f"the federation needs at least {minimum} nodes; only {len(ids)} connected "
                    f"within {wait:.0f} s. Start more nodes or lower --min-nodes."
                )
            time.sleep(0.5)

    def discover(self, node_ids: list[int], *, passes: int = 3) -> dict[str, AgencyInfo]:
        """Ask every node who it is; nodes that do not answer are left out.

        A node that errors or stays silent (an actor still starting, a transient fault) is
        asked again, up to ``passes`` times in all, before the year goes on without it.
        """
        found: dict[str, AgencyInfo] = {}
        answered: set[int] = set()
        for attempt in range(passes):
            pending = [n for n in node_ids if n not in answered]
            if not pending:
                break
            if attempt:
                _log.warning("asking %d silent node(s) again who they are (pass %d of %d)",
                             len(pending), attempt + 1, passes)
            for info in self._ask_info(pending):
                if info.agency_id in found:
                    raise FederationError(
                        f"two nodes claim the same agency id {info.agency_id!r}."
                    )
                answered.add(info.node_id)
                found[info.agency_id] = info
        self.agencies = found
        return found

    def refresh(self, *, wait: float = 30.0, tries: int = 3) -> list[str]:
        """Let agencies whose node restarted rejoin; return the agencies that rejoined.

        A SuperNode that dies and comes back may reconnect under a new node id. Connected
        node ids the coordinator does not know are asked who they are, waiting at most
        ``wait`` s. A known agency answering from a new id is re-addressed there only if
        its old node is gone (no longer connected); while the old node is connected the
        claim is a duplicate and is refused (the node is asked again later, as the old id
        may only be slow to expire). An agency that was not in the year at discovery stays
        out (it took no part in matching). Nodes that answered for an outside agency or were
        replaced are not asked again; nodes that stayed silent, failed, or made a refused
        claim ``tries`` times are not asked again either, so none holds up every round.
        """
        connected = set(self.grid.get_node_ids())
        known = {i.node_id for i in self.agencies.values()} | self.outsiders
        fresh = sorted(n for n in connected - known if self._strikes.get(n, 0) < tries)
        if not fresh:
            return []
        rejoined: list[str] = []
        answered: set[int] = set()
        for info in self._ask_info(fresh, timeout=min(wait, self.timeout)):
            answered.add(info.node_id)
            old = self.agencies.get(info.agency_id)
            if old is None:
                _log.warning("node %s (%s) joined after discovery; it stays out of this year",
                             info.node_id, info.agency_id)
                self.outsiders.add(info.node_id)
            elif old.node_id in connected:  # asked again later: the old id may be stale
                _log.warning("node %s claims %s, whose node %s is still connected; refused",
                             info.node_id, info.agency_id, old.node_id)
                answered.discard(info.node_id)
            else:
                _log.warning("%s rejoined as node %s (was %s)", info.agency_id, info.node_id,
                             old.node_id)
                self.outsiders.add(old.node_id)  # should it come back, it is not asked
                self.agencies[info.agency_id] = info
                rejoined.append(info.agency_id)
        for node in set(fresh) - answered:  # silent, failed, or a refused claim
            self._strikes[node] = self._strikes.get(node, 0) + 1
        return rejoined

    def _ask_info(self, node_ids: list[int], *, timeout: float | None = None
                  ) -> list[AgencyInfo]:
        """``query.info`` to each node; the descriptions of those that answered in time."""
        msgs = [
            Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n,
                    message_type="query.info")
            for n in node_ids
        ]
        out: list[AgencyInfo] = []
        wait = self.timeout if timeout is None else timeout
        for reply in self.grid.send_and_receive(msgs, timeout=wait):
            if reply.has_error():
                _log.warning("node %s failed to describe itself: %s",
                             reply.metadata.src_node_id, reply.error.reason)
                continue
            cfg = reply.content["info"]
            node, claim = reply.metadata.src_node_id, str(cfg["agency-id"])
            if self.bound and self.bound.get(node) != claim:
                _log.warning("node %s claims agency %r but its key was registered for %r;"
                             " ignored", node, claim, self.bound.get(node))
                self.refused_claims[node] = claim
                continue
            out.append(AgencyInfo(
                agency_id=claim,
                kind=str(cfg["kind"]),
                department=str(cfg["department"]),
                node_id=node,
                labelled=bool(cfg["labelled"]),
            ))
        return out

    def exchange(
        self,
        message_type: str,
        contents: Mapping[str, RecordDict],
        *,
        group: str = "",
    ) -> dict[str, Message]:
        """Send one message per agency and collect the replies that arrive in time."""
        by_node: dict[int, str] = {}
        msgs: list[Message] = []
        for agency, content in contents.items():
            info = self.agencies.get(agency)
            if info is None:
                raise FederationError(f"unknown agency {agency!r}.")
            by_node[info.node_id] = agency
            msgs.append(
                Message(content, dst_node_id=info.node_id, message_type=message_type,
                        group_id=group)
            )
        replies: dict[str, Message] = {}
        for reply in self.grid.send_and_receive(msgs, timeout=self.timeout):
            sender = by_node.get(reply.metadata.src_node_id)
            if sender is None:
                continue
            replies[sender] = reply
            if self.on_message is not None:
                self.on_message(sender, reply)
        missing = sorted(set(contents) - set(replies))
        if missing:
            _log.warning("%s: no reply within %.0f s from %s", message_type, self.timeout, missing)
        return replies

    def exchange_pairs(
        self, message_type: str, pairs: list[tuple[str, RecordDict]]
    ) -> list[Message | None]:
        """Send several messages (possibly several to one agency); replies in send order."""
        msgs: list[Message] = []
        for agency, content in pairs:
            info = self.agencies.get(agency)
            if info is None:
                raise FederationError(f"unknown agency {agency!r}.")
            msgs.append(Message(content, dst_node_id=info.node_id, message_type=message_type))
        ids = list(self.grid.push_messages(msgs))
        index = {mid: i for i, mid in enumerate(ids) if mid}
        out: list[Message | None] = [None] * len(msgs)
        deadline = time.monotonic() + self.timeout
        pending = set(index)
        while pending and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(pending)):
                mid = reply.metadata.reply_to_message_id
                if mid in pending:
                    out[index[mid]] = reply
                    pending.discard(mid)
                    if self.on_message is not None:
                        sender = pairs[index[mid]][0]
                        self.on_message(sender, reply)
            if pending:
                time.sleep(0.1)
        if pending:
            _log.warning("%s: %d of %d replies missing after %.0f s", message_type,
                         len(pending), len(msgs), self.timeout)
        return out

    def one(self, message_type: str, agency: str, content: RecordDict) -> Message:
        """Exchange with one agency; FederationError if it does not answer or fails."""
        reply = self.exchange(message_type, {agency: content}).get(agency)
        if reply is None:
            raise FederationError(
                f"{agency} did not answer {message_type} within {self.timeout:.0f} s."
            )
        if reply.has_error():
            raise FederationError(f"{agency} failed {message_type}: {reply.error.reason}")
        return reply

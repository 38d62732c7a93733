"""The node's release gate: the one Flower mod every reply passes (see THREAT_MODEL.md).

For each message the node answers, :func:`release_gate`:

1. runs the handler; an exception never reaches the coordinator as text: it is logged on
   the node and the reply becomes a Flower error with a fixed code and a data-free reason
   (:data:`ERROR_CODES`), whatever the exception said;
2. checks the reply against the release policy (:mod:`clients.release`): a record or key
   the policy does not declare for the message kind refuses the whole reply (fail closed);
3. enforces the kind's frequency: at most one distinct release per scope (round or
   session); a repeat of the same bytes (a retry) passes, anything else is refused;
4. appends the release to the node's ledger ``<out>/releases.jsonl`` with the protection
   of every field, its digest and size, and the epsilon the node's accountant moved while
   answering (``charged_epsilon``): every increment of the node's epsilon is attributed to
   the release that caused it, so the charges add up to the epsilon the node reports.

Refusals and errors are recorded too. ``fedid ledger --out DIR`` prints the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable

from clients.node import settings_of
from clients.privacy_state import NodePrivacyLedger
from clients.release import POLICY, protections, undeclared
from clients.transcript import message_bytes
from fedid import errors

__all__ = ["ERROR_CODES", "LEDGER_NAME", "read_ledger", "release_gate"]

_log = logging.getLogger(__name__)

LEDGER_NAME: Final = "releases.jsonl"
#: code -> name; the reason sent is "fedid node error <code> <name>" and nothing else
ERROR_CODES: Final[dict[int, str]] = {
    1000: "internal", 1001: "budget", 1002: "config", 1003: "data", 1004: "protocol",
    1005: "crypto", 1006: "training", 1007: "federation", 1008: "undeclared-field",
    1009: "release-limit",
}
_BY_CLASS: Final = (
    (errors.BudgetExceededError, 1001), (errors.ConfigError, 1002),
    (errors.DataValidationError, 1003), (errors.ProtocolError, 1004),
    (errors.CryptoError, 1005), (errors.TrainingError, 1006), (errors.FederationError, 1007),
)


def _code(exc: BaseException) -> int:
    return next((code for cls, code in _BY_CLASS if isinstance(exc, cls)), 1000)


def error_reply(msg: Message, code: int) -> Message:
    """A data-free error reply: the code and its name only."""
    return Message(Error(code=code, reason=f"fedid node error {code} {ERROR_CODES[code]}"),
                   reply_to=msg)


def _out(context: Context) -> Path | None:
    try:
        return settings_of(context).out
    except errors.FedIdError:
        return None


def _epsilon(context: Context, out: Path | None) -> tuple[float, float]:
    if out is None:
        return 0.0, 0.0
    ledger = NodePrivacyLedger.load(context, out)
    return ledger.epsilon_total, ledger.delta


def _scope(msg: Message, per: str) -> str:
    if per == "message":
        return ""
    cfg = msg.content.config_records.get("config")
    got = {k: "" if cfg is None else str(cfg.get(k, ""))
           for k in ("session", "round", "secagg-attempt")}
    if per == "session":
        return got["session"]
    return f"{got['session']}/{got['round']}/{got['secagg-attempt']}"


def _append(out: Path | None, entry: dict[str, Any]) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LEDGER_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_ledger(out: Path) -> list[dict[str, Any]]:
    """Every entry of a node's release ledger, oldest first ([] if it has none)."""
    path = out / LEDGER_NAME
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _earlier(out: Path | None, kind: str, scope: str) -> set[str]:
    if out is None:
        return set()
    return {e["digest"] for e in read_ledger(out)
            if e["kind"] == kind and e["scope"] == scope and e["status"] == "released"}


def release_gate(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: run the handler, then let out only what the policy declares (module doc).

    Whatever fails, in the handler or in the gate itself (its node settings, its ledger
    file), leaves the node as a code only: Flower would otherwise send the exception text.
    """
    try:
        return _gate(msg, context, call_next)
    except Exception as exc:
        _log.error("%s: the release gate failed on this node (%s)", msg.metadata.message_type,
                   type(exc).__name__)
        return error_reply(msg, _code(exc))


def _gate(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    kind = msg.metadata.message_type
    out = _out(context)
    eps_before, _ = _epsilon(context, out)
    base: dict[str, Any] = {"time": round(time.time(), 3), "kind": kind}
    try:
        with _node_lock(out):
            reply = call_next(msg, context)
    except Exception as exc:
        code = _code(exc)
        _log.warning("%s failed on this node (%s): %s", kind, type(exc).__name__, exc)
        return _refuse(msg, context, out, base, code, eps_before)
    if reply.has_error():  # an inner mod's error: its reason may carry text
        _log.warning("%s: inner error reply scrubbed (code %s)", kind, reply.error.code)
        return _refuse(msg, context, out, base, 1000, eps_before)
    bad = undeclared(kind, reply.content)
    if bad:
        _log.error("%s: reply refused, fields not declared in the release policy: %s",
                   kind, bad)
        return _refuse(msg, context, out, base, 1008, eps_before)
    policy = POLICY[kind]
    scope = _scope(msg, policy.per)
    body = message_bytes(reply)
    digest = hashlib.sha256(body).hexdigest()
    earlier = _earlier(out, kind, scope) if policy.per != "message" else set()
    if earlier and digest not in earlier:
        _log.error("%s: a different release was already made for %s %r; refused",
                   kind, policy.per, scope)
        return _refuse(msg, context, out, base, 1009, eps_before)
    eps_after, delta = _epsilon(context, out)
    _append(out, {**base, "status": "released", "scope": scope, "digest": digest,
                  "bytes": len(body), "fields": protections(kind, reply.content),
                  "charged_epsilon": eps_after - eps_before, "epsilon_total": eps_after,
                  "delta": delta})
    return reply


@contextlib.contextmanager
def _node_lock(out: Path | None) -> Iterator[None]:
    """One handler at a time per node folder (an exclusive lock on ``<out>/.node.lock``):
    the ledger's load, budget check, charge and save are never interleaved across runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".node.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _refuse(msg: Message, context: Context, out: Path | None, base: dict[str, Any],
            code: int, eps_before: float) -> Message:
    eps_after, delta = _epsilon(context, out)
    _append(out, {**base, "status": "error", "scope": "", "digest": "", "bytes": 0,
                  "fields": {"error": "public"}, "code": code, "error": ERROR_CODES[code],
                  "charged_epsilon": eps_after - eps_before, "epsilon_total": eps_after,
                  "delta": delta})
    return error_reply(msg, code)

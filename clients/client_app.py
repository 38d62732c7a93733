"""The agency node as a Flower ClientApp (thin: the work lives in :mod:`clients.node`).

Message types handled:

- ``query.info``      who this node is (agency id, kind, department, labelled or not)
- ``query.init``      the initial model arrays (public schema and seed only, no data)
- ``train``           one round of local DP-SGD from the global arrays (budget-guarded,
                      the node's own settings and CSPRNG noise)
- ``evaluate``        metrics of the round's aggregate on this node's held-out rows, kept
                      on the node
- ``query.secagg``    secure aggregation only: this round's X25519 public key
- ``query.noise``     distributed-noise mode only: the noise of the secure sum this node
                      requires for its budget, once per session (:mod:`clients.noise_share`)
- ``query.identify``  score every student locally, write the recommendations on this
                      node, reply with noised (charged) aggregate counts only
- ``query.match``     one step of the matching protocol (see :mod:`clients.matching`)
- ``query.year``      the coordinator's notice: refused, or the year finished or failed
                      (see :mod:`clients.lifecycle`); the reply is an empty acknowledgement

Every reply passes the release gate (:func:`clients.gate.release_gate`): fields the release
policy (:mod:`clients.release`) does not declare are refused, failures leave as a code
without data, and every release is appended to the node's ledger
(``<out>/releases.jsonl``, printed by ``fedid ledger``). Outside it,
:func:`clients.transcript.record_mod`, when a transcript folder is configured, stores the
exact bytes that leave the node so a test can scan them for IDs and plaintext values.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients import lifecycle, node
from clients.gate import release_gate
from clients.transcript import record_mod

__all__ = ["app"]

app = ClientApp(mods=[record_mod, release_gate])


@app.query("info")
def info(msg: Message, context: Context) -> Message:
    """Describe this node."""
    return Message(node.info(msg, context), reply_to=msg)


@app.query("init")
def init(msg: Message, context: Context) -> Message:
    """The initial global model, from the public schema and a seed (public, no data)."""
    return Message(node.init(msg, context), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One budget-guarded round of local DP training."""
    return Message(node.train(msg, context), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on this node's held-out rows."""
    return Message(node.evaluate(msg, context), reply_to=msg)


@app.query("secagg")
def secagg(msg: Message, context: Context) -> Message:
    """Secure aggregation, key step: this round's public key (see clients.masked_update)."""
    return Message(node.secagg_keys(msg, context), reply_to=msg)


@app.query("noise")
def noise(msg: Message, context: Context) -> Message:
    """Distributed noise: the sum's noise this node requires (see clients.noise_share)."""
    return Message(node.noise(msg, context), reply_to=msg)


@app.query("identify")
def identify(msg: Message, context: Context) -> Message:
    """Score all students; recommendations stay on this node."""
    return Message(node.identify(msg, context), reply_to=msg)


@app.query("match")
def match(msg: Message, context: Context) -> Message:
    """One matching-protocol step (the step name travels in the message config)."""
    return Message(node.match(msg, context), reply_to=msg)


@app.query("year")
def year(msg: Message, context: Context) -> Message:
    """The coordinator's notice about this node's year (clients.lifecycle)."""
    return Message(lifecycle.year_notice(msg, context), reply_to=msg)

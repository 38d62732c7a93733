"""A lazily started process pool for batch crypto (Paillier, ristretto255 blinding).

Batches are cut into contiguous chunks, one or a few per worker, and run on a
:class:`concurrent.futures.ProcessPoolExecutor` whose workers are direct children of
this process, so their CPU time is counted by ``resource.getrusage(RUSAGE_CHILDREN)``
once the pool is shut down. Small batches run inline: starting work on another process
costs more than it saves below a few dozen heavy operations.

Start method: ``fork`` on Linux (cheap, and it does not re-import the caller's
``__main__``, which ``spawn`` and ``forkserver`` do and which breaks unguarded scripts and
interactive sessions); ``spawn`` elsewhere. ``FEDID_CRYPTO_START_METHOD`` overrides it
(use ``spawn`` in a process whose other threads may hold locks at fork time). Workers only
run the pure functions of :mod:`privacy` on the arguments they are sent.

The number of workers is the number of CPUs this process may use, or
``FEDID_CRYPTO_WORKERS`` if set (``1`` disables the pool).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["map_chunks", "shutdown_pool", "worker_count"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def worker_count() -> int:
    """Workers the pool uses: ``FEDID_CRYPTO_WORKERS`` or the usable CPU count."""
    env = os.environ.get("FEDID_CRYPTO_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            _LOG.warning("FEDID_CRYPTO_WORKERS must be an integer; ignoring it")
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            default = "fork" if sys.platform.startswith("linux") else "spawn"
            method = os.environ.get("FEDID_CRYPTO_START_METHOD", default)
            context = multiprocessing.get_context(method)
            _pool = ProcessPoolExecutor(max_workers=worker_count(), mp_context=context)
            _LOG.debug("started crypto process pool with %d workers", worker_count())
        return _pool


def shutdown_pool() -> None:
    """Stop the pool's workers (waiting for them); the next batch starts a new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


atexit.register(shutdown_pool)


def map_chunks(
    func: Callable[..., list[R]],
    items: Sequence[T],
    *,
    args: tuple[Any, ...] = (),
    min_parallel: int = 64,
    chunks_per_worker: int = 2,
) -> list[R]:
    """``func(chunk, *args)`` over contiguous chunks of ``items``; results concatenated in order.

    ``func`` must be a top-level function returning one result per item. Runs inline when
    there is one worker or fewer than ``min_parallel`` items.
    """
    workers = worker_count()
    if workers <= 1 or len(items) < min_parallel:
        return func(items, *args)
    n_chunks = min(len(items), workers * chunks_per_worker)
    size = -(-len(items) // n_chunks)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    try:
        pool = _get_pool()
        futures = [pool.submit(func, chunk, *args) for chunk in chunks]
        parts = [future.result() for future in futures]
    except BrokenProcessPool:
        # A worker died (killed, out of memory): drop the pool, do this batch inline.
        _LOG.warning("crypto process pool broke; running the batch in this process")
        shutdown_pool()
        return func(items, *args)
    out: list[R] = []
    for part, chunk in zip(parts, chunks, strict=True):
        if len(part) != len(chunk):
            raise RuntimeError("worker returned a result of the wrong length")
        out.extend(part)
    return out

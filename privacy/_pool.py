"""A lazily started process pool for batch crypto (Paillier, ristretto255 blinding).

Batches are cut into contiguous chunks, one or a few per worker, and run on a
:class:`concurrent.futures.ProcessPoolExecutor` whose workers are direct children of
this process, so their CPU time is counted by ``resource.getrusage(RUSAGE_CHILDREN)``
once the pool is shut down. Small batches run inline: starting work on another process
costs more than it saves below a few dozen heavy operations.

Start method: ``fork`` on Linux, ``spawn`` elsewhere; ``FEDID_CRYPTO_START_METHOD``
overrides it. ``spawn`` and ``forkserver`` re-import the caller's ``__main__`` in every
worker, which breaks unguarded scripts and interactive sessions (measured here: a script
without a ``__main__`` guard crashes every worker). ``fork`` in a process whose other
threads (gRPC, Ray, torch) may hold locks is safe for these workers: they only run the
pure functions of :mod:`privacy` (gmpy2, libsodium) on the arguments they are sent, never
touch those libraries, and leave through ``os._exit``; CPython re-initialises its own
locks (import, logging) across ``fork``, and the executor forks all workers before its
own threads start. If the pool breaks (a worker killed, or unable to start) the batch runs
inline; after two breaks the pool stays off for the life of the process.

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

__all__ = ["map_chunks", "shutdown_pool", "start_method", "worker_count"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_MAX_BREAKS = 2
_breaks = 0


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


def start_method() -> str:
    """The start method a new pool would use now (see the module docstring)."""
    env = os.environ.get("FEDID_CRYPTO_START_METHOD")
    if env:
        return env
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            method = start_method()
            context = multiprocessing.get_context(method)
            _pool = ProcessPoolExecutor(max_workers=worker_count(), mp_context=context)
            _LOG.debug("started crypto process pool: %d workers, %s", worker_count(), method)
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
    global _breaks
    workers = worker_count()
    if workers <= 1 or len(items) < min_parallel or _breaks >= _MAX_BREAKS:
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
        _breaks += 1
        _LOG.warning("crypto process pool broke (%d of %d allowed); running the batch in "
                     "this process", _breaks, _MAX_BREAKS)
        shutdown_pool()
        return func(items, *args)
    out: list[R] = []
    for part, chunk in zip(parts, chunks, strict=True):
        if len(part) != len(chunk):
            raise RuntimeError("worker returned a result of the wrong length")
        out.extend(part)
    return out

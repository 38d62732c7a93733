"""Stopping a child process and everything it started (its own process group)."""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["exit_on_sigterm", "stop_group"]


def stop_group(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None, *,
               grace: float = 20.0) -> None:
    """Terminate a process started with ``start_new_session=True`` and its children.

    SIGTERM to the group, SIGKILL after ``grace`` seconds.
    """
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        return


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``systemctl stop``, a supervisor) into SystemExit, so ``finally``
    blocks stop the child processes this process started in their own sessions."""
    signal.signal(signal.SIGTERM, _exit)

"""Run the fedid Flower app in Flower's simulation runtime the way Flower 1.42 runs one.

Flower 1.42 deprecates the in-process ``flwr.simulation.run_simulation``; its entry point
for a simulation is ``flwr run APP CONNECTION`` against a SuperLink started with
``--simulation``, which runs the ServerApp and the virtual SuperNodes' ClientApps in a
``flwr-simulation`` process (Ray backend). :func:`run_in_simulation`:

1. writes a private Flower home ``<work>/config.toml`` with one SuperLink connection,
   ``fedid-simulation``, on a free loopback port (nothing is shared with another run or
   with the user's own Flower home);
2. starts ``flower-superlink --simulation --insecure`` on that port, state in memory,
   in its own process group, its log in ``<work>/superlink.log``;
3. submits the app with ``flwr run APP fedid-simulation --run-config ...
   --federation-config "num-supernodes=N ..." --stream``, which returns when the run
   ends; the run's log goes to ``<work>/run.log``;
4. meanwhile follows the progress events the ServerApp appends to
   ``<work>/progress.jsonl`` (:data:`server.server_app.PROGRESS_ENV`) and hands each to
   the caller's callback;
5. checks the run finished ``completed`` (``flwr ls``) and stops the SuperLink and every
   process group it started (the simulation process and Ray run in groups of their own).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fedid.errors import FederationError
from privacy.atomic import atomic_write_bytes
from server.deploy import flower_env, run_config_arg, stop_group
from server.server_app import PROGRESS_ENV

__all__ = ["run_in_simulation"]

Progress = Callable[[str, dict[str, Any]], None]
CONNECTION = "fedid-simulation"
_START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FederationError(f"{name} is not on PATH; install flwr[simulation].")
    return path


def _healthy(port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/health"
        with urllib.request.urlopen(url, timeout=0.5) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_superlink(work: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [_exe("flower-superlink"), "--simulation", "--insecure", "--port", str(port),
           "--disable-runtime-dependency-installation"]
    with (work / "superlink.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed executable and arguments
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FederationError(f"the simulation SuperLink exited with code "
                                  f"{process.returncode}; see {work / 'superlink.log'}.")
        if _healthy(port):
            return process
        time.sleep(0.2)
    stop_group(process)
    raise FederationError(f"the simulation SuperLink did not start within "
                          f"{_START_TIMEOUT_S:.0f} s; see {work / 'superlink.log'}.")


def _groups_below(pid: int) -> set[int]:
    """Process groups of every descendant of ``pid`` (read from Linux ``/proc``).

    The SuperLink starts ``flower-superexec`` in a session of its own, which starts the
    simulation process and Ray; stopping the SuperLink's group alone could leave them.
    """
    parent_of: dict[int, int] = {}
    group_of: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
        group_of[int(stat.parent.name)] = int(fields[2])
    below: set[int] = {pid}
    grew = True
    while grew:
        more = {child for child, parent in parent_of.items() if parent in below}
        grew = not more <= below
        below |= more
    return {group_of[p] for p in below - {pid} if p in group_of} - {os.getpgrp()}


def _stop(superlink: subprocess.Popen[bytes]) -> None:
    """Stop the SuperLink and every process group it started."""
    groups = _groups_below(superlink.pid)
    stop_group(superlink)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)


def _follow(path: Path, say: Progress, done: threading.Event) -> None:
    """Hand every complete JSON line appended to ``path`` to ``say`` until ``done``."""
    offset = 0
    while True:
        finished = done.is_set()
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                event = json.loads(line)
                say(str(event["event"]), dict(event["data"]))
        if finished:
            return
        done.wait(0.5)


def _run_status(env: dict[str, str], run_id: int) -> str:
    done = subprocess.run(  # noqa: S603 - fixed executable and arguments
        [_exe("flwr"), "ls", CONNECTION, "--run-id", str(run_id), "--format", "json"],
        capture_output=True, text=True, env=env, check=False, timeout=60)
    try:
        runs = json.loads(done.stdout[done.stdout.find("{"):]).get("runs", [])
        return str(runs[0]["status"]) if runs else "unknown"
    except (ValueError, KeyError) as exc:
        raise FederationError(f"flwr ls gave no run status: {done.stdout[-300:]}") from exc


def run_in_simulation(
    *,
    app_dir: Path,
    work: Path,
    num_supernodes: int,
    workers: int,
    run_config: Mapping[str, Any],
    env: Mapping[str, str],
    progress: Progress,
) -> None:
    """Run the app at ``app_dir`` once on ``num_supernodes`` virtual SuperNodes.

    ``run_config`` overrides the app's ``[tool.flwr.app.config]``; ``env`` is added to the
    environment of every Flower process (the SuperLink, the simulation process, the Ray
    workers). Raises :class:`FederationError` unless the run completed.
    """
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    atomic_write_bytes(work / "config.toml", (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n').encode())
    events = work / "progress.jsonl"
    events.unlink(missing_ok=True)
    full_env = {**flower_env(work), **env, PROGRESS_ENV: str(events.resolve())}
    federation = (f"num-supernodes={num_supernodes} client-resources-num-cpus=1 "
                  f"client-resources-num-gpus=0 init-args-num-cpus={workers} "
                  "init-args-log-to-driver=true")
    superlink = _start_superlink(work, port, full_env)
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(events, progress, done), daemon=True)
    follower.start()
    try:
        with (work / "run.log").open("w", encoding="utf-8") as log:
            submitted = subprocess.run(  # noqa: S603 - fixed executable and arguments
                [_exe("flwr"), "run", str(app_dir), CONNECTION, "--run-config",
                 run_config_arg(dict(run_config)), "--federation-config", federation,
                 "--stream"],
                stdout=log, stderr=subprocess.STDOUT, text=True, env=full_env,
                cwd=app_dir, check=False)
        text = (work / "run.log").read_text(encoding="utf-8", errors="replace")
        marker = "Successfully started run "
        if submitted.returncode != 0 or marker not in text:
            raise FederationError(f"flwr run failed (exit {submitted.returncode}); "
                                  f"see {work / 'run.log'}.")
        run_id = int(text.split(marker, 1)[1].split()[0])
        status = _run_status(full_env, run_id)
        if status != "finished:completed":
            raise FederationError(f"the simulated run ended {status}; see {work / 'run.log'}.")
    finally:
        done.set()
        follower.join(timeout=10)
        _stop(superlink)

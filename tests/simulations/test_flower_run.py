"""The simulation driver's own parts: following progress events, finding what to stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from simulations.flower_run import _follow, _groups_below


def test_progress_events_are_handed_over_whole_lines_only(tmp_path: Path) -> None:
    events = tmp_path / "progress.jsonl"
    events.write_text('{"event": "phase", "data": {"name": "nodes"}}\n'
                      '{"event": "round", "data": {"round": 1}}\n{"event": "ha')
    seen: list[tuple[str, dict[str, object]]] = []
    done = threading.Event()
    done.set()
    _follow(events, lambda e, d: seen.append((e, d)), done)
    assert seen == [("phase", {"name": "nodes"}), ("round", {"round": 1})]


def test_groups_started_below_a_process_are_found(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    parent = subprocess.Popen(  # the child leaves the parent's group, as flower-superexec does
        ["bash", "-c", f"setsid bash -c 'echo $$ > {marker}; sleep 30' & sleep 30"],
        start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(marker.read_text())
        groups = _groups_below(parent.pid)
        assert os.getpgid(child) in groups
        assert os.getpgrp() not in groups
    finally:
        for group in _groups_below(parent.pid) | {parent.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        parent.wait(timeout=10)

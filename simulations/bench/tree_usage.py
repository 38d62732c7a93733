"""Benchmark helper: CPU time and memory of a command and every process it starts.

``python -m simulations.bench.tree_usage [--interval 1] [--timeline FILE] -- CMD ...`` runs
CMD and prints ONE JSON line when it ends: wall seconds, CPU seconds summed over the whole
process tree, the peak of the tree's summed proportional set size (PSS: shared pages split
between the processes sharing them, so a library mapped by eight Ray workers counts once),
the peak RSS of its largest single process, and, per phase, wall and CPU seconds.

Why: ``fedid simulate`` runs Flower's SuperLink in a session of its own, which starts the
simulation process, Ray and its workers; ``/usr/bin/time`` sees only the processes reaped
up its own chain, and its "maximum resident set size" is one process's peak, not the run's.
Here the tree (every descendant by parent id, read from Linux ``/proc``) is sampled every
``--interval`` seconds; a process's CPU time is its own ``utime + stime`` (never its reaped
children's, which are sampled themselves), last seen before it exits, so a process that
lives less than one interval, or its last interval, is undercounted. The command's own
reaped total (``os.wait4``) is reported beside it as a cross-check.

Phases: every stderr line of CMD that contains ``phase <name>`` (``fedid simulate``'s progress
lines when stderr is not a terminal) starts a phase; stderr is passed through unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["main", "measure"]

_TICK = os.sysconf("SC_CLK_TCK")
_PHASE = re.compile(r"\bphase (?:matching )?(\w+)")


def _stat(pid: int) -> tuple[int, int, float, int] | None:
    """(parent pid, start time in ticks, CPU seconds, RSS pages) of ``pid``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22, rss 24
    return (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / _TICK,
            int(fields[21]))


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(root: int) -> dict[int, tuple[int, int, float, int]]:
    stats = {int(p.name): s for p in Path("/proc").glob("[0-9]*")
             if (s := _stat(int(p.name))) is not None}
    below, grew = {root}, True
    while grew:
        more = {pid for pid, s in stats.items() if s[0] in below} - below
        grew = bool(more)
        below |= more
    return {pid: stats[pid] for pid in below if pid in stats}


class _Sampler:
    """Samples the tree below ``root``: CPU per (pid, start), the peaks of PSS and RSS."""

    def __init__(self, root: int, timeline: IO[str] | None) -> None:
        self.root = root
        self.cpu: dict[tuple[int, int], float] = {}
        self.peak_pss_kib = 0
        self.peak_rss_kib = 0
        self.processes = 0
        self.timeline = timeline
        self.page_kib = os.sysconf("SC_PAGE_SIZE") // 1024

    def sample(self, elapsed: float) -> float:
        tree = _tree(self.root)
        pss = 0
        for pid, (_ppid, start, cpu, rss) in tree.items():
            self.cpu[(pid, start)] = max(cpu, self.cpu.get((pid, start), 0.0))
            pss += _pss_kib(pid)
            self.peak_rss_kib = max(self.peak_rss_kib, rss * self.page_kib)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.processes = max(self.processes, len(tree))
        total = self.total_cpu()
        if self.timeline is not None:
            self.timeline.write(json.dumps({"t": round(elapsed, 1), "cpu_s": round(total, 1),
                                            "pss_mib": round(pss / 1024, 1),
                                            "processes": len(tree)}) + "\n")
            self.timeline.flush()
        return total

    def total_cpu(self) -> float:
        return sum(self.cpu.values())


def measure(cmd: list[str], *, interval: float = 1.0, timeline: Path | None = None,
            ) -> dict[str, Any]:
    """Run ``cmd`` to its end, sampling its process tree; return the figures."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)  # noqa: S603
    handle = timeline.open("w", encoding="utf-8") if timeline is not None else None
    sampler = _Sampler(child.pid, handle)
    phases: list[tuple[str, float, float]] = []  # (name, wall at start, tree CPU at start)
    lock = threading.Lock()

    def relay() -> None:
        assert child.stderr is not None  # noqa: S101 - Popen(stderr=PIPE) gives one
        for line in child.stderr:
            sys.stderr.write(line)
            found = _PHASE.search(line)
            if found:
                with lock:
                    now = time.perf_counter() - start
                    phases.append((found.group(1), now, sampler.sample(now)))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    usage = None
    while usage is None:
        with lock:
            sampler.sample(time.perf_counter() - start)
        pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            usage = (status, rusage)
        else:
            time.sleep(interval)
    wall = time.perf_counter() - start
    reader.join(timeout=10)
    if handle is not None:
        handle.close()
    cpu = sampler.total_cpu()
    per_phase: dict[str, dict[str, float]] = {}
    ends = [*phases[1:], ("", wall, cpu)]
    for (name, t0, c0), (_n, t1, c1) in zip(phases, ends, strict=True):
        block = per_phase.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
        block["wall_s"] = round(block["wall_s"] + t1 - t0, 1)
        block["cpu_s"] = round(block["cpu_s"] + c1 - c0, 1)
    status, rusage = usage
    return {
        "command": cmd, "exit_code": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 1), "cpu_s_tree": round(cpu, 1),
        "cpu_s_reaped": round(rusage.ru_utime + rusage.ru_stime, 1),
        "peak_pss_mib_tree": round(sampler.peak_pss_kib / 1024, 1),
        "peak_rss_mib_largest_process": round(sampler.peak_rss_kib / 1024, 1),
        "peak_rss_mib_reaped": round(rusage.ru_maxrss / 1024, 1),
        "processes_at_most": sampler.processes, "interval_s": interval, "phases": per_phase,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--timeline", type=Path, default=None,
                        help="Also write one JSON line per sample to this file.")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("give the command after --")
    result = measure(cmd, interval=args.interval, timeline=args.timeline)
    print(json.dumps({"benchmark": "tree_usage", **result}), flush=True)
    sys.exit(0 if result["exit_code"] == 0 else 1)


if __name__ == "__main__":
    main()

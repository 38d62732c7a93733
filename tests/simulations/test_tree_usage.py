"""bench.tree_usage counts the CPU of a command's children and splits it by phase."""

from __future__ import annotations

import sys

from simulations.bench.tree_usage import measure

_BUSY = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_children_and_phases_are_counted() -> None:
    # a parent that starts a busy child and is busy itself, in two phases
    script = (
        "import subprocess, sys\n"
        "print('phase first', file=sys.stderr, flush=True)\n"
        f"child = subprocess.Popen([sys.executable, '-c', {_BUSY.format(s=1.5)!r}])\n"
        + _BUSY.format(s=0.5)
        + "child.wait()\n"
        "print('phase second', file=sys.stderr, flush=True)\n"
        + _BUSY.format(s=0.5)
    )
    got = measure([sys.executable, "-c", script], interval=0.2)
    assert got["exit_code"] == 0
    assert got["cpu_s_tree"] >= 2.0  # the child's 1.5 s included
    assert set(got["phases"]) == {"first", "second"}
    assert got["phases"]["first"]["cpu_s"] >= 1.5
    assert got["phases"]["second"]["cpu_s"] >= 0.3
    assert got["peak_pss_mib_tree"] > 0

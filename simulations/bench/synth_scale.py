"""Benchmark: synthetic province generation time and peak memory at scale.

``python -m simulations.bench.synth_scale [--students N ...]`` generates and writes (Parquet)
a province per size, each in a fresh child process so that its peak resident memory
(``ru_maxrss``) is its own, and prints ONE JSON line: per size, the seconds to generate,
to write and in total, the process CPU seconds (wall time on a shared machine is mostly
waiting), the peak RSS in MiB, the number of people and of departmental rows,
and students per second. Default sizes: the default scenario (12,000 students) and
1,000,000 students. There is no peer to compare with.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "measure"]

DEFAULT_SIZES = (12_000, 1_000_000)


def measure(students: int, *, seed: int = 0) -> dict[str, Any]:
    """Generate and write one province in this process; return its figures."""
    from simulations.province import generate_province, write_province
    from simulations.scenario import Scenario

    start = time.perf_counter()
    province = generate_province(Scenario(students=students), seed=seed)
    generated = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        write_province(province, out / "province")
        written = time.perf_counter()
        size = sum(p.stat().st_size for p in (out / "province").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    counts = province.calibration["counts"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "students": students,
        "people": counts["people"],
        "department_rows": sum(len(t) for t in province.departments.values()),
        "generate_s": round(generated - start, 2),
        "write_s": round(written - generated, 2),
        "total_s": round(written - start, 2),
        "students_per_s": round(students / (written - start)),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # robust to a busy machine
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "bytes_on_disk": size,
    }


def _child(students: int, seed: int) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603 - fixed argv: this interpreter and this module
        [sys.executable, "-m", "simulations.bench.synth_scale", "--child",
         "--students", str(students), "--seed", str(seed)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, action="append", help="size (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = tuple(args.students) if args.students else DEFAULT_SIZES
    if args.child:
        print(json.dumps(measure(sizes[0], seed=args.seed)))
        return
    runs = [_child(n, args.seed) for n in sizes]
    print(json.dumps({
        "benchmark": "synth_scale",
        "note": "shared 2-core machine; one run per size, each in its own process",
        "runs": runs,
    }))


if __name__ == "__main__":
    main()

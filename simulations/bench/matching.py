"""Province-scale matching benchmark: one home agency against twelve departments.

``python -m simulations.bench.matching`` (default: 1,000,000 students plus their guardians
against 12 departments of 200,000 records each, 3072-bit Paillier) or ``--students
100000`` for a quick run (departments scale to ``students / 5`` records); ``--no-auth``
leaves the messages unsigned, to measure what authentication costs. Prints one JSON line:
wall time of the matching round, per-phase seconds (``transport_within_phases``: time
spent serialising, signing and verifying messages, already inside the other phases), peak
memory (this process and its crypto workers), bytes received per party, and a correctness
check against a plaintext join of the same tables (matched students per department must
agree exactly).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fedid.ids import make_ids
from fedid.matching import MatchingConfig, ReleaseConfig, match_in_process
from fedid.matching.incremental import GreenChannel
from fedid.schema import Indicator, Schema, load_schema
from privacy._pool import shutdown_pool

__all__ = ["build_tables", "main"]

_COUNTIES = np.array([110105, 110108, 310104, 320722, 321323, 330521, 330681, 370724,
                      411422, 420106, 440524, 510104, 520525, 610102, 621121, 650102])


def _unique_ids(rng: np.random.Generator, n: int, *, year0: int, years: int) -> np.ndarray:
    out = np.empty(0, dtype="U18")
    while len(out) < n:
        m = int((n - len(out)) * 1.1) + 16
        dates = np.datetime64(f"{year0}-01-01") + rng.integers(0, 365 * years, m).astype(
            "timedelta64[D]")
        ids = make_ids(address_codes=rng.choice(_COUNTIES, m), birth_dates=dates,
                       sequences=rng.integers(0, 996, m))
        out = np.unique(np.concatenate([out, ids]))
    return rng.permutation(out)[:n]


def _values(rng: np.random.Generator, ind: Indicator, n: int) -> pd.Series:
    null = rng.random(n) < 0.1
    if ind.type == "bool":
        s = pd.Series(rng.random(n) < 0.3, dtype="boolean")
    elif ind.type == "category":
        s = pd.Series(np.asarray(ind.categories, dtype=object)[
            rng.integers(0, len(ind.categories), n)], dtype="string")
    elif ind.type == "float":
        s = pd.Series(np.round(rng.gamma(2.0, 3000.0, n), 2).clip(0, float(ind.max or 0)),
                      dtype="Float64")
    else:
        s = pd.Series(rng.integers(int(ind.min or 0), int(ind.max or 0) + 1, n), dtype="Int64")
    s[null] = pd.NA
    return s


def build_tables(
    schema: Schema, *, students: int, records: int, overlap: float, seed: int,
    legacy_share: float = 0.05,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One education table and one table per evidence department (synthetic, fast)."""
    rng = np.random.default_rng(seed)
    kids = _unique_ids(rng, students, year0=2000, years=18)
    adults = _unique_ids(rng, int(students * 1.6), year0=1960, years=25)
    households = rng.integers(0, int(students * 0.85), students)  # siblings share guardians
    g1 = adults[households]
    second = adults[students + households % (len(adults) - students)].astype(object)
    second[rng.random(students) >= 0.75] = None
    g2 = second
    home = pd.DataFrame({
        "student_id": kids, "guardian1_id": g1,
        "guardian2_id": pd.Series(g2, dtype="string"),
        "applied": pd.Series(rng.random(students) < 0.2, dtype="boolean"),
        "label_level": np.where(rng.random(students) < 0.15, "general", "none"),
    })
    outsiders = _unique_ids(rng, records * 2, year0=1940, years=30)
    outsiders = outsiders[~np.isin(outsiders, adults)]
    deps: dict[str, pd.DataFrame] = {}
    for dep in schema.evidence_departments:
        fields = schema.source_fields(dep)
        if not fields:
            continue
        keyed = {i.keyed_by for i in schema.owned_by(dep)}
        pool = np.concatenate([kids if "student" in keyed else kids[:0],
                               adults if "guardian" in keyed else adults[:0]])
        ours = rng.choice(pool, int(records * overlap), replace=False)
        theirs = rng.choice(outsiders, records - len(ours), replace=False)
        pid = np.concatenate([ours, theirs]).astype(object)
        legacy = (rng.random(len(pid)) < legacy_share) & np.array(
            [p[6:8] == "19" for p in pid])
        pid[legacy] = [p[:6] + p[8:17] for p in pid[legacy]]
        frame = pd.DataFrame({"person_id": pd.Series(pid, dtype="string")})
        for ind in fields:
            frame[ind.source_field] = _values(rng, ind, len(pid))
        deps[dep] = frame
    return home, deps


def _expected_matches(home: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    from fedid.ids import to_canonical

    sid = home["student_id"].to_numpy(dtype=str)
    g1 = home["guardian1_id"].to_numpy(dtype=str)
    g2 = home["guardian2_id"].fillna("").to_numpy(dtype=str)
    out = {}
    for dep, t in deps.items():
        ids = to_canonical(t["person_id"].to_numpy())
        hit = np.isin(sid, ids) | np.isin(g1, ids) | np.isin(g2, ids)
        out[dep] = int(hit.sum())
    return out


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--students", type=int, default=1_000_000)
    ap.add_argument("--records", type=int, default=None,
                    help="records per department (default: 200,000 at 1M students, scaled)")
    ap.add_argument("--overlap", type=float, default=0.5,
                    help="share of department records that are the home agency's people")
    ap.add_argument("--key-bits", type=int, default=3072)
    ap.add_argument("--evidence-keys", choices=["shared", "per_department"], default="shared")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-auth", action="store_true",
                    help="unsigned messages (measures what authentication costs)")
    args = ap.parse_args(argv)
    records = args.records or max(100, args.students // 5)
    schema = load_schema()
    t0 = time.perf_counter()
    home, deps = build_tables(schema, students=args.students, records=records,
                              overlap=args.overlap, seed=args.seed)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    cpu0 = _cpu_seconds()
    res = match_in_process(schema=schema, homes={"home": home}, departments=deps,
                           config=MatchingConfig(paillier_bits=args.key_bits,
                                             evidence_keys=args.evidence_keys,
                                             release=ReleaseConfig(min_cell=0),
                                             authenticate=not args.no_auth))
    wall = time.perf_counter() - t1
    channel = GreenChannel(res.groups[0], schema=schema)
    green = {str(n): round(channel.resolve("home", home.iloc[:n]).latency_s, 3)
             for n in (1, 10, 100)}
    shutdown_pool()  # so the workers' peak memory and CPU are counted in RUSAGE_CHILDREN
    cpu = _cpu_seconds() - cpu0  # includes the green-channel batches (a few seconds)
    expected = _expected_matches(home, deps)
    got = {k.split(":", 1)[1]: v for k, v in res.released["home"].items()
           if k.startswith("matched_students:")}
    by_party = res.bytes_received
    figures: dict[str, object] = {
        "benchmark": "matching",
        "students": args.students,
        "home_keys": res.views[0].home_sizes.get("home:home", 0),
        "departments": len(deps),
        "records_per_department": records,
        "overlap": args.overlap,
        "key_bits": args.key_bits,
        "evidence_keys": args.evidence_keys,
        "authenticated": not args.no_auth,
        "matching_wall_s": round(wall, 1),
        "matching_cpu_s": round(cpu, 1),
        "data_generation_s": round(t_data, 1),
        "green_channel_latency_s": green,
        "phases_s": {k: round(v, 1) for k, v in sorted(res.timings.items())},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_workers_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "bytes_received": {
            "home": by_party.get("home:home", 0),
            "coordinator": by_party.get("coordinator", 0),
            "evidence_each_max": max(v for k, v in by_party.items() if k.startswith("evidence:")),
        },
        "matched_students_check": "ok" if got == expected else "MISMATCH",
        "target_s": 1200,
        "machine": "2 cores shared with other jobs",
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()

"""Crypto core benchmark: Paillier (ours vs phe), packing, both blinding backends, PSI.

``python -m simulations.bench.crypto [--quick]`` prints one JSON line. In one run, on the
same keys and plaintexts:

* Paillier at 2048 and 3072 bits: encryptions/s of ``PaillierPublicKey.encrypt_ints``
  (DJN fixed-base, process pool; the table build is timed apart as a one-off per key)
  against phe 1.5's default ``PaillierPublicKey.encrypt``, and decryptions/s of
  ``decrypt_ints`` (CRT, pool) against phe's ``decrypt`` on the same ciphertexts.
  Rates are per wall-clock second on this machine's cores; ``*_1core`` figures run the
  same code inline on one core, and ``*_per_cpu_s`` / ``*_ratio_cpu_1core`` divide by this
  process's CPU time instead of wall time (robust when other jobs share the cores).
  Ours and phe alternate in rounds; medians are reported.
* packed values encrypted and decrypted per second (3072 bits, 32-bit slots).
* hash-and-blind and re-blind operations per second, and CPU microseconds per operation
  on one core, for both blinding backends: ristretto255 (:mod:`privacy.blinding`, unprefixed
  keys) and X25519 with an Elligator 2 hash (:mod:`privacy.blinding_x25519`, ``x25519_``).
* a plain two-party DH PSI on each blinding backend (both sides hash and blind, exchange
  bytes, re-blind the other's points, intersect) against openmined-psi 2.0 (client/server,
  exact RAW setup) on the same two sets of IDs with half in common, in one run: records
  (both sets) per CPU-second, counting this process's CPU and that of pool workers (started
  inside the measured span and shut down before it ends, so ``RUSAGE_CHILDREN`` includes
  them). ``psi_x25519_*`` and ``psi_ristretto255_*`` per backend; ``psi_ratio`` is the
  product path, the backend matching uses by default (X25519).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from phe import paillier as phe_paillier

from fedid.matching.protocol import DEFAULT_BLINDING
from privacy import _pool, blinding, blinding_x25519
from privacy.packing import SlotLayout
from privacy.paillier import generate_paillier_keypair

Json = dict[str, Any]


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _timed_cpu(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, this process's CPU s): for work that runs in this process only."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def _phe_decrypt_all(key: phe_paillier.PaillierPrivateKey,
                     numbers: list[phe_paillier.EncryptedNumber]) -> list[int]:
    return [key.decrypt(x) for x in numbers]


@contextlib.contextmanager
def _one_core() -> Iterator[None]:
    """Run the public API inline on one core (``FEDID_CRYPTO_WORKERS=1``)."""
    old = os.environ.get("FEDID_CRYPTO_WORKERS")
    os.environ["FEDID_CRYPTO_WORKERS"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FEDID_CRYPTO_WORKERS"]
        else:
            os.environ["FEDID_CRYPTO_WORKERS"] = old


def bench_paillier(bits: int, *, count: int, phe_count: int, rounds: int,
                   rng: random.Random) -> Json:
    """Ours vs phe at one key size, same key and plaintexts, alternating in ``rounds``.

    Each round times, back to back: our pooled and one-core encryption, phe's, our pooled
    and one-core decryption, phe's (on our ciphertexts). Medians over rounds are reported,
    so a load spike on the shared machine hits one round of each rather than one side.
    """
    public, private = generate_paillier_keypair(n_length=bits)
    phe_public, phe_private = public.to_phe(), private.to_phe()
    values = [rng.getrandbits(64) for _ in range(count)]
    few = values[:phe_count]
    _, table_s = _timed(public.precompute)  # tables here and in every pool worker
    keys = ("enc", "enc1", "phe_enc", "dec", "dec1", "phe_dec", "enc1_cpu", "phe_enc_cpu",
            "dec1_cpu", "phe_dec_cpu")
    rates: dict[str, list[float]] = {k: [] for k in keys}
    ok = True
    for _ in range(rounds):
        cts, t = _timed(lambda: public.encrypt_ints(values))
        rates["enc"].append(count / t)
        with _one_core():
            _, t, c = _timed_cpu(lambda: public.encrypt_ints(few))
        rates["enc1"].append(phe_count / t)
        rates["enc1_cpu"].append(phe_count / c)
        phe_numbers, t, c = _timed_cpu(lambda: [phe_public.encrypt(v) for v in few])
        rates["phe_enc"].append(phe_count / t)
        rates["phe_enc_cpu"].append(phe_count / c)
        plain, t = _timed(functools.partial(private.decrypt_ints, cts))
        rates["dec"].append(count / t)
        with _one_core():
            _, t, c = _timed_cpu(functools.partial(private.decrypt_ints, cts[:phe_count]))
        rates["dec1"].append(phe_count / t)
        rates["dec1_cpu"].append(phe_count / c)
        ours_as_phe = [phe_paillier.EncryptedNumber(phe_public, c, 0) for c in cts[:phe_count]]
        phe_plain, t, c = _timed_cpu(functools.partial(_phe_decrypt_all, phe_private,
                                                       ours_as_phe))
        rates["phe_dec"].append(phe_count / t)
        rates["phe_dec_cpu"].append(phe_count / c)
        ok = ok and plain == values and phe_plain == few and private.decrypt_ints(
            [x.ciphertext() for x in phe_numbers]) == few
    med = {k: statistics.median(v) for k, v in rates.items()}
    pre = f"paillier{bits}_"
    return {
        pre + "enc_per_s": round(med["enc"], 1),
        pre + "enc_per_s_1core": round(med["enc1"], 1),
        pre + "phe_enc_per_s": round(med["phe_enc"], 2),
        pre + "enc_ratio": round(med["enc"] / med["phe_enc"], 2),
        pre + "enc_per_cpu_s_1core": round(med["enc1_cpu"], 1),
        pre + "phe_enc_per_cpu_s": round(med["phe_enc_cpu"], 2),
        pre + "enc_ratio_cpu_1core": round(med["enc1_cpu"] / med["phe_enc_cpu"], 2),
        pre + "dec_per_s": round(med["dec"], 1),
        pre + "dec_per_s_1core": round(med["dec1"], 1),
        pre + "phe_dec_per_s": round(med["phe_dec"], 1),
        pre + "dec_ratio": round(med["dec"] / med["phe_dec"], 2),
        pre + "dec_per_cpu_s_1core": round(med["dec1_cpu"], 1),
        pre + "phe_dec_per_cpu_s": round(med["phe_dec_cpu"], 1),
        pre + "dec_ratio_cpu_1core": round(med["dec1_cpu"] / med["phe_dec_cpu"], 2),
        pre + "table_build_s": round(table_s, 3),
        pre + "round_trip_ok": ok,
        pre + "counts_ours_phe_rounds": [count, phe_count, rounds],
    }


def bench_packing(*, count: int, rng: random.Random) -> Json:
    """Packed 32-bit values (sums of up to 1024 terms) encrypted and decrypted per second."""
    public, private = generate_paillier_keypair(n_length=3072)
    slots = SlotLayout.max_slots(slot_bits=32, max_terms=1024, n_bits=public.bits)
    layout = SlotLayout(slot_bits=32, slots=slots, max_terms=1024)
    rows = [[rng.getrandbits(32) for _ in range(slots)] for _ in range(count)]
    public.precompute()
    start = time.perf_counter()
    cts = public.encrypt_ints(layout.pack_many(rows))
    back = layout.unpack_many(private.decrypt_ints(cts))
    elapsed = time.perf_counter() - start
    return {
        "packed_slots_per_ciphertext": slots,
        "packed_values_enc_dec_per_s": round(count * slots / elapsed, 1),
        "packed_round_trip_ok": back == rows,
    }


def _ids(count: int, rng: random.Random) -> tuple[list[str], list[str]]:
    universe = [f"{rng.getrandbits(60):018d}" for _ in range(count + count // 2)]
    left = universe[:count]
    right = universe[count // 2 :]
    rng.shuffle(right)
    return left, right


def _split(data: bytes) -> list[bytes]:
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def psi_ours(left: list[str], right: list[str], *,
             backend: ModuleType = blinding) -> tuple[set[str], float]:
    """DH PSI on one blinding backend; left learns the intersection. (result, CPU s)."""
    _pool.shutdown_pool()
    cpu0 = _cpu()
    domain = backend.make_domain(protocol="bench.psi", run_id=b"run")
    a, b = backend.BlindingKey.generate(), backend.BlindingKey.generate()
    msg_a = b"".join(a.hash_and_blind([x.encode() for x in left], domain=domain))
    msg_b = b"".join(b.hash_and_blind([x.encode() for x in right], domain=domain))
    msg_ab = b"".join(b.blind(_split(msg_a)))  # right re-blinds left's points, order kept
    ba = set(a.blind(_split(msg_b)))  # left re-blinds right's points
    result = {x for x, t in zip(left, _split(msg_ab), strict=True) if t in ba}
    _pool.shutdown_pool()
    return result, _cpu() - cpu0


def psi_openmined(left: list[str], right: list[str]) -> tuple[set[str], float]:
    """openmined-psi client (left) and server (right), RAW setup (exact)."""
    import private_set_intersection.python as psi

    cpu0 = _cpu()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    request = psi.Request()
    request.ParseFromString(client.CreateRequest(left).SerializeToString())
    setup = psi.ServerSetup()
    setup.ParseFromString(server.CreateSetupMessage(
        0.0, len(left), right, psi.DataStructure.RAW).SerializeToString())
    response = psi.Response()
    response.ParseFromString(server.ProcessRequest(request).SerializeToString())
    result = {left[i] for i in client.GetIntersection(setup, response)}
    return result, _cpu() - cpu0


def bench_blinding_ops(*, backend: ModuleType, left: list[str], prefix: str) -> Json:
    """Hash-and-blind and re-blind rates (pool, wall) and CPU us per op (inline, one core)."""
    domain = backend.make_domain(protocol="bench.blind", run_id=b"run")
    key = backend.BlindingKey.generate()
    encoded = [x.encode() for x in left]
    key.hash_and_blind(encoded[:2000], domain=domain)  # start the pool
    points, hb_s = _timed(lambda: key.hash_and_blind(encoded, domain=domain))
    other = backend.BlindingKey.generate()
    _, rb_s = _timed(lambda: other.blind(points))
    few, few_points = encoded[: len(left) // 10], points[: len(left) // 10]
    with _one_core():
        _, hb1_s, hb1_cpu = _timed_cpu(lambda: key.hash_and_blind(few, domain=domain))
        _, _, rb1_cpu = _timed_cpu(lambda: other.blind(few_points))
    return {
        prefix + "hash_and_blind_per_s": round(len(left) / hb_s, 1),
        prefix + "hash_and_blind_per_s_1core": round(len(few) / hb1_s, 1),
        prefix + "reblind_per_s": round(len(left) / rb_s, 1),
        prefix + "hash_and_blind_cpu_us_1core": round(hb1_cpu / len(few) * 1e6, 2),
        prefix + "reblind_cpu_us_1core": round(rb1_cpu / len(few) * 1e6, 2),
    }


def bench_blinding(*, count: int, rng: random.Random) -> Json:
    """Blinding rates of both backends and the PSI comparison, on the same ID sets.

    ``psi_ratio`` is the product path: the backend matching uses by default
    (:data:`fedid.matching.protocol.DEFAULT_BLINDING`).
    """
    left, right = _ids(count, rng)
    out = bench_blinding_ops(backend=blinding, left=left, prefix="")
    out |= bench_blinding_ops(backend=blinding_x25519, left=left, prefix="x25519_")
    truth = set(left) & set(right)
    runs = {"ristretto255": psi_ours(left, right, backend=blinding)}
    theirs, theirs_cpu = psi_openmined(left, right)
    runs["x25519"] = psi_ours(left, right, backend=blinding_x25519)
    records = len(left) + len(right)
    out |= {"psi_set_sizes": [len(left), len(right)], "psi_intersection_size": len(truth),
            "psi_openmined_cpu_s": round(theirs_cpu, 2),
            "psi_openmined_records_per_cpu_s": round(records / theirs_cpu, 1),
            "psi_product_backend": DEFAULT_BLINDING}
    for name, (found, cpu) in runs.items():
        out |= {f"psi_{name}_intersections_identical": found == theirs == truth,
                f"psi_{name}_cpu_s": round(cpu, 2),
                f"psi_{name}_records_per_cpu_s": round(records / cpu, 1),
                f"psi_{name}_ratio": round(theirs_cpu / cpu, 3)}
    out["psi_ratio"] = out[f"psi_{DEFAULT_BLINDING}_ratio"]
    return out


def main(argv: list[str] | None = None) -> Json:
    """Run every section and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--psi-only", action="store_true",
                        help="only the blinding and PSI section (skip Paillier and packing)")
    args = parser.parse_args(argv)
    rng = random.Random(20261129)
    quick = args.quick
    out: Json = {"quick": quick, "workers": _pool.worker_count()}
    if args.psi_only:
        out |= bench_blinding(count=10_000 if quick else 100_000, rng=rng)
        _pool.shutdown_pool()
        print(json.dumps(out, sort_keys=True))
        return out
    rounds = 2 if quick else 3
    out |= bench_paillier(2048, count=200 if quick else 600, phe_count=40 if quick else 120,
                          rounds=rounds, rng=rng)
    out |= bench_paillier(3072, count=100 if quick else 300, phe_count=20 if quick else 40,
                          rounds=rounds, rng=rng)
    out |= bench_packing(count=50 if quick else 200, rng=rng)
    out |= bench_blinding(count=10_000 if quick else 100_000, rng=rng)
    _pool.shutdown_pool()
    print(json.dumps(out, sort_keys=True))
    return out


if __name__ == "__main__":
    main()

"""Cost of DP-SGD: time per epoch of the DP training loop versus a plain PyTorch loop.

    python -m simulations.bench.dp_cost [--n 12000] [--batch-size 2048] [--epochs 11]

Same model (:class:`fedid.model.HardshipNet` with the default hidden layer, the default
schema's 71 inputs), same loss,
same data (random tensors of the default province's shape: the cost does not depend on the
values), same batch size. The plain loop slices shuffled minibatches from tensors (no
DataLoader) with Adam. The DP loop is :func:`privacy.dp.dp_train` (Poisson sampling from
tensors, Opacus per-sample clipping and noise, accountant hook) in each ``grad_sample_mode``.
Each variant uses ``--threads`` torch threads (default 1: on a shared machine idle OpenMP
threads spin and inflate CPU time). Wall and process CPU time are both recorded (CPU time
is the fairer figure on a shared machine). Per-epoch time is
``(t(E epochs) - t(1 epoch)) / (E - 1)``, so the fixed cost of a call (budget check, two
epsilon computations, wrapping) is reported separately. The timing runs use the RDP
accountant: a PRV epsilon computation takes longer for more steps (0.1-0.3 s), which the
difference would otherwise charge to the training loop. Each variant
runs in its own process to record its peak resident memory. Prints one JSON line with the
ratio DP / plain per mode (target <= 3, stretch 2).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fedid.model import HardshipNet, TrainConfig, feature_layout, per_sample_loss
from fedid.schema import load_schema
from privacy.dp import GRAD_SAMPLE_MODES, Accountant, DPSGDConfig, PrivacyBudget, dp_train

__all__ = ["main", "measure"]


def _data(n: int) -> tuple[list[torch.Tensor], int, int, int]:
    schema = load_schema()
    width = feature_layout(schema).width
    k, f = len(schema.levels.names), len(schema.dimension_flags)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, width, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    flags = (torch.rand(n, f, generator=g) < 0.2).float()
    return [x, y, flags], width, k, f


def _plain_epochs(
    tensors: Sequence[torch.Tensor], net: nn.Module, *, k: int, b: int, e: int
) -> None:
    x, y, f = tensors
    n = int(x.shape[0])
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(e):
        perm = torch.randperm(n)
        for start in range(0, n, b):
            idx = perm[start : start + b]
            opt.zero_grad()
            per_sample_loss(net(x[idx]), y[idx], f[idx], n_levels=k).mean().backward()  # type: ignore[no-untyped-call]
            opt.step()


def measure(mode: str, *, n: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """Per-epoch seconds and fixed per-call seconds of one variant in this process."""
    tensors, width, k, nf = _data(n)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def build() -> nn.Module:
        return HardshipNet(width, k, nf, TrainConfig().hidden)

    def run(e: int) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        if mode == "plain":
            _plain_epochs(tensors, build(), k=k, b=batch_size, e=e)
        else:
            dp_train(
                build_module=build,
                state_dict=None,
                tensors=tensors,
                per_sample_loss=lambda m, bt: per_sample_loss(m(bt[0]), bt[1], bt[2], n_levels=k),
                config=DPSGDConfig(
                    noise_multiplier=1.0, batch_size=batch_size, epochs=e, grad_sample_mode=mode,
                    accountant="rdp",
                ),
                budget=PrivacyBudget(epsilon=1e6, delta=1e-5),
                accountant=Accountant(kind="rdp"),
                seed=0,
            )
        return time.perf_counter() - t, time.process_time() - c

    run(1)  # warm-up
    ones = [run(1) for _ in range(2)]
    one = min(w for w, _ in ones)
    one_cpu = min(c for _, c in ones)
    many, many_cpu = run(epochs)
    per_epoch = (many - one) / (epochs - 1)
    per_epoch_cpu = (many_cpu - one_cpu) / (epochs - 1)
    return {
        "mode": mode,
        "per_epoch_s": per_epoch,
        "per_epoch_cpu_s": per_epoch_cpu,
        "fixed_per_call_s": max(one - per_epoch, 0.0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    """Run every variant in a subprocess; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        torch.set_num_threads(args.threads)
        print(
            json.dumps(measure(args.one, n=args.n, batch_size=args.batch_size, epochs=args.epochs))
        )
        return
    rows = {}
    for mode in ("plain", *GRAD_SAMPLE_MODES):
        proc = subprocess.run(  # noqa: S603 (our own module, fixed arguments)
            [
                sys.executable,
                "-m",
                "simulations.bench.dp_cost",
                "--one",
                mode,
                "--n",
                str(args.n),
                "--batch-size",
                str(args.batch_size),
                "--epochs",
                str(args.epochs),
                "--threads",
                str(args.threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    plain = rows["plain"]["per_epoch_s"]
    plain_cpu = rows["plain"]["per_epoch_cpu_s"]
    out = {
        "n": args.n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "per_epoch_s": {m: r["per_epoch_s"] for m, r in rows.items()},
        "ratio_vs_plain": {m: r["per_epoch_s"] / plain for m, r in rows.items() if m != "plain"},
        "per_epoch_cpu_s": {m: r["per_epoch_cpu_s"] for m, r in rows.items()},
        "cpu_ratio_vs_plain": {
            m: r["per_epoch_cpu_s"] / plain_cpu for m, r in rows.items() if m != "plain"
        },
        "fixed_per_call_s": {m: r["fixed_per_call_s"] for m, r in rows.items() if m != "plain"},
        "peak_rss_mb": {m: r["peak_rss_mb"] for m, r in rows.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Known-broken DP-SGD, injected in-process by the audit harness only (never by a node).

A node's configuration cannot reach any of this: the modes exist so that the audit can show
it catches them. Each mode wraps the optimizer factory the trainer uses
(``privacy.dp.trainer.get_optimizer_class``) for the duration of a ``with`` block, leaving
the accountant untouched, so the node still CLAIMS the epsilon it would have spent:

- ``noise_off``: the Gaussian noise is not added (the accountant still counts it);
- ``known_seed``: the noise comes from a generator seeded with a value the coordinator
  chose (as if a round seed from a message seeded the node's noise); the coordinator can
  replay the noise (:func:`replay_noise`) and subtract it;
- ``clip_off``: per-sample gradients are not clipped (the noise is still scaled to the
  clipping bound the accountant assumes).

A fourth broken configuration, an exact release outside the budget, is a change of what
the node sends, not of DP-SGD: :mod:`simulations.audit_release` injects it.

:class:`Injection` counts the optimizers it built; the harness refuses a broken run in
which the wrapper never took effect (the trainer no longer builds its optimizer there), so
a silent no-op cannot pass for "caught".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import torch

from fedid.errors import ConfigError

__all__ = ["BROKEN_MODES", "Injection", "inject", "replay_noise"]

BROKEN_MODES: Final = ("noise_off", "known_seed", "clip_off")
_FACTORY: Final = "get_optimizer_class"  # the name the trainer builds its optimizer through
_NOISE: Final = "noise_multiplier"
_CLIP: Final = "max_grad_norm"


@dataclass(slots=True)
class Injection:
    """What one ``with inject(...)`` block did."""

    mode: str
    optimizers_built: int = 0
    seeds: list[int] = field(default_factory=list)


def _subclass(base: type[Any], mode: str, seed: int | None, record: Injection) -> type[Any]:
    class Broken(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            record.optimizers_built += 1
            if mode == "known_seed":
                if seed is None:
                    raise ConfigError("known_seed needs the coordinator's seed. Got None.")
                self.generator = torch.Generator().manual_seed(seed)
                self.secure_mode = False
                record.seeds.append(seed)

        def add_noise(self) -> None:
            if mode != "noise_off":
                super().add_noise()
                return
            saved = getattr(self, _NOISE)
            setattr(self, _NOISE, 0.0)
            try:
                super().add_noise()
            finally:
                setattr(self, _NOISE, saved)  # the accountant's hook reads it after this

        def clip_and_accumulate(self) -> None:
            if mode != "clip_off":
                super().clip_and_accumulate()
                return
            saved = getattr(self, _CLIP)
            setattr(self, _CLIP, float("inf"))  # clip factor min(1, inf / norm) = 1
            try:
                super().clip_and_accumulate()
            finally:
                setattr(self, _CLIP, saved)  # noise stays scaled to the claimed bound

    Broken.__name__ = f"{mode}_{base.__name__}"
    return Broken


@contextlib.contextmanager
def inject(mode: str, *, seed: int | None = None) -> Iterator[Injection]:
    """Run the block with DP-SGD broken as ``mode`` (one of :data:`BROKEN_MODES`)."""
    if mode not in BROKEN_MODES:
        raise ConfigError(f"broken mode must be one of {BROKEN_MODES}. Got {mode!r}.")
    from opacus.grad_sample import grad_sample_module_fast_gradient_clipping as ghost

    import privacy.dp.trainer as trainer

    record = Injection(mode=mode)
    real_factory: Callable[..., type[Any]] = getattr(trainer, _FACTORY)
    real_coef = ghost.GradSampleModuleFastGradientClipping.get_clipping_coef

    def factory(*args: Any, **kwargs: Any) -> type[Any]:
        return _subclass(real_factory(*args, **kwargs), mode, seed, record)

    def no_clip(self: Any) -> torch.Tensor:
        # ghost clipping scales each record's loss by this coefficient before the backward
        return torch.ones_like(real_coef(self))

    ghost_class = ghost.GradSampleModuleFastGradientClipping
    setattr(trainer, _FACTORY, factory)
    if mode == "clip_off":
        ghost_class.get_clipping_coef = no_clip
    try:
        yield record
    finally:
        setattr(trainer, _FACTORY, real_factory)
        ghost_class.get_clipping_coef = real_coef


def replay_noise(
    *, seed: int, std: float, shapes: Sequence[tuple[int, ...]], steps: int, index: int
) -> torch.Tensor:
    """The coordinator's copy of the noise a ``known_seed`` node added to parameter ``index``.

    Opacus draws one normal tensor per parameter, in parameter order, every step (empty
    batches included); ``shapes`` are the parameters' shapes in that order. Returns a tensor
    of shape ``[steps, *shapes[index]]``.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        for i, shape in enumerate(shapes):
            z = torch.normal(mean=0.0, std=std, size=shape, generator=gen)
            if i == index:
                out.append(z)
    return torch.stack(out)

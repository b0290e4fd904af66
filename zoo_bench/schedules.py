"""Learning-rate schedules of a training phase: one definition of the factor, applied by each backend.

A schedule multiplies a phase's learning rate by a factor per epoch (both backends change the rate
between epochs: torch through ``LambdaLR``, Keras through ``LearningRateScheduler``):

- ``warmup_epochs`` first: the factor rises linearly, ``(e + 1) / (warmup_epochs + 1)`` in epoch ``e``;
- then ``constant`` (1), ``step`` (times ``gamma`` every ``step_epochs`` epochs) or ``cosine``
  (half a cosine from 1 towards 0 over the remaining epochs, ``0.5 (1 + cos(pi t / T))`` at epoch
  ``t`` of ``T``, so the last epoch still learns).

Layer-wise learning-rate decay (``layer_decay``) is part of the phase's optimiser too: the head keeps
the rate, the top block of the base gets ``rate * d``, the next ``rate * d**2`` and so on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """The per-epoch learning-rate factor of one phase."""

    name: str = "constant"
    warmup_epochs: int = 0
    step_epochs: int = 10
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r} (allowed: {', '.join(SCHEDULES)})")
        if self.warmup_epochs < 0 or self.step_epochs < 1 or not 0.0 < self.gamma <= 1.0:
            raise ValueError("warmup_epochs >= 0, step_epochs >= 1 and 0 < gamma <= 1")

    @property
    def constant(self) -> bool:
        return self.name == "constant" and self.warmup_epochs == 0

    def factor(self, epoch: int, epochs: int) -> float:
        """The factor of epoch ``epoch`` (0-based) of a phase of ``epochs`` epochs."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        t = epoch - self.warmup_epochs
        if self.name == "step":
            return self.gamma ** (t // self.step_epochs)
        if self.name == "cosine":
            span = max(epochs - self.warmup_epochs, 1)
            return 0.5 * (1.0 + math.cos(math.pi * t / span))
        return 1.0

    def describe(self) -> str:
        """``cosine, warm-up 2`` or ``step 10 x0.1`` (``constant`` when off), for rows and tables."""
        text = {"step": f"step {self.step_epochs} x{self.gamma:g}"}.get(self.name, self.name)
        return text + (f", warm-up {self.warmup_epochs}" if self.warmup_epochs else "")


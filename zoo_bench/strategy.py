"""Strategies: ways of transferring a backbone, written once for every backend."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .backend import EpochStats

if TYPE_CHECKING:
    from .context import TrialContext


@dataclass
class Outcome:
    """What a strategy hands back; the runner turns it into a result row.

    Predictions rather than accuracies, so every strategy is scored by the same code.
    """

    test_pred: np.ndarray
    val_pred: np.ndarray | None = None
    epochs: list[EpochStats] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    train_time_s: float | None = None  # for strategies without epochs (svm): seconds to fit


class Strategy(ABC):
    """A transfer strategy.

    Class attributes:
        name: the suite name (``[strategies.NAME]``).
        params: parameter names and their defaults; the default's type is the parameter's type.
            A suite that gives a list where the default is a scalar sweeps the parameter.
        pretrained: whether the base starts from pretrained weights.
        description: one line for ``zoo-bench plugins``.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    pretrained: ClassVar[bool] = True
    description: ClassVar[str] = ""

    @abstractmethod
    def run(self, ctx: "TrialContext", params: dict[str, Any]) -> Outcome:
        """Train and predict for one trial, using only ``ctx`` and its backend."""

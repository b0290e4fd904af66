"""Strategies: ways of transferring a backbone, written once for every backend."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .backend import EpochStats
from .params import Param, param_specs

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
    test_scores: np.ndarray | None = None  # class scores (logits; the SVM's decision values), (N, C)
    val_scores: np.ndarray | None = None
    best_epoch: int | None = None  # 1-based, across phases: the best validation epoch
    scores_are_logits: bool = True  # False (an SVM's margins): no cross-entropy loss is computed from them
    model: Any = None  # the trained network, for --save-models (a classifier of pixels, or a head on features)
    model_input: str = "pixels"  # "features": ``model`` is a head on the frozen base's pooled features
    linear: dict[str, np.ndarray] | None = None  # a linear map on standardised features: mean, scale, coef, intercept


class Strategy(ABC):
    """A transfer strategy.

    Class attributes:
        name: the suite name (``[strategies.NAME]``).
        params: parameter names and their defaults (plain values, or :class:`zoo_bench.params.Param`
            with ranges or choices); the default's type is the parameter's type. A suite that gives a
            list where the default is a scalar sweeps the parameter.
        search_space: the values ``[select] search = "default"`` tries for each tuned parameter.
        renamed_params: old parameter name -> today's, so rows and baselines written with the old
            name still match (a suite using an old name is told the new one).
        sweep_params: parameters that only change what is trained on cached features; trials of a cell
            that differ only in these form a sweep and may be trained together
            (:meth:`zoo_bench.TrialContext.train_heads`, :meth:`zoo_bench.TrialContext.sweep_together`).
        pretrained: whether the base starts from pretrained weights.
        on_features: trains only on cached bottleneck features, so refitting it is cheap: ``[select] folds``
            cross-validates these (others only with ``fold_pixels``).
        simpler: parameter -> "low" or "high", the direction that makes a configuration simpler (stronger
            regularisation, smoother decision): what ``[select] one_se`` prefers, in this order.
        val_predictions: whether ``run`` predicts the validation images (``Outcome.val_pred``). Selection on
            validation needs them: ``validate`` refuses to tune a strategy that declares False, and a
            tuned trial whose strategy returns none fails.
        description: one line for ``zoo-bench plugins``.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    search_space: ClassVar[dict[str, list[Any]]] = {}
    renamed_params: ClassVar[dict[str, str]] = {}
    sweep_params: ClassVar[tuple[str, ...]] = ()
    pretrained: ClassVar[bool] = True
    on_features: ClassVar[bool] = False
    simpler: ClassVar[dict[str, str]] = {}
    val_predictions: ClassVar[bool] = True
    description: ClassVar[str] = ""

    @classmethod
    def param_specs(cls) -> dict[str, "Param"]:
        """Every parameter as a :class:`~zoo_bench.params.Param` (plain defaults accept any value of their type)."""
        return param_specs(cls.params)

    @classmethod
    def check(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems between parameters of one configuration (every key present): (key, message) pairs.

        Called by ``validate`` for each combination a suite sweeps; per-key ranges are the schema's job.
        """
        return []

    @classmethod
    def inapplicable(cls, params: dict[str, Any], train_images: int) -> str | None:
        """Why a configuration has no meaning at a size of the data set (``train_images`` training images
        after the validation split), or None. Such trials are not run; the run says so in one line each."""
        return None

    @abstractmethod
    def run(self, ctx: "TrialContext", params: dict[str, Any]) -> Outcome:
        """Train and predict for one trial, using only ``ctx`` and its backend."""

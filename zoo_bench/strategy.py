"""Strategies: ways of transferring a backbone, written once for every backend."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .augment import Augment
from .backend import EpochStats, HeadSpec
from .params import Param, param_specs

if TYPE_CHECKING:
    from .context import TrialContext


@dataclass
class Outcome:
    """What a strategy hands back; the runner turns it into a result row.

    Predictions rather than accuracies, so every strategy is scored by the same code. The runner checks
    each Outcome when ``run`` returns (:func:`zoo_bench.outcome_rules.outcome_problems`); one that breaks
    a rule fails its trial with one line naming the strategy and its plugin.

    Fields:
        test_pred: one class index (an integer in 0..classes-1) per test image, in ``ctx.test`` order.
        val_pred: the same for ``ctx.val``; required when the suite tunes the strategy on validation
            images (``[select]``), unless the strategy declares ``val_predictions = False``. None otherwise.
        epochs: one :class:`EpochStats` per epoch trained, across phases (empty for a closed-form fit).
        trainable_params, total_params: parameter counts of what was trained and of the whole model
            (trainable <= total); the tables' cost columns read them.
        train_time_s: seconds to fit, for strategies without epochs (svm); None where epochs say it.
        test_scores: class scores per test image, shape (N, classes), floats without NaN (-inf allowed);
            they give ROC AUC and, when logits, the test loss. None: no scores.
        val_scores: the same for the validation images.
        best_epoch: the 1-based epoch (across phases) whose weights were kept by ``restore_best``.
        scores_are_logits: True when the scores are logits (softmax gives probabilities): validation loss
            is computed from them and breaks ties between configurations of equal validation accuracy.
            False (an SVM's margins): no loss, so ``[select]`` ties fall to the trial id instead.
        model: the trained network, for ``--save-models`` (a classifier of pixels, or a head on features).
        model_input: "pixels", or "features" when ``model`` is a head on the frozen base's pooled features.
        linear: a linear map on standardised features (mean, scale, coef, intercept), saved in place of a
            network by the linear probes.
    """

    test_pred: np.ndarray
    val_pred: np.ndarray | None = None
    epochs: list[EpochStats] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    train_time_s: float | None = None
    test_scores: np.ndarray | None = None
    val_scores: np.ndarray | None = None
    best_epoch: int | None = None
    scores_are_logits: bool = True
    model: Any = None
    model_input: str = "pixels"
    linear: dict[str, np.ndarray] | None = None


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
        requires: the optional Backend verbs ``run`` cannot do without (``("adapt",)`` for the
            parameter-efficient strategies); on a backend that lacks one, its trials are not run, with a
            line saying so, and ``check_plugin`` skips the strategy there, saying why.
        backbone_families: the :attr:`BackboneSpec.family` values it runs on (``("vit",)`` for ``vpt``);
            empty: any backbone. Its trials on other backbones are not run, with a line saying so, and
            ``check_plugin`` runs it on a small network of the first family it names.
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
    requires: ClassVar[tuple[str, ...]] = ()
    backbone_families: ClassVar[tuple[str, ...]] = ()
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

    @classmethod
    def deployed_extras(cls, params: dict[str, Any]) -> tuple:
        """What this configuration's deployed network runs besides its base and head (VPT's prompts: their
        count and depth), as a key: trials whose keys differ are measured for inference cost apart.
        Empty (the default) for a network that is its base and head once any update is merged."""
        return ()

    @classmethod
    def pooling(cls, params: dict[str, Any]) -> str:
        """How this configuration pools the base's feature map into features (``"avg"``, ``"max"``,
        ``"flatten"``): the feature cache's key and a saved model's pooling. Average unless overridden."""
        return "avg"

    @classmethod
    def head(cls, params: dict[str, Any]) -> HeadSpec | None:
        """The head this configuration puts on the base, for a saved model's description; None for a
        strategy without a network head (a probe's linear map is saved as such)."""
        return None

    @classmethod
    def augmentation(cls, params: dict[str, Any]) -> Augment:
        """What this configuration's training pixels go through (the row's ``augmentation``); nothing
        unless overridden. zoo-bench reads a configuration only through these methods, never by name."""
        return Augment()

    @abstractmethod
    def run(self, ctx: "TrialContext", params: dict[str, Any]) -> Outcome:
        """Train and predict for one trial, using only ``ctx`` and its backend."""

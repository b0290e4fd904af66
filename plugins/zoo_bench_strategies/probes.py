"""Probes on the cached features of the frozen base: ``svm``, ``logreg`` and ``knn``.

A probe trains nothing of the network: it reads the pooled bottleneck features every trial of the
backbone shares, so it runs on every backend. ``preprocess`` says what the features go through first:
``none``, ``l2`` (each row scaled to unit length) or ``standardize`` (each dimension to zero mean and unit
variance over the training images, scikit-learn's ``StandardScaler``). Standardising many dimensions from
few images amplifies the noisy ones, which costs a linear probe points; the transfer protocols
(Kornblith et al. 2019, CLIP, DINOv2) probe the raw features.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo_bench import Outcome, Strategy, TrialContext
from zoo_bench.params import HEAD_PARAMS, Param

PREPROCESSING = ("none", "l2", "standardize")
SVM_C = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
# DINOv2's log_regression.py and the CLIP / Kornblith et al. protocols: C on a log grid from 1e-6 to 1e5,
# 45 values (about 4 a decade), chosen on validation and refit.
LOGREG_C = [float(c) for c in np.logspace(-6, 5, 45)]
KNN_K = [1, 3, 5, 10, 20, 50, 100, 200]  # DINOv2's k-NN evaluation uses 10, 20, 100 and 200


def preprocess_param(default: str, quiet: str | None = None) -> Param:
    return Param(default, choices=PREPROCESSING, quiet=quiet,
                 help="what the features go through before the probe: none, l2 (unit-length rows) or standardize "
                      "(zero mean, unit variance per dimension over the training images)")


@dataclass
class Preprocessor:
    """A fitted preprocessing of feature rows, as the affine map a saved model replays."""

    how: str
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, how: str, x: np.ndarray) -> "Preprocessor":
        if how == "standardize":
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(x)
            return cls(how, scaler.mean_, scaler.scale_)
        if how not in PREPROCESSING:
            raise ValueError(f"preprocess {how!r}: expected one of {', '.join(PREPROCESSING)}")
        return cls(how)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.how == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.how == "standardize":
            return (x - self.mean) / self.scale
        return x

    def linear(self, coef: np.ndarray, intercept: np.ndarray) -> dict[str, np.ndarray]:
        """The saved form of a linear probe behind this preprocessing (``zoo_bench.run.saved_models``)."""
        dim = coef.shape[1]
        return {"l2": np.asarray(self.how == "l2"),
                "mean": self.mean if self.mean is not None else np.zeros(dim),
                "scale": self.scale if self.scale is not None else np.ones(dim),
                "coef": coef, "intercept": intercept}


def frozen_base_params(ctx: TrialContext) -> int:
    """Parameters of the frozen pretrained base the features come from."""
    return ctx.backend.count_params(ctx.feature_cache.frozen_base(ctx.backend, ctx.spec, ctx.image_size))[1]


def linear_outcome(ctx: TrialContext, prep: Preprocessor, coef: np.ndarray, intercept: np.ndarray, fit_s: float,
                   scores_are_logits: bool) -> Outcome:
    """Scores of validation and test images under a linear map on preprocessed features.

    A map with one row (a binary SVM's margin ``d``) scores the two classes ``-d`` and ``d``, as a saved
    model does.
    """
    def scores(part: str) -> np.ndarray:
        d = prep(ctx.features(part)) @ coef.T + intercept
        return np.concatenate([-d, d], axis=1) if d.shape[1] == 1 else d

    val = scores("val") if len(ctx.val.labels) else None
    test = scores("test")
    n = int(coef.size + intercept.size)
    return Outcome(test_pred=test.argmax(axis=1), val_pred=val.argmax(axis=1) if val is not None else None,
                   trainable_params=n, total_params=frozen_base_params(ctx) + n, train_time_s=fit_s,
                   test_scores=test, val_scores=val, scores_are_logits=scores_are_logits, model_input="features",
                   linear=prep.linear(coef, intercept))


class PoolsFeatures:
    """A strategy with ``HEAD_PARAMS["pooling"]``: its features are pooled as that parameter says."""

    @classmethod
    def pooling(cls, params: dict[str, Any]) -> str:
        return params["pooling"]


class Svm(PoolsFeatures, Strategy):
    """Linear SVM (scikit-learn ``LinearSVC``) on globally pooled features of the frozen base."""

    name = "svm"
    params = {"C": Param(1.0, low=0.0, low_open=True, high=1e6, help="inverse regularisation strength"),
              # none: the best mean rank over five data sets (README, benchmarks/probe_preprocessing.py);
              # ids from before the parameter existed meant "standardize", and still do
              "preprocess": preprocess_param("none", quiet="standardize"),
              "pooling": HEAD_PARAMS["pooling"]}
    search_space = {"C": SVM_C}
    on_features = True
    simpler = {"C": "low"}  # smaller C: stronger regularisation
    description = "linear SVM on pooled bottleneck features of the frozen base"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        from sklearn.svm import LinearSVC  # here: loading the plugin stays cheap for workers

        x = ctx.features("train")
        start = time.perf_counter()
        prep = Preprocessor.fit(p["preprocess"], x)
        svc = LinearSVC(C=p["C"], max_iter=20000, random_state=ctx.seed).fit(prep(x), ctx.train.labels)
        fit_s = time.perf_counter() - start
        # LinearSVC's prediction is the argmax of these scores
        return linear_outcome(ctx, prep, svc.coef_, svc.intercept_, fit_s, scores_are_logits=False)


class LogReg(PoolsFeatures, Strategy):
    """Multinomial logistic regression with L-BFGS (scikit-learn) on the frozen base's pooled features.

    The trials of a sweep over ``C`` share one regularisation path: the first fits every value, from the
    strongest regularisation to the weakest, each fit starting from the previous solution, and each row
    records its share of the path's time.
    """

    name = "logreg"
    params = {"C": Param(1.0, low=0.0, low_open=True, high=1e8, help="inverse regularisation strength"),
              "preprocess": preprocess_param("none"),
              "max_iter": Param(1000, low=1, high=1000000, in_id=False, help="L-BFGS iterations per fit"),
              "tol": Param(1e-6, low=0.0, low_open=True, in_id=False,
                           help="L-BFGS stops when the gradient is this small"),
              "pooling": HEAD_PARAMS["pooling"]}
    search_space = {"C": LOGREG_C}
    sweep_params = ("C",)
    on_features = True
    simpler = {"C": "low"}
    description = "multinomial logistic regression (L-BFGS) on pooled bottleneck features of the frozen base"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        return ctx.sweep_together(p, lambda configs: logreg_path(ctx, configs))


def logreg_path(ctx: TrialContext, configs: list[dict[str, Any]]) -> list[Outcome]:
    """One fit per configuration (they differ in ``C`` alone), warm-started along increasing ``C``."""
    from sklearn.linear_model import LogisticRegression

    x = ctx.features("train")
    start = time.perf_counter()
    prep = Preprocessor.fit(configs[0]["preprocess"], x)
    xp = prep(x)
    clf = LogisticRegression(C=configs[0]["C"], max_iter=configs[0]["max_iter"], tol=configs[0]["tol"],
                             warm_start=True)
    fits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in sorted(range(len(configs)), key=lambda i: configs[i]["C"]):
        clf.set_params(C=configs[i]["C"])
        clf.fit(xp, ctx.train.labels)
        coef, intercept = clf.coef_.copy(), clf.intercept_.copy()
        if len(coef) == 1:  # two classes: P(1) = sigmoid(d), the softmax of the logits (0, d)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        fits[i] = coef, intercept
    share = (time.perf_counter() - start) / len(configs)
    return [linear_outcome(ctx, prep, *fits[i], share, scores_are_logits=True) for i in range(len(configs))]


class Knn(PoolsFeatures, Strategy):
    """k nearest neighbours by cosine similarity, votes weighted by ``exp(similarity / temperature)``.

    DINOv2's k-NN evaluation: features scaled to unit length, the ``k`` most similar training images,
    each voting for its class with weight ``exp(s / T)``. The class scores are the log of the vote shares,
    so validation loss can break ties between values of ``k``. Among equally similar neighbours the
    earlier training image counts first; between classes with equal votes the lower class index wins.
    """

    name = "knn"
    params = {"k": Param(20, low=1, high=100000, help="neighbours that vote"),
              "temperature": Param(0.07, low=0.0, low_open=True, help="votes weigh exp(similarity / temperature)"),
              "pooling": HEAD_PARAMS["pooling"]}
    search_space = {"k": KNN_K}
    on_features = True
    simpler = {"k": "high"}  # more neighbours: a smoother decision
    description = "k nearest neighbours (cosine similarity, weighted votes) on pooled features of the frozen base"

    @classmethod
    def inapplicable(cls, params: dict[str, Any], train_images: int) -> str | None:
        if params["k"] > train_images:
            return f"k={params['k']} is more than the {train_images} training images"
        return None

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        x = ctx.features("train")
        start = time.perf_counter()
        unit = Preprocessor("l2")
        bank = unit(x)
        fit_s = time.perf_counter() - start

        def scores(part: str) -> np.ndarray:
            return knn_scores(bank, ctx.train.labels, unit(ctx.features(part)), p["k"], p["temperature"],
                              ctx.num_classes)

        val = scores("val") if len(ctx.val.labels) else None
        test = scores("test")
        return Outcome(test_pred=test.argmax(axis=1), val_pred=val.argmax(axis=1) if val is not None else None,
                       trainable_params=0, total_params=frozen_base_params(ctx), train_time_s=fit_s,
                       test_scores=test, val_scores=val, scores_are_logits=True, model_input="features")


def knn_scores(bank: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, temperature: float,
               num_classes: int) -> np.ndarray:
    """Log vote shares per class of unit-length ``queries`` among the unit-length ``bank``."""
    k = min(k, len(bank))
    sims = queries @ bank.T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # ties: the earlier training image first
    weights = np.exp(np.take_along_axis(sims, nearest, axis=1) / temperature)
    votes = np.zeros((len(queries), num_classes))
    np.add.at(votes, (np.repeat(np.arange(len(queries)), k), labels[nearest].ravel()), weights.ravel())
    return np.log(votes / votes.sum(axis=1, keepdims=True) + 1e-12)


PROBES = (Svm, LogReg, Knn)

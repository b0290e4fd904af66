"""svm, last_layer, last_n, fpt, full and scratch.

Defaults follow the reference articles where they give a value (head: one hidden layer and
dropout 0.5, Adam at 1e-3 for heads, a small rate for fine-tuning, SGD with momentum for ``fpt``,
the last block for ``last_n``) and are all parameters a suite can set or sweep.
"""
from __future__ import annotations

import time
from typing import Any

from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from zoo_bench import DivergedError, EpochStats, OptimizerSpec, Outcome, Strategy, TrialContext

HEAD = {"hidden": [256], "dropout": 0.5}


def train_head(ctx: TrialContext, p: dict[str, Any], epochs: int, lr: float, optimizer: str,
               total_epochs: int) -> tuple[Any, list[EpochStats]]:
    """A new head trained on cached bottleneck features (milliseconds an epoch)."""
    x = ctx.features("train")
    head = ctx.new_head(x.shape[1], p["hidden"], p["dropout"])
    stats = ctx.backend.fit(
        head, x, ctx.train.labels, epochs=epochs, optimizer=OptimizerSpec(optimizer, lr),
        batch_size=ctx.batch_size, val=ctx.val_data(features=True), on_epoch=ctx.epoch_callback(0, total_epochs),
    )
    return head, stats


def train_images(ctx: TrialContext, model: Any, epochs: int, optimizer: OptimizerSpec, augment: bool,
                 offset: int, total_epochs: int) -> list[EpochStats]:
    """Train a whole classifier on pixels."""
    val = ctx.val_data(features=False)
    return ctx.backend.fit(
        model, ctx.train.images, ctx.train.labels, epochs=epochs, optimizer=optimizer,
        batch_size=ctx.batch_size, val=val, augment=augment, on_epoch=ctx.epoch_callback(offset, total_epochs),
    )


def finetune(ctx: TrialContext, head: Any, last_blocks: int | None, optimizer: OptimizerSpec, epochs: int,
             augment: bool, head_stats: list[EpochStats]) -> Outcome:
    """Put a feature-trained head on a fresh pretrained base and train its last blocks on pixels.

    BatchNorm of the pretrained base stays in inference mode (the Keras transfer-learning guide).
    """
    model = ctx.backend.attach(ctx.new_base(pretrained=True), head)
    ctx.backend.set_trainable(model, last_blocks, bn_inference=True)
    trainable, total_params = ctx.backend.count_params(model)
    offset = len(head_stats)
    try:
        stats = head_stats + train_images(ctx, model, epochs, optimizer, augment, offset, offset + epochs)
    except DivergedError as exc:  # number the epoch across both phases, as the progress bar does
        raise DivergedError(exc.epoch + offset, exc.loss) from None
    test, val = predict_images(ctx, model)
    return Outcome(test, val, stats, trainable, total_params)


def frozen_base_params(ctx: TrialContext) -> int:
    """Parameters of the frozen pretrained base the features come from."""
    return ctx.backend.count_params(ctx.feature_cache.frozen_base(ctx.backend, ctx.spec, ctx.image_size))[1]


def predict_images(ctx: TrialContext, model: Any) -> tuple[Any, Any]:
    """Test and validation predictions of an image classifier."""
    b = ctx.backend
    val = b.predict(model, ctx.val.images, ctx.batch_size) if len(ctx.val.labels) else None
    return b.predict(model, ctx.test.images, ctx.batch_size), val


class Svm(Strategy):
    """Linear SVM (scikit-learn) on standardised, globally pooled features of the frozen base."""

    name = "svm"
    params = {"C": 1.0}
    description = "linear SVM on pooled bottleneck features of the frozen base"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        x = ctx.features("train")
        clf = make_pipeline(StandardScaler(), LinearSVC(C=p["C"], max_iter=20000, random_state=ctx.seed))
        start = time.perf_counter()
        clf.fit(x, ctx.train.labels)
        fit_s = time.perf_counter() - start
        val = clf.predict(ctx.features("val")) if len(ctx.val.labels) else None
        svc = clf[-1]
        base_total = frozen_base_params(ctx)
        n_svm = int(svc.coef_.size + svc.intercept_.size)
        return Outcome(test_pred=clf.predict(ctx.features("test")), val_pred=val,
                       trainable_params=n_svm, total_params=base_total + n_svm, train_time_s=fit_s)


class LastLayer(Strategy):
    """Frozen base, a new head (pooling, hidden layers, dropout) trained on cached features."""

    name = "last_layer"
    params = {"epochs": 20, "lr": 1e-3, "optimizer": "adam", **HEAD}
    description = "frozen base, new classification head"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        head, stats = train_head(ctx, p, p["epochs"], p["lr"], p["optimizer"], p["epochs"])
        b = ctx.backend
        val = b.predict(head, ctx.features("val"), ctx.batch_size) if len(ctx.val.labels) else None
        base_total = frozen_base_params(ctx)
        trainable, head_total = b.count_params(head)
        return Outcome(test_pred=b.predict(head, ctx.features("test"), ctx.batch_size), val_pred=val,
                       epochs=stats, trainable_params=trainable, total_params=base_total + head_total)


class LastN(Strategy):
    """The last ``n`` blocks of the base trainable plus the new head (warmed up on features first)."""

    name = "last_n"
    params = {"n": 1, "epochs": 3, "lr": 1e-4, "optimizer": "adam", "head_epochs": 5, "head_lr": 1e-3,
              "augment": True, **HEAD}
    description = "last n blocks of the base and a new head trainable"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        head, stats = train_head(ctx, p, p["head_epochs"], p["head_lr"], "adam", p["head_epochs"] + p["epochs"])
        return finetune(ctx, head, p["n"], OptimizerSpec(p["optimizer"], p["lr"]), p["epochs"], p["augment"], stats)


class Fpt(Strategy):
    """Freeze, pretrain the head; then unfreeze everything and fine-tune with SGD at a small rate."""

    name = "fpt"
    params = {"head_epochs": 10, "head_lr": 1e-3, "finetune_epochs": 3, "finetune_lr": 1e-4,
              "momentum": 0.9, "augment": True, **HEAD}
    description = "freeze and train the head, then fine-tune all layers with SGD"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        head, stats = train_head(ctx, p, p["head_epochs"], p["head_lr"], "adam",
                                 p["head_epochs"] + p["finetune_epochs"])
        sgd = OptimizerSpec("sgd", p["finetune_lr"], momentum=p["momentum"])
        return finetune(ctx, head, None, sgd, p["finetune_epochs"], p["augment"], stats)


class _WholeNetwork(Strategy):
    """Every layer trainable, from pretrained weights (``full``) or random ones (``scratch``)."""

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        base = ctx.new_base(pretrained=self.pretrained)
        head = ctx.new_head(ctx.backend.feature_dim(base), p["hidden"], p["dropout"])
        model = ctx.backend.attach(base, head)
        ctx.backend.set_trainable(model, None, bn_inference=p["bn_inference"])
        trainable, total_params = ctx.backend.count_params(model)
        stats = train_images(ctx, model, p["epochs"], OptimizerSpec(p["optimizer"], p["lr"]), p["augment"],
                             0, p["epochs"])
        if p.get("recalibrate_bn") and not p["bn_inference"]:
            ctx.backend.recalibrate_batchnorm(model, ctx.train.images, ctx.batch_size)
        test, val = predict_images(ctx, model)
        return Outcome(test, val, stats, trainable, total_params)


class Full(_WholeNetwork):
    name = "full"
    # BatchNorm keeps its ImageNet statistics by default: with small data, re-estimating them from
    # a few batches while the weights move is what makes naive full fine-tuning collapse.
    params = {"epochs": 5, "lr": 1e-4, "optimizer": "adam", "augment": True, "bn_inference": True, **HEAD}
    pretrained = True
    description = "pretrained weights, every layer trainable"


class Scratch(_WholeNetwork):
    name = "scratch"
    # Few steps from random weights leave BatchNorm's running averages behind the weights;
    # recalibrating them over the training images after training makes evaluation honest.
    params = {"epochs": 10, "lr": 1e-3, "optimizer": "adam", "augment": True, "bn_inference": False,
              "recalibrate_bn": True, **HEAD}
    pretrained = False
    description = "random initialisation, every layer trainable (the baseline)"


ALL_STRATEGIES = (Svm, LastLayer, LastN, Fpt, Full, Scratch)

"""last_layer, frozen_pixels, last_n, fpt, full and scratch (the probes are in ``probes``).

Defaults follow the reference articles where they give a value (head: one hidden layer and
dropout 0.5, Adam at 1e-3 for heads, a small rate for fine-tuning, SGD with momentum for ``fpt``,
the last block for ``last_n``) and are all parameters a suite can set or sweep.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from zoo_bench import DivergedError, EpochStats, OptimizerSpec, Outcome, Strategy, TrialContext
from zoo_bench.backend import Cut, HeadFit, HeadSpec, Monitor
from zoo_bench.augment import Augment
from zoo_bench.errors import ZooBenchError
from zoo_bench.unfreeze import Parts, resolve
from zoo_bench.params import (AUGMENT_PARAMS, EARLY_STOPPING, HEAD_PARAMS, Param, augment, epochs, layer_decay, lr,
                              momentum, optimizer, schedule_params, weight_decay)
from zoo_bench.schedules import Schedule

from .probes import PROBES, PoolsFeatures, Svm, frozen_base_params  # noqa: F401  (Svm: its home before the probes had one)


# Default search spaces for `[select] search = "default"`: decade-spaced grids around the defaults,
# the way the transfer protocols tune (Kornblith et al. 2019 and ELEVATER: the linear probe's
# regularisation and the head's learning rate and weight decay on a log grid; VTAB-1k and Kornblith
# et al.: the fine-tuning learning rate on a log grid, chosen on held-out validation data).
HEAD_LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
HEAD_WDS = [0.0, 1e-4]


def head_optimizer(p: dict[str, Any], prefix: str = "") -> OptimizerSpec:
    """The optimizer of a head phase (``prefix="head_"``) or of a one-phase strategy."""
    schedule = Schedule(p[f"{prefix}schedule"], p[f"{prefix}warmup_epochs"], p[f"{prefix}step_epochs"],
                        p[f"{prefix}step_gamma"])
    return OptimizerSpec(p[f"{prefix}optimizer"], p[f"{prefix}lr"], momentum=p[f"{prefix}momentum"],
                         weight_decay=p[f"{prefix}weight_decay"], schedule=schedule,
                         layer_decay=p.get(f"{prefix}layer_decay", 1.0))  # declared where a base trains


def monitor_for(p: dict[str, Any]) -> Monitor:
    """Best-epoch bookkeeping across the trial's phases (restore_best, patience)."""
    return Monitor(restore_best=p["restore_best"], patience=p["patience"])


def tag(stats: list[EpochStats], stage: str) -> list[EpochStats]:
    for s in stats:
        s.stage = stage
    return stats


def train_head(ctx: TrialContext, p: dict[str, Any], epochs: int, opt: OptimizerSpec, total_epochs: int,
               monitor: Monitor, stage: str) -> tuple[Any, list[EpochStats]]:
    """A new head trained on cached bottleneck features (milliseconds an epoch)."""
    x = ctx.features("train")
    head = ctx.new_head(x.shape[1], p["hidden"], p["dropout"])
    stats = ctx.backend.fit(
        head, x, ctx.train.labels, inputs="features", epochs=epochs, optimizer=opt, batch_size=ctx.batch_size,
        val=ctx.val_data(features=True), on_epoch=ctx.epoch_callback(0, total_epochs), monitor=monitor,
    )
    return head, tag(stats, stage)


def train_images(ctx: TrialContext, model: Any, epochs: int, optimizer: OptimizerSpec, augment: Augment,
                 offset: int, total_epochs: int, monitor: Monitor, stage: str) -> list[EpochStats]:
    """Train a whole classifier on pixels."""
    val = ctx.val_data(features=False)
    return tag(ctx.backend.fit(
        model, ctx.train.images, ctx.train.labels, inputs="images", epochs=epochs, optimizer=optimizer,
        batch_size=ctx.batch_size, val=val, augment=ctx.augmentation(augment), on_epoch=ctx.epoch_callback(offset, total_epochs),
        monitor=monitor,
    ), stage)


def finetune(ctx: TrialContext, head: Any, last_blocks: int | None, optimizer: OptimizerSpec, epochs: int,
             augment: Augment, head_stats: list[EpochStats], monitor: Monitor, unfreeze: list[str] = (),
             cache_cut: bool = False) -> Outcome:
    """Put a feature-trained head on a fresh pretrained base and train its last blocks on pixels.

    BatchNorm of the pretrained base stays in inference mode (the Keras transfer-learning guide). With
    ``cache_cut``, the frozen blocks below the trainable ones run once per image (and its mirror image
    under a flip) instead of every epoch: the trainable top trains on their cached activations, and
    validation and test images are scored from theirs (:meth:`TrialContext.cut`).
    """
    model = ctx.attach(ctx.new_base(pretrained=True), head)
    if unfreeze:
        ctx.backend.set_trainable(model, None, True, parts=unfreeze_parts(ctx, model.base, unfreeze))
    else:
        ctx.backend.set_trainable(model, last_blocks, bn_inference=True)
    trainable, total_params = ctx.backend.count_params(model)
    offset = len(head_stats)
    cut = ctx.cut(model, ctx.augmentation(augment)) if cache_cut else None
    try:
        if cut is None:
            stats = head_stats + train_images(ctx, model, epochs, optimizer, augment, offset,
                                              offset + epochs, monitor, "finetune")
        else:
            stats = head_stats + train_above_cut(ctx, cut, epochs, optimizer, augment, offset, monitor)
    except DivergedError as exc:  # number the epoch across both phases, as the progress bar does
        raise DivergedError(exc.epoch + offset, exc.loss) from None
    return predicted(ctx, model, stats, trainable, total_params, monitor, cut=cut)


def train_above_cut(ctx: TrialContext, cut: Cut, epochs: int, optimizer: OptimizerSpec, augment: Augment,
                    offset: int, monitor: Monitor) -> list[EpochStats]:
    """Fine-tune the blocks above a cut on the cached activations of the frozen ones below it."""
    ctx.fine_tune_from(cut)
    val = (ctx.activations(cut, "val"), ctx.val.labels) if len(ctx.val.labels) else None
    return tag(ctx.backend.fit(
        cut.upper, ctx.train_views(cut, augment.flip), ctx.train.labels, inputs="cut", epochs=epochs, optimizer=optimizer,
        batch_size=ctx.batch_size, val=val, on_epoch=ctx.epoch_callback(offset, offset + epochs), monitor=monitor,
    ), "finetune")


def unfreeze_parts(ctx: TrialContext, base: Any, entries: list[str]) -> Parts:
    """``unfreeze`` resolved against this backbone's blocks and layers in this backend."""
    if not ctx.backend.supports("unfreeze_units"):
        raise ZooBenchError(f"backend {ctx.backend.name!r} cannot unfreeze named blocks or layers; use n")
    blocks, layers = ctx.backend.unfreeze_units(base)
    return resolve(list(entries), blocks, layers, ctx.spec.name)


def predicted(ctx: TrialContext, model: Any, stats: list[EpochStats], trainable: int, total: int,
              monitor: Monitor, features: bool = False, cut: Cut | None = None) -> Outcome:
    """Test and validation class scores of a trained model (on images, on cached features, or from the
    cached activations at a cut, scored by the model's top)."""
    def inputs(part: str):
        if cut is not None:
            return ctx.activations(cut, part)
        return ctx.features(part) if features else ctx.part(part).images

    scorer = cut.upper if cut is not None else model
    val_pred, val = ctx.predict(scorer, inputs("val")) if len(ctx.val.labels) else (None, None)
    test_pred, test = ctx.predict(scorer, inputs("test"))
    return Outcome(test_pred=test_pred, val_pred=val_pred, epochs=stats, trainable_params=trainable, total_params=total,
                   test_scores=test, val_scores=val, best_epoch=monitor.best_epoch, model=model,
                   model_input="features" if features else "pixels")


class TrainsHead(PoolsFeatures):
    """A strategy with ``HEAD_PARAMS``: a new head of those hidden layers and dropout, on features pooled so."""

    @classmethod
    def head(cls, params: dict[str, Any]) -> HeadSpec:
        return HeadSpec(tuple(params["hidden"]), params["dropout"])


class AugmentsPixels:
    """A strategy with ``augment`` and ``AUGMENT_PARAMS``: its training pixels go through that augmentation."""

    @classmethod
    def augmentation(cls, params: dict[str, Any]) -> Augment:
        return Augment.from_params(params)


class LastLayer(TrainsHead, Strategy):
    """Frozen base, a new head (pooling, hidden layers, dropout) trained on cached features."""

    name = "last_layer"
    params = {"epochs": epochs(20), "lr": lr(1e-3), "optimizer": optimizer("adam"), "weight_decay": weight_decay(),
              "momentum": momentum(), **schedule_params(), **HEAD_PARAMS, **EARLY_STOPPING}
    search_space = {"lr": HEAD_LRS, "weight_decay": HEAD_WDS}
    sweep_params = ("lr", "optimizer", "weight_decay", "momentum", "hidden", "dropout", "restore_best", "patience",
                    "schedule", "warmup_epochs", "step_epochs", "step_gamma")
    on_features = True
    simpler = {"weight_decay": "high", "lr": "low"}  # stronger weight decay first, then the gentler step
    description = "frozen base, new classification head"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        monitor = monitor_for(p)
        if not ctx.backend.supports("fit_heads"):  # this head alone
            head, stats = train_head(ctx, p, p["epochs"], head_optimizer(p), p["epochs"], monitor, "train")
        else:
            result = ctx.train_heads(p, head_fit, p["epochs"])
            if result.diverged_epoch is not None:
                raise DivergedError(result.diverged_epoch, result.diverged_loss)
            head, stats = result.head, tag(result.epochs, "train")
            monitor.best_epoch = result.best_epoch
        trainable, head_total = ctx.backend.count_params(head)
        return predicted(ctx, head, stats, trainable, frozen_base_params(ctx) + head_total, monitor, features=True)


def head_fit(p: dict[str, Any]) -> HeadFit:
    """A one-phase strategy's head as one head of a sweep."""
    return HeadFit(HeadSpec(tuple(p["hidden"]), p["dropout"]), head_optimizer(p), restore_best=p["restore_best"],
                   patience=p["patience"])


class FrozenPixels(TrainsHead, AugmentsPixels, Strategy):
    """Frozen base, a new head trained on (augmented) pixels: every epoch runs the base.

    ``last_layer`` with augmentation, as the reference articles compare it with cached features; its
    epoch time is a frozen-base pass over the images, the timing reference of an epoch without caching.
    BatchNorm of the base stays in inference mode.
    """

    name = "frozen_pixels"
    params = {"epochs": epochs(20), "lr": lr(1e-3), "optimizer": optimizer("adam"), "weight_decay": weight_decay(),
              "momentum": momentum(), **schedule_params(), "augment": augment(), **AUGMENT_PARAMS, **HEAD_PARAMS,
              **EARLY_STOPPING}
    search_space = {"lr": HEAD_LRS}
    description = "frozen base, new head trained on augmented pixels each epoch"

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        monitor = monitor_for(p)
        base = ctx.new_base(pretrained=True)
        head = ctx.new_head(ctx.feature_dim(base), p["hidden"], p["dropout"])
        model = ctx.attach(base, head)
        ctx.backend.set_trainable(model, 0, bn_inference=True)
        trainable, total_params = ctx.backend.count_params(model)
        stats = train_images(ctx, model, p["epochs"], head_optimizer(p), Augment.from_params(p), 0, p["epochs"],
                             monitor, "train")
        # The base never changed: its cached features of the test images score the trained head, as the
        # whole network would (no second pass of the base over them).
        return predicted(ctx, head, stats, trainable, total_params, monitor, features=True)


def two_phase_params(head_epochs: int, finetune_epochs: int, finetune_lr: float, finetune_optimizer: str
                     ) -> dict[str, Param]:
    """One naming pattern for both phases of ``last_n`` and ``fpt``: ``head_*`` then ``finetune_*``."""
    return {
        "head_epochs": epochs(head_epochs), "head_lr": lr(1e-3), "head_optimizer": optimizer("adam"),
        "head_weight_decay": weight_decay(), "head_momentum": momentum(),
        "finetune_epochs": epochs(finetune_epochs), "finetune_lr": lr(finetune_lr),
        "finetune_optimizer": optimizer(finetune_optimizer), "finetune_weight_decay": weight_decay(),
        "finetune_momentum": momentum(), **schedule_params("head_"), **schedule_params("finetune_"),
        "finetune_layer_decay": layer_decay("fine-tuning: "),
        "finetune_dropout": Param(-1.0, low=-1.0, high=1.0, high_open=True, in_id=False,
                                  help="the head's dropout while fine-tuning (-1: keep `dropout`)"),
        "augment": augment(), **AUGMENT_PARAMS, **HEAD_PARAMS, **EARLY_STOPPING,
    }


def check_two_phase(params: dict[str, Any]) -> list[tuple[str, str]]:
    """``finetune_dropout`` is a rate in [0, 1) or -1 (keep the head phase's)."""
    value = params.get("finetune_dropout", -1.0)
    if -1.0 < value < 0.0:
        return [("finetune_dropout", f"{value!r} is neither -1 (keep dropout) nor a rate in [0, 1)")]
    return []


def run_two_phase(ctx: TrialContext, p: dict[str, Any], last_blocks: int | None) -> Outcome:
    """Head on cached features, then fine-tuning on pixels with the head kept."""
    monitor = monitor_for(p)
    if p.get("unfreeze"):  # names checked against the backbone before any epoch is spent
        unfreeze_parts(ctx, ctx.feature_cache.frozen_base(ctx.backend, ctx.spec, ctx.image_size), p["unfreeze"])
    total = p["head_epochs"] + p["finetune_epochs"]
    head, stats = train_head(ctx, p, p["head_epochs"], head_optimizer(p, "head_"), total, monitor, "head")
    if p["finetune_dropout"] >= 0 and p["finetune_dropout"] != p["dropout"]:
        ctx.backend.set_dropout(head, p["finetune_dropout"])
    return finetune(ctx, head, last_blocks, head_optimizer(p, "finetune_"), p["finetune_epochs"], Augment.from_params(p),
                    stats, monitor, p.get("unfreeze") or (), cache_cut=p.get("cache_cut", False))


class LastN(TrainsHead, AugmentsPixels, Strategy):
    """The last ``n`` blocks of the base trainable plus the new head (warmed up on features first)."""

    name = "last_n"
    params = {"n": Param(1, low=1, high=10000, help="blocks trained, counted from the top"),
              "unfreeze": Param([], in_id=False, type_name="list[str]",
                                help="instead of n: the block names, block ranges (\"3:5\", \"-2:\") or layer names "
                                     "to train (zoo_bench.unfreeze)"),
              "cache_cut": Param(True, in_id=False,
                                 help="train the blocks above the frozen ones on their cached activations instead "
                                      "of running every block each epoch (falls back to pixels where augmentation "
                                      "other than a flip needs them)"),
              **two_phase_params(5, 3, 1e-4, "adam")}
    params["head_epochs"] = Param(5, low=0, high=100000, help="head epochs on features before fine-tuning")
    search_space = {"finetune_lr": [1e-5, 1e-4, 1e-3]}
    renamed_params = {"epochs": "finetune_epochs", "lr": "finetune_lr", "optimizer": "finetune_optimizer"}
    description = "last n blocks of the base and a new head trainable"

    @classmethod
    def check(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        return check_two_phase(params)

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        return run_two_phase(ctx, p, p["n"])


class Fpt(TrainsHead, AugmentsPixels, Strategy):
    """Freeze, pretrain the head; then unfreeze everything and fine-tune with SGD at a small rate."""

    name = "fpt"
    params = two_phase_params(10, 3, 1e-4, "sgd")
    search_space = {"finetune_lr": [1e-4, 1e-3, 1e-2]}
    renamed_params = {"momentum": "finetune_momentum"}
    description = "freeze and train the head, then fine-tune all layers with SGD"

    @classmethod
    def check(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        return check_two_phase(params)

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        return run_two_phase(ctx, p, None)


class _WholeNetwork(TrainsHead, AugmentsPixels, Strategy):
    """Every layer trainable, from pretrained weights (``full``) or random ones (``scratch``)."""

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        monitor = monitor_for(p)
        base = ctx.new_base(pretrained=self.pretrained)
        head = ctx.new_head(ctx.feature_dim(base), p["hidden"], p["dropout"])
        model = ctx.attach(base, head)
        ctx.backend.set_trainable(model, None, bn_inference=p["bn_inference"])
        trainable, total_params = ctx.backend.count_params(model)
        stats = train_images(ctx, model, p["epochs"], head_optimizer(p), Augment.from_params(p), 0, p["epochs"],
                             monitor, "train")
        if p.get("recalibrate_bn") and not p["bn_inference"]:
            ctx.backend.recalibrate_batchnorm(model, ctx.train.images, ctx.batch_size)
        return predicted(ctx, model, stats, trainable, total_params, monitor)


def whole_network_params(epochs_: int, lr_: float) -> dict[str, Param]:
    return {"epochs": epochs(epochs_), "lr": lr(lr_), "optimizer": optimizer("adam"), "weight_decay": weight_decay(),
            "momentum": momentum(), **schedule_params(), "layer_decay": layer_decay(), "augment": augment(),
            **AUGMENT_PARAMS, **HEAD_PARAMS, **EARLY_STOPPING}


class Full(_WholeNetwork):
    name = "full"
    # BatchNorm keeps its ImageNet statistics by default: with small data, re-estimating them from
    # a few batches while the weights move is what makes naive full fine-tuning collapse.
    params = {**whole_network_params(5, 1e-4), "bn_inference": Param(True, help="keep BatchNorm in inference mode")}
    search_space = {"lr": [1e-5, 1e-4, 1e-3]}
    pretrained = True
    description = "pretrained weights, every layer trainable"


class Scratch(_WholeNetwork):
    name = "scratch"
    # Few steps from random weights leave BatchNorm's running averages behind the weights;
    # recalibrating them over the training images after training makes evaluation honest.
    params = {**whole_network_params(10, 1e-3), "bn_inference": Param(False, help="keep BatchNorm in inference mode"),
              "recalibrate_bn": Param(True, help="re-estimate BatchNorm statistics over the training images")}
    search_space = {"lr": [1e-4, 1e-3, 1e-2]}
    pretrained = False
    description = "random initialisation, every layer trainable (the baseline)"


ALL_STRATEGIES = (*PROBES, LastLayer, FrozenPixels, LastN, Fpt, Full, Scratch)

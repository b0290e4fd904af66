"""The trial function: one trial of a suite, from plain inputs to a plain :class:`TrialResult`.

:class:`TrialRunner` runs trials in the process that holds it, keeping what trials share (decoded
images, bottleneck features, a head sweep's trained heads) between them. It writes nothing to the run
folder but a trial's predictions file (written atomically); the row, the error text and the
unreadable images go back to the driver (``zoo_bench.run.runner``), which alone records them.
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import statistics
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..backend import Backend, EpochStats
from ..context import FeatureCache, TrialContext, TrialMeasures
from ..dataset import Listing
from ..errors import DataError, DivergedError, PluginError, ZooBenchError, one_line
from ..images import ImageCache
from ..metrics import scores_of
from ..outcome_rules import outcome_problems
from ..params import with_defaults
from ..plan import sampling
from ..plan.suite import Suite
from ..plan.trial import Trial
from ..plugins import Registry
from ..results.fields import blank_row
from ..results.store import atomic_write, now_iso
from ..strategy import Outcome, Strategy
from . import inference_cost, saved_models
from .activation_maps import save_maps
from .memory import PeakRSS
from .sweeps import HeadSweeps, sweep_key

if TYPE_CHECKING:
    from .prepare import RunOptions


class Events(Protocol):
    """Where a running trial's progress goes (the driver's reporter, or a pipe to it)."""

    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, trial: Trial, index: int, total: int, stats: EpochStats) -> None: ...
    def note(self, trial: Trial, text: str) -> None: ...


class NoEvents:
    """Events nobody watches."""

    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, trial: Trial, index: int, total: int, stats: EpochStats) -> None: ...
    def note(self, trial: Trial, text: str) -> None: ...


@dataclass
class TrialResult:
    """What one trial gives back: its row, the full error text (for errors.log), its unreadable images."""

    trial: Trial
    row: dict[str, Any]
    traceback: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # image path -> why it could not be read


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarise_epochs(epochs: list[EpochStats]) -> dict[str, Any]:
    """Epoch timing fields: the median skips the first epoch (tracing, autotune, warm caches)."""
    images = [e for e in epochs if e.phase in ("images", "cut")]  # the network trains (from a cut, or pixels)
    heads = [e for e in epochs if e.phase == "features"]
    main = images or heads
    later = [e.seconds for e in main[1:]] or [e.seconds for e in main]
    seconds = sum(e.seconds for e in main)
    timed = [e for e in (main[1:] or main) if e.data_seconds is not None]  # after the first, as epoch_time_s
    return {
        "epochs": len(epochs),
        "epoch_seconds": [e.seconds for e in main],
        "epoch_time_s": _median(later),
        "first_epoch_s": main[0].seconds if main else None,
        "head_epoch_time_s": _median([e.seconds for e in heads[1:]] or [e.seconds for e in heads]),
        "train_images_per_s": (sum(e.images for e in main) / seconds) if seconds > 0 else None,
        "train_time_s": sum(e.seconds for e in epochs) if epochs else None,
        # the share of the epochs' time spent producing batches rather than training on them
        "data_wait_fraction": (sum(e.data_seconds for e in timed) / sum(e.seconds for e in timed)
                               if timed and sum(e.seconds for e in timed) > 0 else None),
    }


def trial_row(trial: Trial) -> dict[str, Any]:
    """What every row starts with: every documented field (``zoo_bench.results.fields``), the trial's
    identity filled in, an error until the trial says otherwise."""
    return {**blank_row(), "trial_id": trial.id, "backend": trial.backend, "backbone": trial.backbone,
            "strategy": trial.strategy, "params": trial.param_dict, "size_per_class": trial.size, "seed": trial.seed,
            "refit": trial.refit, "status": "error"}


def log_error(run_dir: Path, trial: Trial, text: str) -> None:
    """Append a trial's full error text to the run's errors.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "errors.log", "a") as fh:
        fh.write(f"== {now_iso()} {trial.id}\n{text}\n")



class TrialRunner:
    """Runs trials of one suite in this process, sharing images, features and head sweeps between them."""

    def __init__(self, suite: Suite, registry: Registry, listing: Listing, backends: dict[str, Backend | Exception],
                 options: "RunOptions", run_dir: Path, events: Events | None = None):
        self.suite, self.registry, self.listing = suite, registry, listing
        self.backends, self.options, self.run_dir = backends, options, run_dir
        self.events: Events = events or NoEvents()
        self.images = ImageCache(options.cache_dir)
        self.features = FeatureCache(options.cache_dir / "features" if options.cache_dir else None)
        self.head_sweeps = HeadSweeps()
        self._costs: dict[tuple, inference_cost.InferenceCost] = {}  # architecture -> its measured cost
        self._test: dict[Any, Any] = {}  # resize policy -> the stacked test part, shared by every trial
        self._skipped: dict[str, str] = {}
        self._trial: Trial | None = None

    def run(self, trial: Trial, sweep: tuple[dict[str, Any], ...] = ()) -> TrialResult:
        """One trial, never raising (except on interrupt): failures become "error" or "diverged" rows.

        ``sweep``: the parameters of the pending trials of its head sweep (``sweeps.group_sweeps``).
        """
        start = time.perf_counter()
        row = trial_row(trial)
        result = TrialResult(trial, row)
        self._skipped = {}
        self._trial = trial
        try:
            row.update(self._execute_with_retry(trial, sweep))
            row["status"] = "ok"
        except DivergedError as exc:  # a result, not a failure: this configuration does not train
            row.update(status="diverged", error=one_line(exc), diverged_epoch=exc.epoch)
        except Exception as exc:  # recorded, and the suite goes on
            row["error"] = one_line(exc)
            result.traceback = traceback.format_exc()
        finally:
            gc.collect()
        row["wall_s"] = time.perf_counter() - start
        row["finished_at"] = now_iso()
        result.skipped = self._skipped
        return result

    def _execute_with_retry(self, trial: Trial, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """Run the trial; on accelerator out-of-memory halve the batch size down to the floor."""
        batch_size, floor = self.suite.batch_size, self.suite.min_batch_size
        backend = self.backends[trial.backend]
        while True:
            try:
                fields = self._execute(trial, batch_size, sweep)
                fields["batch_size"] = batch_size
                return fields
            except Exception as exc:
                if not (isinstance(backend, Backend) and backend.is_out_of_memory(exc)):
                    raise
                cause = one_line(exc)
            # out of memory; outside the except block, so the failed attempt's frames are freed first
            backend.release_memory()
            gc.collect()
            backend.release_memory()
            if batch_size // 2 < max(floor, 1):
                raise ZooBenchError(f"out of memory at batch size {batch_size} "
                                    f"(floor {floor}: run.min_batch_size): {cause}")
            batch_size //= 2
            self.events.note(trial, f"out of memory: retrying with batch size {batch_size}")

    def _log_skipped(self, *batches: Any) -> None:
        """Collect the unreadable images of this trial, with why; the driver keeps each once in the run folder."""
        self._skipped.update({p: b.reasons.get(p, "unreadable") for b in batches for p in b.skipped})

    def _on_epoch(self, index: int, total: int, stats: EpochStats) -> None:
        self.events.epoch(self._trial, index, total, stats)

    def _execute(self, trial: Trial, batch_size: int, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        backend = self.backends[trial.backend]
        if isinstance(backend, Exception):
            raise backend
        spec = self.registry.backbone(trial.backend, trial.backbone)
        image_size = self.suite.image_size or spec.image_size
        resize = spec.resize(image_size)  # the backbone's own eval resize (timm: crop_pct, interpolation)
        sub = sampling.subset(self.listing, trial.size, trial.seed, self.suite.dataset["val_fraction"])
        if trial.refit:  # the chosen configuration again, on every image of the size; nothing held out
            sub = sampling.Subset(train=sub.train + sub.val, val=())
        loading = time.perf_counter()
        train = self.images.load(sub.train, resize)
        val = self.images.load(sub.val, resize)
        if resize not in self._test:
            self._test = {resize: self.images.load(self.listing.test, resize)}  # one policy held at a time
        test = self._test[resize]
        image_time_s = time.perf_counter() - loading
        self._log_skipped(train, val, test)
        if len(set(train.labels.tolist())) < len(self.listing.classes):
            raise DataError(f"{trial.id}: after skipping unreadable images a class has no training image")
        strategy = self.registry.strategies[trial.strategy]()
        params = with_defaults(trial.param_dict, strategy.params)  # quiet parameters back in
        sweep = tuple(with_defaults(q, strategy.params) for q in sweep)
        backend.seed(trial.seed)
        hidden_test = dataclasses.replace(test, labels=np.full(len(test.labels), -1, np.int64))
        ctx = TrialContext(backend=backend, spec=spec, image_size=image_size, batch_size=batch_size,
                           num_classes=len(self.listing.classes), seed=trial.seed, train=train, val=val,
                           test=hidden_test, feature_cache=self.features, on_epoch=self._on_epoch,
                           sweep=sweep, sweep_key=sweep_key(trial, strategy.sweep_params), head_sweeps=self.head_sweeps,
                           pooling=strategy.pooling(params))
        backend.reset_peak_memory()
        with PeakRSS() as rss:
            cv = (self._cross_validate(trial, strategy, params, ctx, resize)
                  if self.suite.cross_validates(strategy) and not trial.refit else {})
            backend.seed(trial.seed)
            outcome = strategy.run(ctx, params)
            self._check_outcome(trial, outcome, len(test.labels), len(val.labels),
                                needs_val=self._tunes_on_validation(trial, strategy))
        device = backend.device()
        gpu_peak = backend.peak_memory_mb()
        fields = summarise_epochs(outcome.epochs)
        if outcome.train_time_s is not None:
            fields["train_time_s"] = outcome.train_time_s
        test_scores = scores_of(outcome.test_pred, test.labels, len(self.listing.classes),
                                outcome.test_scores if outcome.scores_are_logits else None)
        fields.update(score_fields(outcome, test_scores, val.labels, len(self.listing.classes)))
        fields["predictions_file"] = write_predictions(self.run_dir, trial, test, outcome, test_scores,
                                                       len(self.listing.classes))
        classifier = _Classifier(ctx, outcome)
        fields["model_dir"] = (self._save_model(trial, ctx, outcome, classifier, strategy, params, resize)
                               if self.options.save_models else None)
        fields["activation_maps_file"] = (self._activation_maps(trial, ctx, classifier, test)
                                          if self.options.activation_maps else None)
        fields.update(self._inference_cost(trial, ctx, outcome, classifier, strategy, params)
                      if self.suite.inference_cost else dict.fromkeys(inference_cost.FIELDS))
        measured = ctx.measured
        return {
            **fields, **cv,
            "feature_time_s": measured.feature_time_s, "image_time_s": image_time_s,
            "cut": measured.cut_used.describe() if measured.cut_used is not None else None,
            "cut_time_s": measured.cut_time_s if measured.cut_used is not None else None,
            "sweep_heads": measured.sweep_heads,
            "peak_memory_mb": gpu_peak if gpu_peak is not None else rss.peak_mb,
            "peak_memory_kind": "accelerator" if gpu_peak is not None else "process_rss",
            "trainable_params": outcome.trainable_params, "total_params": outcome.total_params,
            "skipped_images": len(train.skipped) + len(val.skipped) + len(test.skipped),
            "train_images": len(train.labels), "val_images": len(val.labels), "test_images": len(test.labels),
            "augmentation": strategy.augmentation(params).describe(),
            "image_size": image_size, "crop_pct": resize.crop_pct, "crop_mode": resize.crop_mode,
            "interpolation": resize.interpolation,
            "mean": list(spec.mean), "std": list(spec.std), "weights": "none" if measured.random_base else spec.weights, "device": device.kind, "device_name": device.name,
            "precision": device.precision, "backend_settings": device.settings,
        }

    def _tunes_on_validation(self, trial: Trial, strategy: Any) -> bool:
        """Whether this trial's configuration is chosen by its validation predictions (not folds, not a refit)."""
        return bool(self.suite.tuned.get(trial.strategy)) and not trial.refit and not self.suite.cross_validates(strategy)

    def _check_outcome(self, trial: Trial, outcome: Any, n_test: int, n_val: int, needs_val: bool = False) -> None:
        """A strategy that breaks the Outcome rules fails its trial, in one line naming it and its plugin."""
        problems = outcome_problems(outcome, n_test, n_val, len(self.listing.classes), needs_val)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PluginError(f"strategy {trial.strategy!r} from plugin {self.registry.owner('strategy', trial.strategy)}"
                              f" broke the Outcome contract: {problems[0]}{more}")

    def _cross_validate(self, trial: Trial, strategy: Any, params: dict[str, Any], ctx: TrialContext,
                        resize: Any) -> dict[str, Any]:
        """Accuracy of this configuration on each of the repeated stratified K folds of the size's pool
        (train and validation images): fitted on the other folds, scored on the held-out one. These fits
        are not rows; their labels are training labels. A sweep's configurations are fitted together, fold
        by fold, as in the trial itself."""
        scores, train_s = [], 0.0
        for index, (fitted, held) in enumerate(sampling.folds(self.listing, trial.size, trial.seed, self.suite.folds,
                                                              self.suite.repeats)):
            fit_batch, held_batch = self.images.load(fitted, resize), self.images.load(held, resize)
            self._log_skipped(fit_batch, held_batch)
            hidden = dataclasses.replace(held_batch, labels=np.full(len(held_batch.labels), -1, np.int64))
            fold_ctx = dataclasses.replace(
                ctx, train=fit_batch, val=self.images.load((), resize), test=hidden, on_epoch=None,
                sweep_key=("fold", index, ctx.sweep_key), measured=TrialMeasures())
            ctx.backend.seed(trial.seed)
            outcome = strategy.run(fold_ctx, params)
            self._check_outcome(trial, outcome, len(held_batch.labels), 0)
            ctx.measured.feature_time_s += fold_ctx.measured.feature_time_s
            train_s += (outcome.train_time_s if outcome.train_time_s is not None
                        else sum(e.seconds for e in outcome.epochs or []))  # heads report epochs, not a fit time
            scores.append(float(np.mean(np.asarray(outcome.test_pred) == held_batch.labels)) if len(held_batch.labels)
                          else float("nan"))
        return {"cv_scores": scores, "cv_accuracy": float(np.nanmean(scores)), "cv_folds": self.suite.folds,
                "cv_repeats": self.suite.repeats, "cv_train_s": train_s}

    def _activation_maps(self, trial: Trial, ctx: TrialContext, classifier: "_Classifier", test: Any) -> str | None:
        """Grad-CAM of the first test images of each class, as one PNG in ``activation_maps/``; None with a note
        where the trial has no network to explain (an SVM) or the backend cannot."""
        if not ctx.backend.supports("activation_maps"):
            self.events.note(trial, f"no activation maps: backend {trial.backend!r} cannot compute them")
            return None
        try:
            model = classifier.model
            if model is None:
                raise ZooBenchError(f"a probe on features ({trial.strategy}) has no network to explain")
            chosen = pick_per_class(test.labels, self.options.activation_maps)
            images = test.images[chosen]
            maps, used = ctx.backend.activation_maps(model, images)
            classes = self.listing.classes
            labels = [f"{classes[t]} -> {classes[p]}" for t, p in zip(test.labels[chosen], used)]
            name = predictions_name(trial)
            save_maps(images, maps, labels, self.run_dir / "activation_maps" / f"{name}.png",
                      title=f"{trial.backbone} {trial.strategy} n={trial.size} seed={trial.seed}: "
                            "true -> predicted class, Grad-CAM of the predicted class")
            return f"activation_maps/{name}.png"
        except Exception as exc:  # the trial's result stands
            self.events.note(trial, f"no activation maps: {one_line(exc)}")
        return None

    def _inference_cost(self, trial: Trial, ctx: TrialContext, outcome: Outcome, classifier: "_Classifier",
                        strategy: Strategy, params: dict[str, Any]) -> dict[str, Any]:
        """The trained model's inference cost (:mod:`zoo_bench.run.inference_cost`), measured once per
        architecture in this process and shared by the trials of that architecture; nulls with a note
        where it cannot be measured."""
        try:
            probe = outcome.model is None or outcome.linear is not None
            head = strategy.head(params)
            pooling = strategy.pooling(params)
            key = (trial.backend, trial.backbone, ctx.image_size, ctx.batch_size, ctx.num_classes, pooling,
                   "probe" if probe else tuple(head.hidden) if head else "own head", strategy.deployed_extras(params))
            if key not in self._costs:
                if probe:
                    base = ctx.feature_cache.frozen_base(ctx.backend, ctx.spec, ctx.image_size)
                    self._costs[key] = inference_cost.measure(ctx.backend, None, ctx.image_size, ctx.batch_size,
                                                              features_of=base, pooling=pooling)
                else:
                    self._costs[key] = inference_cost.measure(ctx.backend, classifier.model, ctx.image_size,
                                                              ctx.batch_size)
            fields = self._costs[key].fields(outcome.trainable_params)
            if probe and fields["model_mb"] is not None and fields["delta_mb"] is not None:
                fields["model_mb"] += fields["delta_mb"]  # the base and the probe's own weights
            return fields
        except Exception as exc:  # the trial's result stands; its cost is missing and said so
            self.events.note(trial, f"inference cost not measured: {one_line(exc)}")
        return dict.fromkeys(inference_cost.FIELDS)

    def _save_model(self, trial: Trial, ctx: TrialContext, outcome: Outcome, classifier: "_Classifier",
                    strategy: Strategy, params: dict[str, Any], resize: Any) -> str | None:
        """The trial's trained model in ``models/`` (``--save-models``); the path, or None with a note why not."""
        head = strategy.head(params)
        if not ctx.backend.supports("save_weights"):
            self.events.note(trial, f"model not saved: backend {trial.backend!r} cannot save weights")
            return None
        try:
            model, kind = classifier.model, "classifier"
            if outcome.linear is not None:  # the frozen base it was trained on, and the linear map
                model, kind = ctx.feature_cache.frozen_base(ctx.backend, ctx.spec, ctx.image_size), "linear"
            if model is None:
                raise ZooBenchError(f"strategy {trial.strategy!r} hands back no model to save")
            folder = self.run_dir / saved_models.FOLDER / predictions_name(trial)
            description = {
                "trial_id": trial.id, "backend": trial.backend, "backbone": trial.backbone, "strategy": trial.strategy,
                "params": trial.param_dict, "classes": list(self.listing.classes), "image_size": ctx.image_size,
                "resize": dataclasses.asdict(resize), "kind": kind,
                "head": {"hidden": list(head.hidden) if head else [], "dropout": head.dropout if head else 0.0,
                         "pooling": strategy.pooling(params)},
                "backend_settings": ctx.backend.device().settings,
            }
            saved_models.save(folder, ctx.backend, model, description, outcome.linear)
            return f"{saved_models.FOLDER}/{folder.name}"
        except Exception as exc:  # the trial's result stands; the model is missing and said so
            self.events.note(trial, f"model not saved: {one_line(exc)}")
        return None


@dataclass
class _Classifier:
    """A trial's trained network as a classifier of pixels, built once on first use: a head trained on
    cached features is put on a fresh copy of its frozen pretrained base. None for a linear SVM."""

    ctx: TrialContext
    outcome: Outcome

    @functools.cached_property
    def model(self) -> Any:
        model = self.outcome.model
        if model is not None and self.outcome.model_input == "features":
            model = self.ctx.attach(self.ctx.new_base(pretrained=True), model)
        return model


def pick_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` images, the first of each class in turn (test order), so every class is shown."""
    per_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    chosen: list[int] = []
    for rank in range(max((len(p) for p in per_class), default=0)):
        chosen += [p[rank] for p in per_class if rank < len(p)]
    return np.asarray(sorted(chosen[:count]), np.int64)


MAX_CLASSES_IN_ROW = 20  # a confusion matrix of more classes goes to the trial's side file only


def history(epochs: list[EpochStats]) -> list[dict[str, Any]]:
    """The per-epoch record of a row: phase, seconds, losses, validation accuracy, learning rate."""
    return [{"epoch": i, "phase": e.stage, "input": e.phase, "seconds": e.seconds, "train_loss": e.train_loss,
             "val_loss": e.val_loss, "val_accuracy": e.val_accuracy, "lr": e.lr, "data_s": e.data_seconds}
            for i, e in enumerate(epochs, start=1)]


def score_fields(outcome: Outcome, test: dict[str, Any], val_labels: np.ndarray, num_classes: int
                 ) -> dict[str, Any]:
    """The row's scores: test (``scores_of`` the test part: the reported number) and validation (what selection may use)."""
    logits = outcome.scores_are_logits
    fits = num_classes <= MAX_CLASSES_IN_ROW
    out: dict[str, Any] = {
        "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "test_balanced_accuracy": test["balanced_accuracy"], "test_macro_f1": test["macro_f1"],
        "confusion": test["confusion"] if fits else None,
        "per_class_accuracy": test["per_class_accuracy"] if fits else None,
        "val_accuracy": None, "val_loss": None, "val_balanced_accuracy": None,
        "best_epoch": outcome.best_epoch, "history": history(outcome.epochs),
    }
    if outcome.val_pred is not None and len(val_labels):
        val = scores_of(outcome.val_pred, val_labels, num_classes, outcome.val_scores if logits else None)
        out.update(val_accuracy=val["accuracy"], val_loss=val["loss"], val_balanced_accuracy=val["balanced_accuracy"])
    return out


def predictions_name(trial: Trial) -> str:
    """A file name for a trial's side files: readable start, hash for uniqueness (ids hold '/', '[', '=')."""
    import hashlib
    import re

    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{trial.backbone}-{trial.strategy}-n{trial.size}-s{trial.seed}")
    return f"{readable[:80]}-{hashlib.blake2b(trial.id.encode(), digest_size=6).hexdigest()}"


def write_predictions(run_dir: Path, trial: Trial, test: Any, outcome: Outcome, scores: dict[str, Any],
                      num_classes: int) -> str:
    """Per-image test predictions (image, label, prediction, class scores) as Parquet; the row keeps the path.

    With many classes, the confusion matrix and per-class accuracy go beside it as JSON.
    """
    import json

    import pandas as pd

    folder = run_dir / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    name = predictions_name(trial)
    frame = pd.DataFrame({"image": list(test.paths), "label": test.labels.astype(np.int64),
                          "pred": np.asarray(outcome.test_pred, np.int64)})
    if outcome.test_scores is not None:
        frame["scores"] = list(np.asarray(outcome.test_scores, np.float32))
    atomic_write(folder / f"{name}.parquet", frame.to_parquet(index=False))
    if num_classes > MAX_CLASSES_IN_ROW:
        atomic_write(folder / f"{name}.json", json.dumps({"trial_id": trial.id, "confusion": scores["confusion"],
                                                          "per_class_accuracy": scores["per_class_accuracy"]}).encode())
    return f"predictions/{name}.parquet"

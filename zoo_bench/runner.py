"""Runs trials: data, backbone and strategy per trial; one durable result row each; resume by id."""
from __future__ import annotations

import dataclasses
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import __version__, sampling
from .backend import Backend, EpochStats
from .context import FeatureCache, TrialContext
from .dataset import Listing
from .errors import DataError, DivergedError, SuiteError, ZooBenchError
from .grid import Trial
from .sweeps import HeadSweeps, group_sweeps, sweep_key
from .images import ImageCache
from .memory import PeakRSS
from .plugins import Registry
from .metrics import scores_of
from .results import RunStore, atomic_write, now_iso
from .strategy import Outcome
from .suite import Suite


class Reporter(Protocol):
    """What the runner tells the user about; :mod:`zoo_bench.report` draws it."""

    def start(self, total: int, already_done: int) -> None: ...
    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, index: int, total: int, stats: EpochStats) -> None: ...
    def trial_finished(self, trial: Trial, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def note(reporter: Any, trial: Trial, text: str) -> None:
    """Tell the user something about a running trial, if the reporter takes notes."""
    if hasattr(reporter, "note"):
        reporter.note(trial, text)


@dataclass
class RunOptions:
    """Settings from the command line and environment that are not part of the suite."""

    data_root: Path
    cache_dir: Path
    weights_dir: str | None = None
    device: str | None = None
    precision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def dataset_root(suite: Suite, data_root: Path) -> Path:
    """The data set folder: ``dataset.path`` as is when absolute, else under the data root."""
    path = Path(suite.dataset.get("path") or "")
    return path if path.is_absolute() else data_root / path


def list_dataset(suite: Suite, registry: Registry, options: RunOptions, console=None) -> Listing:
    """List the suite's images, downloading them first when the suite asks and they are missing."""
    source = registry.datasets[suite.dataset["source"]]()
    root = dataset_root(suite, options.data_root)
    if suite.dataset.get("download") and not root.exists():
        spec = registry.downloads.get(root.name)
        if spec is None:
            raise DataError(f"{suite.path}: dataset.download: no download named {root.name!r} "
                            f"(known: {', '.join(sorted(registry.downloads)) or 'none'})")
        from .download import get

        get(spec, root.parent, options.cache_dir, console=console)
    try:
        return source.list(root, suite.dataset, options.cache_dir)
    except (ValueError, TypeError, OSError) as exc:  # a source's own check that is not a DataError yet
        raise DataError(f"{suite.path}: dataset: source {suite.dataset['source']!r}: {one_line(exc)}") from None
    except DataError as exc:
        hint = ""
        if not root.exists():
            known = f"; or run: zoo-bench data get {root.name}" if root.name in registry.downloads else ""
            hint = (f" (data root {options.data_root}: set --data-root or ZOO_BENCH_DATA_ROOT, "
                    f"or put the images in {root}{known})")
        key = "" if str(exc).startswith("dataset.") else "dataset: "  # the source named the key itself
        raise DataError(f"{suite.path}: {key}{exc}{hint}") from None


def check_sizes(suite: Suite, listing: Listing) -> None:
    """Every size must fit in every class's train part (one line per problem)."""
    counts = {listing.classes[c]: len(p) for c, p in listing.per_class("train").items()}
    smallest = min(counts, key=counts.get)
    problems = [
        f"{suite.path}: dataset.sizes[{i}]: {size} images per class asked, but class {smallest!r} has only "
        f"{counts[smallest]} train images (allowed: up to {counts[smallest]})"
        for i, size in enumerate(suite.sizes) if size > counts[smallest]
    ]
    empty = [c for c, p in listing.per_class("test").items() if not p]
    problems += [f"{suite.path}: dataset.test: class {listing.classes[c]!r} has no test images" for c in empty]
    if problems:
        raise SuiteError(problems)


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_metadata(suite: Suite, run_id: str, backends: dict[str, Backend | Exception], trials: int,
                 classes: list[str] | None = None) -> dict[str, Any]:
    """What run.json records: the suite as run, class order, selection, versions, devices, machine, commit."""
    devices = {}
    for name, backend in backends.items():
        if isinstance(backend, Backend):
            d = backend.device()
            devices[name] = {"kind": d.kind, "name": d.name, "precision": d.precision, "settings": d.settings,
                             "versions": backend.versions()}
        else:
            devices[name] = {"error": str(backend)}
    return {
        "run_id": run_id, "suite_name": suite.name, "suite_file": str(suite.path), "profile": suite.profile,
        "suite": suite.raw, "trials": trials, "started_at": now_iso(), "classes": classes,
        "selection": selection_meta(suite),
        "versions": {"python": platform.python_version(), "zoo-bench": __version__,
                     **{p: _pkg_version(p) for p in ("torch", "torchvision", "tensorflow", "keras", "scikit-learn",
                                                     "numpy")}},
        "devices": devices, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent), "argv": sys.argv,
    }


def selection_meta(suite: Suite) -> dict[str, Any] | None:
    """How tuned tables pick a configuration: the metric and the parameters tuned per strategy."""
    if suite.select_metric is None:
        return None
    return {"metric": suite.select_metric, "tuned": {k: list(v) for k, v in suite.tuned.items()},
            "defaults": suite.tuned_defaults, "refit": suite.refit}


def make_backends(suite: Suite, registry: Registry, options: RunOptions) -> dict[str, Backend | Exception]:
    """One backend instance per backend the suite names, or the error that stops its trials."""
    out: dict[str, Backend | Exception] = {}
    for name in suite.backends:
        cls = registry.backends[name]
        try:
            out[name] = cls(device=options.device or suite.device, precision=options.precision or suite.precision,
                            weights_dir=options.weights_dir, cache_dir=str(options.cache_dir))
        except ZooBenchError as exc:
            out[name] = exc
        except Exception as exc:  # a faulty backend plugin fails its own trials, not the run
            out[name] = ZooBenchError(f"backend {name} could not start: {one_line(exc)}")
    return out


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarise_epochs(epochs: list[EpochStats]) -> dict[str, Any]:
    """Epoch timing fields: the median skips the first epoch (tracing, autotune, warm caches)."""
    images = [e for e in epochs if e.phase == "images"]
    heads = [e for e in epochs if e.phase == "features"]
    main = images or heads
    later = [e.seconds for e in main[1:]] or [e.seconds for e in main]
    seconds = sum(e.seconds for e in main)
    return {
        "epochs": len(epochs),
        "epoch_seconds": [e.seconds for e in main],
        "epoch_time_s": _median(later),
        "first_epoch_s": main[0].seconds if main else None,
        "head_epoch_time_s": _median([e.seconds for e in heads[1:]] or [e.seconds for e in heads]),
        "train_images_per_s": (sum(e.images for e in main) / seconds) if seconds > 0 else None,
        "train_time_s": sum(e.seconds for e in epochs) if epochs else None,
    }


def one_line(exc: BaseException) -> str:
    """An exception as the one line a result row keeps (the traceback goes to errors.log)."""
    text = str(exc) if isinstance(exc, ZooBenchError) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def trial_row(trial: Trial) -> dict[str, Any]:
    """The identifying fields every row starts with."""
    return {"trial_id": trial.id, "backend": trial.backend, "backbone": trial.backbone, "strategy": trial.strategy,
            "params": trial.param_dict, "size_per_class": trial.size, "seed": trial.seed, "refit": trial.refit,
            "status": "error",
            "error": None, "diverged_epoch": None}


def log_error(run_dir: Path, trial: Trial, text: str) -> None:
    """Append a trial's full error text to the run's errors.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "errors.log", "a") as fh:
        fh.write(f"== {now_iso()} {trial.id}\n{text}\n")


class Runner:
    """Runs a list of trials of one suite into one run folder.

    With ``isolation`` each trial runs in a worker process (one per backbone); a trial that kills
    its process becomes an error row and a fresh worker takes the next trial.
    """

    def __init__(self, suite: Suite, registry: Registry, store: RunStore, listing: Listing,
                 backends: dict[str, Backend | Exception], options: RunOptions, reporter: Reporter,
                 isolation: Any = None):
        self.suite, self.registry, self.store, self.listing = suite, registry, store, listing
        self.backends, self.options, self.reporter = backends, options, reporter
        self.isolation = isolation
        self.images = ImageCache(options.cache_dir)
        self.features = FeatureCache()
        self.head_sweeps = HeadSweeps()
        self._test: dict[int, Any] = {}  # image size -> the stacked test part, shared by every trial
        self._skipped_logged: set[str] = set()

    def run(self, trials: list[Trial]) -> list[dict[str, Any]]:
        """Run the trials not yet finished; return the rows written now."""
        self.store.heal()  # a line cut by an earlier kill; rows of this process are written whole
        done = self.store.finished_ids()
        todo, sweeps = group_sweeps([t for t in trials if t.id not in done], self.sweep_params())
        self.reporter.start(len(trials), len(trials) - len(todo))
        rows = []
        try:
            for trial in todo:
                rows.append(self._run_one(trial, sweeps.get(trial.id, ())))
            if self.suite.refit:  # the choices exist only now that every configuration has finished
                refits = [t for t in refit_trials(self.store.rows(), selection_meta(self.suite), trials)
                          if t.id not in done]
                if refits:
                    self.reporter.start(len(refits), 0)
                for trial in refits:
                    rows.append(self._run_one(trial))
        except BaseException:  # Ctrl-C or a fatal error: abandon the trial in progress at once
            if self.isolation:
                self.isolation.close(kill=True)
            raise
        finally:
            if self.isolation:
                self.isolation.close()
            self.reporter.close()
        return rows

    def sweep_params(self) -> dict[str, tuple[str, ...]]:
        """Strategy name -> the parameters its head sweeps may differ in."""
        return {name: tuple(getattr(cls, "sweep_params", ())) for name, cls in self.registry.strategies.items()}

    def _run_one(self, trial: Trial, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        self.reporter.trial_started(trial)
        row = self.isolation.run_trial(trial, sweep) if self.isolation else self.run_trial(trial, sweep)
        self.store.append(row)
        self.reporter.trial_finished(trial, row)
        return row

    def run_trial(self, trial: Trial, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """One trial, never raising (except on interrupt): failures become "error" or "diverged" rows.

        ``sweep``: the parameters of the pending trials of its head sweep (``sweeps.group_sweeps``).
        """
        start = time.perf_counter()
        row = trial_row(trial)
        try:
            row.update(self._execute_with_retry(trial, sweep))
            row["status"] = "ok"
        except DivergedError as exc:  # a result, not a failure: this configuration does not train
            row.update(status="diverged", error=one_line(exc), diverged_epoch=exc.epoch)
        except Exception as exc:  # recorded, and the suite goes on
            row["error"] = one_line(exc)
            log_error(self.store.run_dir, trial, traceback.format_exc())
        finally:
            gc.collect()
        row["wall_s"] = time.perf_counter() - start
        row["finished_at"] = now_iso()
        return row

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
            note(self.reporter, trial, f"out of memory: retrying with batch size {batch_size}")

    def _log_skipped(self, *batches: Any) -> None:
        """Keep the unreadable images in the run folder, each once, with why: ``path<TAB>reason``."""
        reasons = {p: b.reasons.get(p, "unreadable") for b in batches for p in b.skipped}
        if not self._skipped_logged and (self.store.run_dir / "skipped_images.txt").exists():  # resume, worker
            lines = (self.store.run_dir / "skipped_images.txt").read_text().splitlines()
            self._skipped_logged.update(line.split("\t", 1)[0] for line in lines)
        new = [p for p in reasons if p not in self._skipped_logged]
        if new:
            self._skipped_logged.update(new)
            self.store.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.store.run_dir / "skipped_images.txt", "a") as fh:
                fh.write("".join(f"{p}\t{reasons[p]}\n" for p in new))

    def _execute(self, trial: Trial, batch_size: int, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        backend = self.backends[trial.backend]
        if isinstance(backend, Exception):
            raise backend
        spec = self.registry.backbones[trial.backend][trial.backbone]
        image_size = self.suite.image_size or spec.image_size
        sub = sampling.subset(self.listing, trial.size, trial.seed, self.suite.dataset["val_fraction"])
        if trial.refit:  # the chosen configuration again, on every image of the size; nothing held out
            sub = sampling.Subset(train=sub.train + sub.val, val=())
        train = self.images.load(sub.train, image_size)
        val = self.images.load(sub.val, image_size)
        if image_size not in self._test:
            self._test = {image_size: self.images.load(self.listing.test, image_size)}  # one size held at a time
        test = self._test[image_size]
        self._log_skipped(train, val, test)
        if len(set(train.labels.tolist())) < len(self.listing.classes):
            raise DataError(f"{trial.id}: after skipping unreadable images a class has no training image")
        strategy = self.registry.strategies[trial.strategy]()
        backend.seed(trial.seed)
        hidden_test = dataclasses.replace(test, labels=np.full(len(test.labels), -1, np.int64))
        ctx = TrialContext(backend=backend, spec=spec, image_size=image_size, batch_size=batch_size,
                           num_classes=len(self.listing.classes), seed=trial.seed, train=train, val=val,
                           test=hidden_test, feature_cache=self.features, on_epoch=self.reporter.epoch,
                           sweep=sweep, sweep_key=sweep_key(trial, strategy.sweep_params), head_sweeps=self.head_sweeps)
        backend.reset_peak_memory()
        with PeakRSS() as rss:
            outcome = strategy.run(ctx, trial.param_dict)
        device = backend.device()
        gpu_peak = backend.peak_memory_mb()
        fields = summarise_epochs(outcome.epochs)
        if outcome.train_time_s is not None:
            fields["train_time_s"] = outcome.train_time_s
        test_scores = scores_of(outcome.test_pred, test.labels, len(self.listing.classes),
                                outcome.test_scores if outcome.scores_are_logits else None)
        fields.update(score_fields(outcome, test_scores, val.labels, len(self.listing.classes)))
        fields["predictions_file"] = write_predictions(self.store.run_dir, trial, test, outcome, test_scores,
                                                       len(self.listing.classes))
        return {
            **fields,
            "feature_time_s": ctx.feature_time_s,
            "sweep_heads": ctx.sweep_heads,
            "peak_memory_mb": gpu_peak if gpu_peak is not None else rss.peak_mb,
            "peak_memory_kind": "accelerator" if gpu_peak is not None else "process_rss",
            "trainable_params": outcome.trainable_params, "total_params": outcome.total_params,
            "skipped_images": len(train.skipped) + len(val.skipped) + len(test.skipped),
            "train_images": len(train.labels), "val_images": len(val.labels), "test_images": len(test.labels),
            "image_size": image_size, "device": device.kind, "device_name": device.name,
            "precision": device.precision, "backend_settings": device.settings,
        }


def refit_trials(rows: list[dict[str, Any]], selection: dict[str, Any] | None, trials: list[Trial]) -> list[Trial]:
    """One refit trial per cell with an ok configuration: the chosen one, on train + validation.

    Called once every trial of the run has ended; cells of the run's own trials only (``--trials`` may
    have picked a part of the grid).
    """
    from .results import to_dataframe
    from .selection import choose

    wanted = {t.id for t in trials}
    done = [r for r in rows if r["trial_id"] in wanted and not r.get("refit")]
    if not selection or not done:
        return []
    by_id = {t.id: t for t in trials}
    chosen = choose(to_dataframe(done), selection)
    return [dataclasses.replace(by_id[tid], refit=True) for tid in chosen["trial_id"]]


MAX_CLASSES_IN_ROW = 20  # a confusion matrix of more classes goes to the trial's side file only


def history(epochs: list[EpochStats]) -> list[dict[str, Any]]:
    """The per-epoch record of a row: phase, seconds, losses, validation accuracy, learning rate."""
    return [{"epoch": i, "phase": e.stage, "input": e.phase, "seconds": e.seconds, "train_loss": e.train_loss,
             "val_loss": e.val_loss, "val_accuracy": e.val_accuracy, "lr": e.lr}
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

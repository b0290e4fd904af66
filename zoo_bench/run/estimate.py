"""How long a suite will take on this machine, before it runs: ``zoo-bench run SUITE --estimate``.

Every trial runs once as a *dry trial*: the real trial runner and the real strategy code, on a wrapper of
the real backend (:class:`TimingBackend`). What works on features or at a cut runs for real (heads, probes,
the blocks above a cut: what sklearn and the head loops really cost at these sizes), on random features
of the right width. What passes over pixels (training epochs, validation and test predictions, feature
extraction, activations below a cut, BatchNorm recalibration) is not run over the images but priced: the
same network is timed here on random pixels the first time each network and setting appears (a warm-up
pass, then a timed one, of up to two batches; a training setting is timed as one epoch of a real ``fit``),
and that rate is multiplied by the images the trial would pass. Early stopping is not foreseen: every
epoch is counted.

Decoding and features are priced only for the images that will not come from the caches: each file is
looked up in the image cache, and each image cached there in the feature cache, as the run would. The
run's start (imports, data listing, backends) is what this process took to get here; its end (tables,
paired evidence) is timed on the dry trials' rows.

Where earlier runs of the same suite on this machine (same device) hold a trial's row, that row's own time
(wall time less its decoding and feature extraction) replaces the dry trial's, and the table says so.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backend import Backend, EpochStats, fit_inputs, pooling_kw
from ..context import FeatureCache
from ..images import Batch, ImageCache, Resize, as_resize, load_npz, save_npz
from ..plan.trial import Trial
from .executors import make_units
from .prepare import PreparedRun
from .sweeps import group_sweeps, strategy_sweep_params
from .trials import TrialRunner

SAMPLE_BATCHES = 2  # a timed pass covers at most this many batches


@dataclass
class Ledger:
    """What one dry trial stands for beyond what it really ran, and what the estimate itself spent."""

    images_s: float = 0.0  # decoding the images not in the image cache, reading the others
    features_s: float = 0.0  # features not in the feature cache, through the frozen base
    pixels_s: float = 0.0  # passes over pixels: training, validation, prediction, activations below a cut
    own_s: float = 0.0  # the estimate's own work inside the trial (timing passes, cache lookups)
    decoded: int = 0
    images_cached: int = 0
    features_computed: int = 0
    features_cached: int = 0


class Rates:
    """Seconds per image of each timed pass, measured once per key: a warm-up run, then a timed one."""

    def __init__(self) -> None:
        self._seen: dict[Any, tuple[float, Any]] = {}

    def per_image(self, key: Any, run: Callable[[], Any], images: int, ledger: Ledger) -> tuple[float, Any]:
        """(seconds per image, what ``run`` returned) for ``key``, timing ``run`` on first use."""
        if key not in self._seen:
            start = time.perf_counter()
            run()
            timed = time.perf_counter()
            out = run()
            self._seen[key] = ((time.perf_counter() - timed) / max(images, 1), out)
            ledger.own_s += time.perf_counter() - start
        return self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


def is_pixels(x: Any) -> bool:
    """Whether ``x`` is a batch of uint8 images (what is priced rather than run)."""
    return isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4


def _sample(x: np.ndarray, batch_size: int) -> np.ndarray:
    """Random pixels of ``x``'s shape, at most :data:`SAMPLE_BATCHES` batches of them."""
    count = max(1, min(len(x), SAMPLE_BATCHES * batch_size))
    return np.random.default_rng(0).integers(0, 256, size=(count, *x.shape[1:]), dtype=np.uint8)


class TimingBackend:
    """A backend whose passes over pixels are priced instead of run; every other verb is the real one's."""

    def __init__(self, real: Backend, rates: Rates) -> None:
        self.real, self.rates = real, rates
        self.ledger = Ledger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _architecture(self, model: Any) -> tuple:
        return (type(model).__name__, *self.real.count_params(model))

    def _priced(self, kind: str, model: Any, x: np.ndarray, batch_size: int,
                run: Callable[[np.ndarray], Any], repeat: int = 1) -> Any:
        """Price ``repeat`` passes of ``run`` over ``x``; what the timed pass returned (its shape for the blanks)."""
        sample = _sample(x, batch_size)
        key = (kind, self._architecture(model), sample.shape, batch_size)
        rate, out = self.rates.per_image(key, lambda: run(sample), len(sample), self.ledger)
        self.ledger.pixels_s += rate * len(x) * repeat
        return out

    def forward_rate(self, model: Any, shape: tuple[int, ...], batch_size: int, run: Callable[[np.ndarray], Any]
                     ) -> float:
        """Seconds per image of ``run`` (a frozen base's features) at this shape and batch size."""
        sample = _sample(np.empty((SAMPLE_BATCHES * batch_size, *shape), np.uint8), batch_size)
        key = ("features", self._architecture(model), sample.shape, batch_size)
        return self.rates.per_image(key, lambda: run(sample), len(sample), self.ledger)[0]

    def logits(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        if not is_pixels(x) or not len(x):
            return self.real.logits(model, x, batch_size)
        out = self._priced("logits", model, x, batch_size, lambda s: self.real.logits(model, s, batch_size))
        return np.zeros((len(x), *np.shape(out)[1:]), np.float32)

    def predict(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        if not is_pixels(x) or not len(x):
            return self.real.predict(model, x, batch_size)
        self._priced("predict", model, x, batch_size, lambda s: self.real.predict(model, s, batch_size))
        return np.zeros(len(x), np.int64)

    def features(self, base: Any, images: np.ndarray, batch_size: int, **kw: Any) -> np.ndarray:
        if not len(images):
            return self.real.features(base, images, batch_size, **kw)
        out = self._priced("features", base, images, batch_size,
                           lambda s: self.real.features(base, s, batch_size, **kw))
        return np.zeros((len(images), *np.shape(out)[1:]), np.float32)

    def activations(self, lower: Any, images: np.ndarray, batch_size: int, flip: bool = False) -> np.ndarray:
        out = self._priced("activations", lower, images, batch_size,
                           lambda s: self.real.activations(lower, s, batch_size, flip=flip))
        return np.zeros((len(images), *np.shape(out)[1:]), np.float32)

    def evaluate(self, model: Any, val: tuple[np.ndarray, np.ndarray] | None, batch_size: int
                 ) -> tuple[float | None, float | None]:
        if val is None or not len(val[1]) or not is_pixels(val[0]):
            return self.real.evaluate(model, val, batch_size)
        self.logits(model, val[0], batch_size)
        return None, None

    def recalibrate_batchnorm(self, model: Any, x: np.ndarray, batch_size: int) -> None:
        if len(x):
            self._priced("recalibrate", model, x, batch_size,
                         lambda s: self.real.recalibrate_batchnorm(model, s, batch_size))

    def fit(self, model: Any, x: Any, y: np.ndarray, *, epochs: int, optimizer: Any, batch_size: int,
            inputs: str | None = None, val: tuple[np.ndarray, np.ndarray] | None = None, augment: Any = False,
            on_epoch: Any = None, monitor: Any = None) -> list[EpochStats]:
        """On features or at a cut: the real fit. On pixels: one epoch of a real fit on a sample is timed
        (after a warm-up epoch) for this network and setting, and every epoch is priced at that rate over
        the training images, plus a validation pass each epoch."""
        if fit_inputs(x, inputs) != "images":
            return self.real.fit(model, x, y, epochs=epochs, optimizer=optimizer, batch_size=batch_size, inputs=inputs,
                                 val=val, augment=augment, on_epoch=on_epoch, monitor=monitor)
        sample = _sample(x, batch_size)
        labels = np.asarray(y[:len(sample)])
        key = ("fit", self._architecture(model), sample.shape, batch_size, optimizer.name, repr(augment))
        rate, _ = self.rates.per_image(key, lambda: self.real.fit(
            model, sample, labels, epochs=1, optimizer=optimizer, batch_size=batch_size, inputs="images",
            augment=augment), len(sample), self.ledger)
        before = self.ledger.pixels_s
        if val is not None and len(val[1]) and is_pixels(val[0]):
            self._priced("logits", model, val[0], batch_size, lambda s: self.real.logits(model, s, batch_size),
                         repeat=epochs)
        per_epoch = rate * len(y) + (self.ledger.pixels_s - before) / max(epochs, 1)
        self.ledger.pixels_s += rate * len(y) * epochs
        return [EpochStats(phase="images", seconds=per_epoch, images=len(y), train_loss=0.0) for _ in range(epochs)]


class DryImages:
    """Stands in for the image cache: blank arrays of the right shape, and each file a trial loads priced
    as a decode or as a read from the image cache, whichever the run would do (one policy in memory at a
    time, as :class:`zoo_bench.images.ImageCache` keeps them)."""

    def __init__(self, cache: ImageCache, rates: "IoRates") -> None:
        self.cache, self.rates = cache, rates
        self.ledger = Ledger()
        self.pixel_keys: dict[tuple[str, Resize], str | None] = {}  # cached arrays' content keys (features)
        self._on_disk: set[tuple[str, Resize]] = set()  # decoded by an earlier trial of this estimate
        self._memory: set[str] = set()
        self._policy: Resize | None = None

    def load(self, items: Any, size: "int | Resize") -> Batch:
        policy = as_resize(size)
        if policy != self._policy:
            self._memory, self._policy = set(), policy
        start = time.perf_counter()
        for path, _ in items:
            if path in self._memory:
                continue
            self._memory.add(path)
            if (path, policy) not in self.pixel_keys:
                pixels = self.cache.cached(path, policy)
                self.pixel_keys[(path, policy)] = None if pixels is None else FeatureCache.image_key(pixels)
            if self.pixel_keys[(path, policy)] is not None or (path, policy) in self._on_disk:
                self.ledger.images_cached += 1
                self.ledger.images_s += self.rates.read(policy)
            else:
                self.ledger.decoded += 1
                self.ledger.images_s += self.rates.decode(policy)
                self._on_disk.add((path, policy))
        self.ledger.own_s += time.perf_counter() - start
        blank = np.zeros((1, policy.size, policy.size, 3), np.uint8)
        return Batch(images=np.broadcast_to(blank, (len(items), *blank.shape[1:])),
                     labels=np.array([y for _, y in items], dtype=np.int64), paths=[p for p, _ in items])


class DryFeatures(FeatureCache):
    """Stands in for the feature cache: random features of the real width (so heads and probes really fit),
    each image's features priced as a computation through the frozen base or a read from the feature cache,
    as the run would do; activations at a cut priced through the frozen blocks, kept for the backbone."""

    def __init__(self, disk: FeatureCache, images: DryImages, io: "IoRates") -> None:
        super().__init__(None)
        self.disk, self.images, self.io = disk, images, io
        self.ledger = Ledger()
        self._computed: set[tuple] = set()  # features this estimate's earlier trials computed (now on disk)
        self._rng = np.random.default_rng(0)

    def features(self, backend: Any, spec: Any, image_size: int, batch: Batch, batch_size: int,
                 pooling: str = "avg") -> tuple[np.ndarray, float]:
        base = self.frozen_base(backend, spec, image_size)
        prefix = self.prefix(backend, spec, image_size, base, pooling)
        kw = pooling_kw(pooling)
        dim = backend.feature_dim(base, **kw)
        todo = [p for p in batch.paths if prefix + (p,) not in self._features]
        if todo:
            start = time.perf_counter()
            policy, kind = spec.resize(image_size), backend.device().kind
            compute = 0
            for path in todo:
                self._features[prefix + (path,)] = True
                pixel_key = self.images.pixel_keys.get((path, policy))
                entry = None if pixel_key is None else self.disk.disk_entry(prefix, kind, pixel_key)
                if prefix + (path,) in self._computed or (entry is not None and entry.exists()):
                    self.ledger.features_cached += 1
                    self.ledger.features_s += self.io.feature_read
                else:
                    compute += 1
                    self._computed.add(prefix + (path,))
            self.ledger.own_s += time.perf_counter() - start
            if compute:
                shape = (policy.size, policy.size, 3)
                rate = backend.forward_rate(base, shape, batch_size,
                                            lambda s: backend.real.features(base, s, batch_size, **kw))
                self.ledger.features_computed += compute
                self.ledger.features_s += rate * compute
        return self._rng.standard_normal((len(batch.paths), dim)).astype(np.float32), 0.0

    def activations(self, backend: Any, spec: Any, image_size: int, cut: Any, batch: Batch, batch_size: int,
                    flip: bool = False) -> tuple[np.ndarray, float]:
        self.frozen_base(backend, spec, image_size)
        prefix = (backend.name, spec.name, spec.weights, image_size, "cut", cut.index, flip)
        todo = [i for i, p in enumerate(batch.paths) if prefix + (p,) not in self._features]
        if todo:
            for i in todo:
                self._features[prefix + (batch.paths[i],)] = True
            blanks = np.broadcast_to(batch.images[:1], (len(todo), *batch.images.shape[1:]))
            backend.activations(cut.lower, blanks, batch_size, flip=flip)  # priced, not run
        return self._rng.standard_normal((len(batch.paths), *cut.shape)).astype(np.float32), 0.0


class IoRates:
    """Seconds per image of decoding (per resize policy, on files of the data set, thread-parallel as the
    image cache decodes) and of reading a decoded array or a feature row back from the caches."""

    SAMPLE = 16

    def __init__(self, files: list[str], ledger: Callable[[], Ledger]) -> None:
        self.files = files
        self._ledger = ledger
        self._decode: dict[Resize, float] = {}
        self._read: dict[Resize, float] = {}
        self._scratch = tempfile.TemporaryDirectory(prefix="zoo-bench-estimate-")
        self.feature_read = self._time_reads({"features": np.zeros(1280, np.float32)})

    def _time_reads(self, arrays: dict[str, np.ndarray], count: int = 20) -> float:
        path = Path(self._scratch.name) / f"{len(os.listdir(self._scratch.name))}.npz"
        save_npz(path, arrays)
        start = time.perf_counter()
        for _ in range(count):
            load_npz(path)
        return (time.perf_counter() - start) / count

    def decode(self, policy: Resize) -> float:
        if policy not in self._decode:
            start = time.perf_counter()
            step = max(1, len(self.files) // self.SAMPLE)
            sample = [(p, 0) for p in self.files[::step][:self.SAMPLE]]
            ImageCache(None).load(sample, policy)
            seconds = time.perf_counter() - start
            self._decode[policy] = seconds / max(len(sample), 1)
            self._ledger().own_s += seconds
        return self._decode[policy]

    def read(self, policy: Resize) -> float:
        if policy not in self._read:
            start = time.perf_counter()
            self._read[policy] = self._time_reads({"pixels": np.zeros((policy.size, policy.size, 3), np.uint8)})
            self._ledger().own_s += time.perf_counter() - start
        return self._read[policy]

    def close(self) -> None:
        self._scratch.cleanup()


@dataclass
class TrialEstimate:
    trial: Trial
    seconds: float  # the whole trial: its own work and the decoding and features it pays for
    own_s: float  # its own work (training, prediction, fits), without decoding and features
    images_s: float
    features_s: float
    source: str  # "measured" (a dry trial here) or "earlier runs"
    ledger: Ledger = field(default_factory=Ledger)


@dataclass
class Estimate:
    """The expected wall time of a run and of each trial, and where each number came from."""

    trials: list[TrialEstimate]
    start_s: float  # process start to the first trial: imports, data listing, backends
    finish_s: float  # tables, paired evidence, results files
    refits: int  # refit trials foreseen (one per tuned cell), priced as their cell's mean trial
    refit_s: float
    took_s: float  # what the estimate itself took
    timed_passes: int
    device: str
    failed: list[tuple[str, str]] = field(default_factory=list)  # (trial id, error) of dry trials that failed

    @property
    def total_s(self) -> float:
        return self.start_s + sum(t.seconds for t in self.trials) + self.refit_s + self.finish_s

    def totals(self, name: str) -> int:
        return sum(getattr(t.ledger, name) for t in self.trials)


def earlier_rows(results_dir: Path, suite_name: str, device_name: str) -> dict[str, list[dict[str, Any]]]:
    """Finished rows of earlier runs of this suite on this device, by trial id."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    folder = results_dir / suite_name
    for jsonl in sorted(folder.glob("*/trials.jsonl")) if folder.is_dir() else []:
        try:
            lines = jsonl.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("status") == "ok" and row.get("device_name") == device_name and row.get("wall_s") is not None:
                by_id.setdefault(row["trial_id"], []).append(row)
    return by_id


def own_seconds(row: dict[str, Any]) -> float:
    """A finished trial's own time: its wall time less decoding its images and computing features."""
    spent = (row.get("feature_time_s") or 0.0) + (row.get("image_time_s") or 0.0)
    return max(0.0, float(row["wall_s"]) - spent)


def estimate(prepared: PreparedRun, start_s: float, finish: Callable[[], Any],
             earlier: dict[str, list[dict[str, Any]]] | None = None) -> Estimate:
    """Dry-run every trial of ``prepared`` (whose store is a scratch folder) and price it; ``finish`` does
    what the end of a run does (the table file, paired evidence, the tables) on the dry rows, and is timed.
    See the module docstring."""
    began = time.perf_counter()
    p = prepared
    rates = Rates()
    current = {"ledger": Ledger()}
    io = IoRates([path for path, _ in p.listing.test] + [path for path, _ in p.listing.train],
                 lambda: current["ledger"])
    backends = {name: TimingBackend(b, rates) if isinstance(b, Backend) else b for name, b in p.backends.items()}
    runner = TrialRunner(p.suite, p.registry, p.listing, backends, p.options, p.store.run_dir)
    images = DryImages(ImageCache(p.options.cache_dir), io)
    runner.images = images
    runner.features = DryFeatures(FeatureCache(p.options.cache_dir / "features" if p.options.cache_dir else None),
                                  images, io)
    earlier = earlier or {}
    done = p.store.finished_ids()
    todo, sweeps = group_sweeps([t for t in p.trials if t.id not in done], strategy_sweep_params(p.registry))
    out: list[TrialEstimate] = []
    failed: list[tuple[str, str]] = []
    try:
        for unit in make_units(todo, sweeps, 1):
            for trial in unit.trials:
                ledger = Ledger()
                current["ledger"] = images.ledger = runner.features.ledger = ledger
                for b in backends.values():
                    if isinstance(b, TimingBackend):
                        b.ledger = ledger
                result = runner.run(trial, unit.sweeps.get(trial.id, ()))
                if result.row["status"] == "error":  # priced as far as it got, as the run would spend
                    failed.append((trial.id, result.row["error"]))
                p.store.append(result.row)
                own = max(0.0, result.row["wall_s"] - ledger.own_s) + ledger.pixels_s
                source = "measured"
                rows = earlier.get(trial.id)
                if rows:
                    own, source = statistics.median(own_seconds(r) for r in rows), "earlier runs"
                out.append(TrialEstimate(trial, own + ledger.images_s + ledger.features_s, own, ledger.images_s,
                                         ledger.features_s, source, ledger))
    finally:
        io.close()
    refits, refit_s = _refits(p, out)
    finish_start = time.perf_counter()
    finish()
    finish_s = time.perf_counter() - finish_start
    names = {b.device().name for b in p.backends.values() if isinstance(b, Backend)}
    return Estimate(out, start_s, finish_s, refits, refit_s, time.perf_counter() - began, len(rates),
                    ", ".join(sorted(names)), failed)


def _refits(p: PreparedRun, trials: list[TrialEstimate]) -> tuple[int, float]:
    """Refit trials a suite with ``refit`` adds once its configurations are chosen: one per cell of a tuned
    strategy, priced as the mean of that cell's configurations."""
    if not p.suite.refit:
        return 0, 0.0
    cells: dict[tuple, list[float]] = {}
    for t in trials:
        if p.suite.tuned.get(t.trial.strategy):
            key = (t.trial.backend, t.trial.backbone, t.trial.strategy, t.trial.size, t.trial.seed)
            cells.setdefault(key, []).append(t.own_s)
    return len(cells), sum(statistics.mean(v) for v in cells.values())

"""What a strategy sees of its trial: data, backbone, backend, and the shared feature cache."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol

import numpy as np

from .augment import Augment
from .backend import Backend, BackboneSpec, Cut, CutViews, EpochCallback, HeadFit, HeadFitResult, HeadSpec, pooling_kw
from .errors import ZooBenchError
from .images import Batch, load_npz, save_npz
from .params import params_key



# Activations at a cut stay in memory (train with its mirror view, validation and test): above this
# size a trial trains on pixels instead.
CUT_CACHE_BYTES = 4 * 2**30


class FeatureCache:
    """Bottleneck features per (backend, backbone, weights, image size, precision, image).

    Frozen-base strategies ask for features of their images; only images never seen by this
    backbone are run through it, so after the first trial a head epoch costs milliseconds.
    The frozen base itself is kept for the backbone in use and dropped when the backbone changes.

    With ``disk_dir``, features also live on disk, one ``.npz`` per image keyed by the content of
    its decoded pixels and by backend, backbone, weights, image size, precision and device kind;
    written atomically, checked on read (CRC, shape, dtype; a bad entry is recomputed). So worker
    processes, a resumed run and the next run of the same images compute each image's features once.
    """

    def __init__(self, disk_dir: Path | None = None) -> None:
        self.disk_dir = disk_dir
        self._features: dict[tuple, np.ndarray] = {}
        self._base_key: tuple | None = None
        self._base: Any = None
        self._base_error: ZooBenchError | None = None
        self.disk_hits = 0  # features read from disk instead of computed
        self.rejected = 0  # disk entries found damaged or of the wrong shape, then recomputed

    def frozen_base(self, backend: Backend, spec: BackboneSpec, image_size: int) -> Any:
        """The pretrained base for feature extraction, built once per backbone."""
        key = (backend.name, spec.name, spec.weights, image_size)
        if key != self._base_key:
            self._base, self._base_error, self._base_key = None, None, None
            self._features = {k: v for k, v in self._features.items() if k[:4] == key}
            try:
                self._base = backend.build_base(spec, pretrained=True, image_size=image_size)
            except ZooBenchError as exc:  # remembered: every trial of this backbone fails the same way
                self._base_error = exc
            self._base_key = key  # only now: an unexpected error (out of memory) leaves nothing cached
        if self._base_error is not None:
            raise self._base_error
        return self._base

    def _disk_folder(self, prefix: tuple, device_kind: str) -> Path | None:
        if self.disk_dir is None:
            return None
        name = hashlib.blake2b(repr(prefix + (device_kind,)).encode(), digest_size=8).hexdigest()
        return self.disk_dir / name

    @staticmethod
    def image_key(pixels: np.ndarray) -> str:
        """An image's key in the feature cache: a hash of its decoded pixels."""
        return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=20).hexdigest()

    @staticmethod
    def prefix(backend: Backend, spec: BackboneSpec, image_size: int, base: Any, pooling: str = "avg") -> tuple:
        """What an image's features depend on besides its pixels: backend, backbone, weights, size, precision
        (and a pooling other than the average)."""
        weights = spec.weights
        if getattr(base, "weights_id", None):  # which file, where one name can mean several (timm --weights-dir)
            weights = f"{weights}@{base.weights_id}"
        prefix = (backend.name, spec.name, weights, image_size, backend.device().precision)
        if pooling_kw(pooling):  # the average's keys stay as they were before poolings existed
            prefix += (pooling,)
        return prefix

    def disk_entry(self, prefix: tuple, device_kind: str, image_key: str) -> Path | None:
        """Where an image's features (``image_key`` of its pixels) live on disk under ``prefix`` (None: no disk
        cache)."""
        folder = self._disk_folder(prefix, device_kind)
        return None if folder is None else folder / image_key[:2] / f"{image_key}.npz"

    def features(self, backend: Backend, spec: BackboneSpec, image_size: int, batch: Batch,
                 batch_size: int, pooling: str = "avg") -> tuple[np.ndarray, float]:
        """Features for a batch of images under a head pooling, and the seconds spent computing the missing ones."""
        base = self.frozen_base(backend, spec, image_size)
        prefix = self.prefix(backend, spec, image_size, base, pooling)
        kw = pooling_kw(pooling)
        todo = [i for i, p in enumerate(batch.paths) if prefix + (p,) not in self._features]
        on_disk = bool(todo) and self.disk_dir is not None
        entries: dict[int, Path] = {}
        if on_disk:
            dim = backend.feature_dim(base, **kw)
            missing = []
            for i in todo:
                entries[i] = self.disk_entry(prefix, backend.device().kind, self.image_key(batch.images[i]))
                row = self._read(entries[i], dim)
                if row is None:
                    missing.append(i)
                else:
                    self._features[prefix + (batch.paths[i],)] = row
                    self.disk_hits += 1
            todo = missing
        seconds = 0.0
        if todo:
            start = time.perf_counter()
            computed = backend.features(base, batch.images[todo], batch_size, **kw)
            seconds = time.perf_counter() - start
            for i, row in zip(todo, computed):
                self._features[prefix + (batch.paths[i],)] = row
                if on_disk:
                    try:
                        save_npz(entries[i], {"features": np.asarray(row, np.float32)})
                    except OSError:
                        pass  # a full or read-only cache disk costs a recomputation next time, nothing else
        if not batch.paths:
            return np.zeros((0, backend.feature_dim(base, **kw)), np.float32), seconds
        return np.stack([self._features[prefix + (p,)] for p in batch.paths]), seconds

    def activations(self, backend: Backend, spec: BackboneSpec, image_size: int, cut: Cut, batch: Batch,
                    batch_size: int, flip: bool = False) -> tuple[np.ndarray, float]:
        """Activations at a cut of the pretrained base for a batch of images (``flip``: of their mirror
        images), and the seconds spent computing the missing ones. Kept in memory for the backbone in use,
        like the frozen base: every trial and epoch of it that cuts there reuses them."""
        self.frozen_base(backend, spec, image_size)  # a new backbone drops the previous one's entries
        prefix = (backend.name, spec.name, spec.weights, image_size, backend.device().precision, "cut", cut.index,
                  flip)
        todo = [i for i, p in enumerate(batch.paths) if prefix + (p,) not in self._features]
        seconds = 0.0
        if todo:
            start = time.perf_counter()
            computed = backend.activations(cut.lower, batch.images[todo], batch_size, flip=flip)
            seconds = time.perf_counter() - start
            for i, row in zip(todo, computed):
                self._features[prefix + (batch.paths[i],)] = row
        if not batch.paths:
            return np.zeros((0, *cut.shape), np.float32), seconds
        return np.stack([self._features[prefix + (p,)] for p in batch.paths]), seconds

    def _read(self, entry: Path, dim: int) -> np.ndarray | None:
        """A disk entry that passes every check, or None (a damaged one is counted)."""
        if not entry.exists():
            return None
        row = (load_npz(entry) or {}).get("features")
        if row is not None and row.shape == (dim,) and row.dtype == np.float32:
            return row
        self.rejected += 1
        return None


class SweepStore(Protocol):
    """Where a trial leaves the heads it trained for the other trials of its sweep, and takes its own
    (the runner's ``zoo_bench.run.sweeps.HeadSweeps``)."""

    def take(self, key: Hashable, params: dict[str, Any]) -> Any | None: ...
    def put(self, key: Hashable, results: dict[tuple, Any]) -> None: ...


@dataclass
class TrialMeasures:
    """What a trial measures while it runs, apart from what it was given: the context's methods (and the
    strategy, through :meth:`TrialContext.fine_tune_from`) write it; the runner reads it into the row."""

    feature_time_s: float = 0.0  # seconds spent computing bottleneck features (0 when all were cached)
    cut_time_s: float = 0.0  # seconds spent computing activations at a cut (Cut)
    cut_used: Cut | None = None  # where this trial's fine-tuning started from cached activations
    sweep_heads: int | None = None  # heads trained together with this trial's head, itself included
    random_base: bool = False  # the strategy built its base without pretrained weights (scratch)


@dataclass(frozen=True)
class TrialContext:
    """Everything one trial needs, fixed when it starts (its inputs); what the trial measures goes to
    ``measured``. Strategies call only these methods and ``backend``'s verbs."""

    backend: Backend
    spec: BackboneSpec
    image_size: int
    batch_size: int
    num_classes: int
    seed: int
    train: Batch
    val: Batch
    test: Batch  # its labels are withheld (all -1): they score the trial and nothing else
    feature_cache: FeatureCache
    on_epoch: EpochCallback | None = None
    sweep: tuple[dict[str, Any], ...] = ()  # parameters of this trial's pending sweep, its own first
    sweep_key: Any = None  # what the sweep's trials share (sweeps.sweep_key)
    head_sweeps: SweepStore | None = None  # heads trained by an earlier trial of the same sweep
    pooling: str = "avg"  # the head's pooling of the base's feature map (``Strategy.pooling``)
    measured: TrialMeasures = field(default_factory=TrialMeasures)

    def part(self, name: str) -> Batch:
        """The ``train``, ``val`` or ``test`` images."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def features(self, name: str) -> np.ndarray:
        """Pooled bottleneck features of a part, from the frozen pretrained base (cached)."""
        feats, seconds = self.feature_cache.features(self.backend, self.spec, self.image_size,
                                                     self.part(name), self.batch_size, self._pooling())
        self.measured.feature_time_s += seconds
        return feats

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted classes and class scores (logits) of a model; scores are None where the backend has none."""
        if not self.backend.supports("logits"):
            return self.backend.predict(model, x, self.batch_size), None
        scores = self.backend.logits(model, x, self.batch_size)
        if not len(scores):
            return np.zeros(0, np.int64), np.zeros((0, self.num_classes), np.float32)
        return scores.argmax(axis=1).astype(np.int64), scores

    def _pooling(self) -> str:
        """This trial's pooling, refused in one line where the backend does not implement it."""
        if self.pooling not in self.backend.poolings:
            raise ZooBenchError(f"backend {self.backend.name!r} does not implement pooling {self.pooling!r} "
                                f"(it implements: {', '.join(self.backend.poolings)})")
        return self.pooling

    def feature_dim(self, base: Any) -> int:
        """Width of the base's features under this trial's pooling."""
        return self.backend.feature_dim(base, **pooling_kw(self._pooling()))

    def attach(self, base: Any, head: Any) -> Any:
        """A classifier of images: ``base``, this trial's pooling, then ``head``."""
        return self.backend.attach(base, head, **pooling_kw(self._pooling()))

    def augmentation(self, aug: "Augment") -> "Augment":
        """``aug`` if this trial's backend implements each of its terms; else a one-line error naming the missing ones."""
        missing = [t for t in aug.terms() if t not in self.backend.augmentations]
        if missing:
            raise ZooBenchError(f"backend {self.backend.name!r} does not implement the augmentation "
                                f"{', '.join(missing)} (it implements: {', '.join(self.backend.augmentations)})")
        return aug

    def new_base(self, pretrained: bool) -> Any:
        """A fresh base whose weights the strategy may change."""
        self.measured.random_base = self.measured.random_base or not pretrained
        return self.backend.build_base(self.spec, pretrained=pretrained, image_size=self.image_size)

    def new_head(self, in_features: int, hidden: list[int] | tuple[int, ...], dropout: float) -> Any:
        """A fresh head for this trial's classes."""
        return self.backend.new_head(in_features, self.num_classes, HeadSpec(tuple(hidden), dropout))

    def cut(self, model: Any, aug: Augment) -> Cut | None:
        """Where ``model``'s frozen bottom ends, when its activations there can stand in for the pixels:
        the backend can split it, the augmentation is at most a flip (a warp or a colour change needs
        the pixels), the base is the pretrained one, and every part's activations fit in
        :data:`CUT_CACHE_BYTES`. None otherwise: the caller trains on pixels."""
        if aug.terms() not in ([], ["flip"]) or self.measured.random_base:
            return None
        cut = self.backend.cut(model)
        if cut is None:
            return None
        views = len(self.train.labels) * (2 if aug.flip else 1) + len(self.val.labels) + len(self.test.labels)
        return cut if views * cut.nbytes_per_image <= CUT_CACHE_BYTES else None

    def fine_tune_from(self, cut: Cut) -> None:
        """Record that this trial's fine-tuning starts from cached activations at ``cut`` (the row's ``cut``)."""
        self.measured.cut_used = cut

    def train_views(self, cut: Cut, flip: bool) -> CutViews:
        """The training images' activations at ``cut``, each view computed when a fit first draws it."""
        def fetch(indices: np.ndarray, mirrored: bool) -> np.ndarray:
            part = self.train
            return self._activations(cut, Batch(images=part.images[indices], labels=part.labels[indices],
                                                paths=[part.paths[i] for i in indices]), mirrored)

        return CutViews(n=len(self.train.labels), shape=cut.shape, flip=flip, fetch=fetch)

    def activations(self, cut: Cut, name: str) -> np.ndarray:
        """Activations at ``cut`` of a part's images (cached per backbone, cut, size, precision and image)."""
        return self._activations(cut, self.part(name), False)

    def _activations(self, cut: Cut, batch: Batch, flip: bool) -> np.ndarray:
        acts, seconds = self.feature_cache.activations(self.backend, self.spec, self.image_size, cut, batch,
                                                       self.batch_size, flip)
        self.measured.cut_time_s += seconds
        return acts

    def val_data(self, features: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Validation data for ``fit`` (features or images), or None when nothing is held out."""
        if len(self.val.labels) == 0:
            return None
        x = self.features("val") if features else self.val.images
        return x, self.val.labels

    def epoch_callback(self, phase_offset: int, total: int) -> Callable:
        """An epoch callback that numbers epochs across a strategy's phases."""
        def callback(index: int, _total: int, stats):
            if self.on_epoch is not None:
                self.on_epoch(phase_offset + index, total, stats)
        return callback

    def sweep_together(self, params: dict[str, Any], compute: Callable[[list[dict[str, Any]]], list[Any]]) -> Any:
        """This trial's result, computed together with the pending trials of its sweep.

        The first trial of a sweep calls ``compute`` on every pending configuration (its own first) and
        leaves the others their results; a later trial of the sweep takes its own. ``sweep_heads`` says
        how many configurations were computed together.
        """
        key = (self.sweep_key, self.batch_size, self.image_size)
        if self.head_sweeps is not None and self.sweep:
            done = self.head_sweeps.take(key, params)
            if done is not None:
                self.measured.sweep_heads, result = done
                return result
        mine = params_key(params)
        configs = [params] + [q for q in self.sweep if params_key(q) != mine]
        results = compute(configs)
        self.measured.sweep_heads = len(configs)
        if self.head_sweeps is not None and len(configs) > 1:
            self.head_sweeps.put(key, {params_key(q): (len(configs), r) for q, r in zip(configs[1:], results[1:])})
        return results[0]

    def train_heads(self, params: dict[str, Any], fit_of: Callable[[dict[str, Any]], HeadFit],
                    epochs: int) -> HeadFitResult:
        """This trial's head on cached features, trained together with its sweep's heads.

        ``fit_of`` maps a trial's parameters to its :class:`HeadFit`. The first trial of a sweep trains
        every pending head in one :meth:`Backend.fit_heads` call and leaves the others theirs; needs
        a backend that ``supports("fit_heads")`` (a strategy fits alone elsewhere).
        """
        return self.sweep_together(params, lambda configs: self.backend.fit_heads(
            self.features("train"), self.train.labels, [fit_of(q) for q in configs], num_classes=self.num_classes,
            epochs=epochs, batch_size=self.batch_size, seed=self.seed, val=self.val_data(features=True),
            on_epoch=self.epoch_callback(0, epochs)))

"""The Backend API: the verbs every strategy uses, implemented once per framework.

Data crosses this boundary as NumPy arrays: images as uint8 ``(N, H, W, 3)``, bottleneck
features as float32 ``(N, D)``, labels as int64 ``(N,)``. Models are opaque handles that only the
backend that made them understands.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

import math

from .adapters import Adapter
from .errors import BackendUnavailableError, DivergedError, ZooBenchError
from .images import Resize
from .metrics import cross_entropy
from .schedules import Schedule

if TYPE_CHECKING:
    from .augment import Augment
    from .unfreeze import Parts


def cpu_name() -> str:
    """The CPU model, for results (``model name`` in /proc/cpuinfo where there is one)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


FAMILIES = {"vit": "timm vision transformers (timm:vit_*, timm:deit_*)"}  # BackboneSpec.family: what each means


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained model a backend can build.

    Attributes:
        name: the suite name, the same in every backend (``resnet50``).
        backend: the backend this spec belongs to (``torch``).
        image_size: the input size the weights were trained at.
        mean, std: per-channel normalisation of [0, 1] pixels.
        builder: called by the backend as ``builder(pretrained=..., image_size=..., weights_dir=...)``;
            what it returns is the backend's business.
        weights: a human name of the pretrained weights (``IMAGENET1K_V1``); part of cache keys.
        description: one line for ``zoo-bench plugins``.
        crop_pct, interpolation, crop_mode: the eval resize the weights expect (timm's pretrained
            config; see :class:`zoo_bench.images.Resize`): by default the shorter side to
            ``floor(size / crop_pct)`` with that filter, then the centre square.
        weights_present: ``weights_present(weights_dir)`` says whether the pretrained weights are on
            this machine already (``zoo-bench list backbones``); None when the plugin cannot tell.
        family: the architecture family, for strategies that run on one only (``Strategy.backbone_families``):
            ``"vit"`` for a vision transformer whose token sequence a strategy may extend (timm's
            ``VisionTransformer``: ``vit_*``, ``deit_*``); empty where no strategy needs to know.
    """

    name: str
    backend: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    builder: Callable[..., Any]
    weights: str = "imagenet"
    description: str = ""
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    crop_mode: str = "center"
    weights_present: Callable[[str | None], bool] | None = None
    family: str = ""

    def present(self, weights_dir: str | None) -> bool | None:
        """Whether the pretrained weights are on this machine: None when there are none or the plugin
        cannot tell (a check that raises tells nothing either way)."""
        if self.weights == "none" or self.weights_present is None:
            return None
        try:
            return bool(self.weights_present(weights_dir))
        except Exception:
            return None

    def resize(self, image_size: int | None = None) -> "Resize":
        """The resize policy of this backbone at ``image_size`` (its own size by default)."""
        fill = tuple(round(255 * v) for v in self.mean) if self.crop_mode == "border" else (0, 0, 0)
        return Resize(image_size or self.image_size, self.crop_pct, self.interpolation, self.crop_mode, fill)


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimiser as a strategy asks for it; the backend maps it to its framework."""

    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = Schedule()  # the per-epoch factor of ``lr`` (zoo_bench.schedules)
    layer_decay: float = 1.0  # the top block of the base trains at lr x d, the next at lr x d^2, ... (1: off)

    def lr_at(self, epoch: int, epochs: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based) of a phase of ``epochs`` epochs."""
        return self.lr * self.schedule.factor(epoch, epochs)


@dataclass(frozen=True)
class HeadSpec:
    """The new classification head put on a pooled base: hidden layers, then the class layer."""

    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.5


@dataclass(frozen=True)
class HeadFit:
    """One head of a head sweep (:meth:`Backend.fit_heads`): its shape, optimiser and stopping rule."""

    head: HeadSpec
    optimizer: OptimizerSpec
    restore_best: bool = False
    patience: int = 0


@dataclass
class HeadFitResult:
    """A head trained in a sweep: the model handle, its epochs, and where it peaked or diverged."""

    head: Any
    epochs: list["EpochStats"]
    best_epoch: int | None = None
    diverged_epoch: int | None = None
    diverged_loss: float | None = None


@dataclass
class EpochStats:
    """What one epoch of training cost and gave.

    ``phase`` is ``"features"`` for a head trained on cached bottleneck features and ``"images"``
    for an epoch that runs the backbone on pixels.
    """

    phase: str
    seconds: float
    images: int
    train_loss: float
    val_accuracy: float | None = None
    val_loss: float | None = None
    lr: float | None = None
    stage: str = "train"  # the strategy's phase: "head", "finetune" or "train"
    data_seconds: float | None = None  # host time spent producing the epoch's batches (gather, copy, augmentation)


@dataclass
class Monitor:
    """Validation bookkeeping across the fits of one trial: best epoch, patience, restore-best.

    The score is validation accuracy, ties broken by the lower validation loss, then the earlier epoch.
    Epochs are counted across fits (phases) from 1; patience counts within a phase, so a head phase
    that stalls still leaves the fine-tuning phase its epochs. A backend's ``fit`` calls
    :meth:`start_phase` once, :meth:`update` after each epoch, and keeps a copy of the weights when
    ``update`` says the epoch is the best so far and ``restore_best`` is set.
    """

    restore_best: bool = False
    patience: int = 0
    best_epoch: int | None = None
    best_accuracy: float | None = None
    best_loss: float | None = None
    epochs_done: int = 0
    _stale: int = 0

    def start_phase(self) -> bool:
        """Begin a fit; True when an earlier phase holds the best weights (copy the starting weights)."""
        self._stale = 0
        return self.restore_best and self.best_epoch is not None

    def update(self, val_accuracy: float | None, val_loss: float | None) -> tuple[bool, bool]:
        """Record an epoch's validation scores; return (best so far, stop this phase now)."""
        self.epochs_done += 1
        if val_accuracy is None:  # nothing held out: neither best nor early stopping applies
            return False, False
        loss = val_loss if val_loss is not None and math.isfinite(val_loss) else math.inf
        best_loss = self.best_loss if self.best_loss is not None else math.inf
        better = self.best_accuracy is None or val_accuracy > self.best_accuracy or (
            val_accuracy == self.best_accuracy and loss < best_loss)
        if better:
            self.best_epoch, self.best_accuracy, self.best_loss = self.epochs_done, val_accuracy, val_loss
            self._stale = 0
        else:
            self._stale += 1
        return better, bool(self.patience) and self._stale >= self.patience


EpochCallback = Callable[[int, int, EpochStats], None]


def check_finite_loss(loss: float, epoch: int) -> None:
    """Stop a fit whose loss became NaN or infinite: more epochs cannot bring it back.

    ``epoch`` is 0-based, the message and the error's ``epoch`` 1-based, as the progress bar counts.
    """
    if not math.isfinite(loss):
        raise DivergedError(epoch + 1, loss)


FIT_INPUTS = ("images", "features", "cut")  # what ``Backend.fit`` trains on (EpochStats.phase records it)


def fit_inputs(x: Any, inputs: str | None) -> str:
    """The kind of ``fit``'s ``x``: ``inputs`` where the caller says it; otherwise read off ``x`` (uint8:
    images; a :class:`CutViews` or a float array of more than two axes: activations at a cut; else features)."""
    if inputs is not None:
        if inputs not in FIT_INPUTS:
            raise ValueError(f"fit(inputs={inputs!r}): expected one of {', '.join(FIT_INPUTS)}")
        return inputs
    if isinstance(x, CutViews):
        return "cut"
    return "images" if x.dtype == np.uint8 else ("cut" if x.ndim > 2 else "features")


class EpochBook:
    """The bookkeeping of one ``fit``'s epochs, written once for every backend.

    A backend's loop trains an epoch its own way, then calls :meth:`end_epoch`, which stops a diverged
    fit, scores the validation images, records the :class:`EpochStats`, reports it (``on_epoch``) and
    asks the :class:`Monitor` whether to stop, keeping the best weights where ``restore_best`` wants
    them; :meth:`finish` restores those weights and returns the epochs' stats. ``snapshot()`` copies
    the model's weights and ``restore(copy)`` puts them back, in the backend's own terms.
    """

    def __init__(self, backend: "Backend", model: Any, *, phase: str, epochs: int, batch_size: int,
                 val: tuple[np.ndarray, np.ndarray] | None, on_epoch: "EpochCallback | None",
                 monitor: Monitor | None, snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self.backend, self.model, self.phase, self.epochs, self.batch_size = backend, model, phase, epochs, batch_size
        self.val, self.on_epoch, self.monitor, self.snapshot, self.restore = val, on_epoch, monitor, snapshot, restore
        self.stats: list[EpochStats] = []
        self.best = snapshot() if monitor is not None and monitor.start_phase() else None

    def end_epoch(self, epoch: int, *, seconds: float, images: int, train_loss: float, lr: float | None,
                  data_seconds: float | None = None) -> bool:
        """Record epoch ``epoch`` (0-based); True when the fit should stop here."""
        check_finite_loss(train_loss, epoch)
        val_accuracy, val_loss = self.backend.evaluate(self.model, self.val, self.batch_size)
        record = EpochStats(phase=self.phase, seconds=seconds, images=images, train_loss=train_loss,
                            val_accuracy=val_accuracy, val_loss=val_loss, lr=lr, data_seconds=data_seconds)
        self.stats.append(record)
        if self.on_epoch is not None:
            self.on_epoch(epoch, self.epochs, record)
        if self.monitor is None:
            return False
        best, stop = self.monitor.update(val_accuracy, val_loss)
        if best and self.monitor.restore_best:
            self.best = self.snapshot()
        return stop

    def finish(self) -> list[EpochStats]:
        """The epochs' stats, the best epoch's weights restored where the monitor kept them."""
        if self.best is not None and self.monitor is not None and self.monitor.best_epoch != self.monitor.epochs_done:
            self.restore(self.best)
        return self.stats


@dataclass
class Device:
    """Where a trial runs, as recorded in results."""

    kind: str  # cpu | cuda | mps
    name: str  # e.g. "NVIDIA H100 80GB HBM3" or the CPU model
    precision: str  # fp32 | bf16
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cut:
    """A classifier split where its frozen part ends (:meth:`Backend.cut`).

    ``lower`` runs the frozen blocks below the cut, deterministic and in inference mode: the same pixels
    give the same activations in every epoch and every trial of the backbone, so they are computed once.
    ``upper`` maps those activations to class logits and shares its weights with the classifier, so
    training it trains the classifier.
    """

    index: int  # blocks below the cut
    blocks: int  # blocks of the base
    lower: Any
    upper: Any
    shape: tuple[int, ...]  # one image's activations at the cut

    @property
    def nbytes_per_image(self) -> int:
        return 4 * math.prod(self.shape)  # stored as float32

    def describe(self) -> str:
        """``"8/9"``: blocks below the cut / blocks of the base, as a row records it."""
        return f"{self.index}/{self.blocks}"


@dataclass
class CutViews:
    """The training images' activations at a cut, computed on first use, per view.

    ``fetch(indices, flip)`` returns float32 ``(len(indices), *shape)`` for those images, mirrored
    left-right first with ``flip``. A fit that draws a flip per image and epoch asks only for the views it
    drew: over two epochs about 1.5 passes of the frozen blocks per image instead of 2 for both views.
    """

    n: int
    shape: tuple[int, ...]
    flip: bool  # whether a step sees a randomly mirrored view (the flip augmentation)
    fetch: Callable[[np.ndarray, bool], np.ndarray]


def pooling_kw(pooling: str) -> dict[str, str]:
    """The ``pooling=`` keyword of ``features``, ``feature_dim`` and ``attach``: none for "avg", so a
    backend that implements only the average is never passed it."""
    return {} if pooling == "avg" else {"pooling": pooling}


OPTIONAL_VERBS = ("logits", "fit_heads", "cut", "activations", "unfreeze_units", "set_dropout", "save_weights",
                  "load_weights", "activation_maps", "adapt", "merge", "multiply_adds")  # what a backend may lack; Backend.supports says which it has


class Backend(ABC):
    """A framework that can build backbones, extract features, train and predict.

    Subclasses set ``name`` and implement every abstract method. A backend must import its
    framework lazily (inside methods) so that ``zoo-bench plugins`` works without it.
    """

    name: ClassVar[str]
    install_hint: ClassVar[str] = ""
    # The terms of the augmentation vocabulary (zoo_bench.augment.TERMS) ``fit`` implements.
    augmentations: ClassVar[tuple[str, ...]] = ("flip",)
    # Head poolings ``features``, ``feature_dim`` and ``attach`` accept as ``pooling=``: "avg" (global
    # average; every backend), "max" (global max), "flatten" (the whole feature map). A backend that
    # lists only "avg" is never passed the keyword.
    poolings: ClassVar[tuple[str, ...]] = ("avg",)
    # Whether ``run.compile`` applies: the backend compiles the network of pixel epochs when its
    # ``compile`` attribute is set (torch: torch.compile). The first epoch then carries the compile time.
    compiles: ClassVar[bool] = False
    compile: bool = False

    def __init__(self, device: str = "auto", precision: str = "auto", weights_dir: str | None = None,
                 cache_dir: str | None = None):
        ok, why = self.available()
        if not ok:
            raise BackendUnavailableError(why)
        self.requested_device = device
        self.requested_precision = precision
        self.weights_dir = weights_dir
        self.cache_dir = cache_dir  # where a backend may keep converted weights

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the framework imports here; if not, the reason with an install command."""
        return True, ""

    @classmethod
    def param_count(cls, spec: BackboneSpec) -> int | None:
        """Parameters of the backbone without its classifier, if known without allocating it (listing)."""
        return None

    @classmethod
    def has_accelerator(cls) -> bool:
        """Whether a GPU (or other accelerator) this backend can use is present."""
        return False

    def accelerators(self) -> int:
        """How many accelerators this instance can place work on (``--workers`` defaults to one per GPU);
        0 on CPU."""
        return 0

    def supports(self, verb: str) -> bool:
        """Whether this backend has the optional verb ``verb`` (one of :data:`OPTIONAL_VERBS`).

        By default: whether its class implements the verb. A backend whose ability depends on where it
        runs (Keras's Grad-CAM, per Keras framework) overrides this. Callers ask before they call, so an
        error raised inside a verb is never mistaken for the verb being absent.
        """
        return type(self).implements(verb)

    @classmethod
    def implements(cls, verb: str) -> bool:
        """Whether the class implements the optional verb ``verb``: what ``supports`` says unless a backend
        overrides it, and what planning a run asks before any backend is created."""
        if verb not in OPTIONAL_VERBS:
            raise ValueError(f"{verb!r} is not an optional Backend verb (those are {', '.join(OPTIONAL_VERBS)})")
        return getattr(cls, verb) is not getattr(Backend, verb)

    def _lacks(self, verb: str) -> ZooBenchError:
        return ZooBenchError(f"backend {self.name!r} does not implement {verb}() (ask supports({verb!r}) first)")

    @abstractmethod
    def device(self) -> Device:
        """The resolved device and precision trials of this backend run with."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Framework package versions, for run.json."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seed the framework's random generators."""

    @abstractmethod
    def build_base(self, spec: BackboneSpec, pretrained: bool, image_size: int) -> Any:
        """Build the backbone without its classifier; raise WeightsUnavailableError if needed."""

    @abstractmethod
    def block_count(self, base: Any) -> int:
        """How many ordered blocks the base has (for ``last_n``)."""

    @abstractmethod
    def features(self, base: Any, images: np.ndarray, batch_size: int, pooling: str = "avg") -> np.ndarray:
        """Bottleneck features of a frozen base for uint8 NHWC images, in inference mode: float32 (N, D),
        the feature map pooled as ``pooling`` says (one of :attr:`poolings`)."""

    @abstractmethod
    def feature_dim(self, base: Any, pooling: str = "avg") -> int:
        """Width of the features :meth:`features` gives under ``pooling``."""

    @abstractmethod
    def new_head(self, in_features: int, num_classes: int, head: HeadSpec) -> Any:
        """A freshly initialised head that maps pooled features to class logits."""

    @abstractmethod
    def attach(self, base: Any, head: Any, pooling: str = "avg") -> Any:
        """A classifier of images: base, ``pooling``, then ``head`` (its weights kept)."""

    @abstractmethod
    def set_trainable(self, model: Any, last_blocks: int | None, bn_inference: bool,
                      parts: "Parts | None" = None) -> None:
        """Make the head and the last ``last_blocks`` blocks of the base trainable (None: all).

        Frozen blocks always run BatchNorm in inference mode; ``bn_inference`` keeps every
        BatchNorm of the base in inference mode even where its block is trainable. ``parts`` (only where
        the backend ``supports("unfreeze_units")``): exactly those blocks and layers, instead of
        ``last_blocks``.
        """

    def unfreeze_units(self, base: Any) -> tuple[list[str], list[str]]:
        """(block names, layer names with weights) of a base, for ``unfreeze`` (optional verb).

        A backend that implements it accepts ``set_trainable(model, None, True, parts=Parts(...))``:
        exactly those blocks and layers trainable, with the head, every BatchNorm in inference mode.
        """
        raise self._lacks('unfreeze_units')

    def save_weights(self, model: Any, folder: "Path") -> list[str]:
        """Write a model's weights (a classifier, or a base alone) into ``folder`` in a weights-only
        format that loading cannot turn into code; the file names written (optional verb, ``--save-models``)."""
        raise self._lacks('save_weights')

    def load_weights(self, model: Any, folder: "Path") -> None:
        """Load what :meth:`save_weights` wrote into a model built the same way; a mismatch is refused."""
        raise self._lacks('load_weights')

    def activation_maps(self, model: Any, images: np.ndarray, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps ``(N, H, W)`` in [0, 1] of a classifier for uint8 NHWC images, and the explained
        classes (None: each image's predicted class) (optional verb, ``--activation-maps``)."""
        raise self._lacks('activation_maps')

    def cut(self, model: Any) -> Cut | None:
        """Split a classifier below its first trainable block (optional verb; ``last_n``'s fine-tuning).

        None where no block at the bottom of the base is frozen, or where the frozen part is not
        deterministic in training. A backend that returns a :class:`Cut` implements :meth:`activations`
        and accepts ``fit(cut.upper, views, y, ...)`` with ``views`` a :class:`CutViews` (drawing per image
        and epoch which of the two views a step sees under a flip; the time ``views.fetch`` takes is not
        part of an epoch's seconds) as well as ``fit(cut.upper, activations, ...)`` with an array.
        """
        return None

    def activations(self, lower: Any, images: np.ndarray, batch_size: int, flip: bool = False) -> np.ndarray:
        """Activations of ``Cut.lower`` for uint8 NHWC images (mirrored left-right first with ``flip``),
        float32 ``(N, *Cut.shape)``."""
        raise self._lacks('activations')

    def set_dropout(self, model: Any, rate: float) -> int:
        """Set every dropout layer of ``model`` (a head) to ``rate``; the number changed (optional verb).

        Two-phase strategies raise or lower the head's dropout for fine-tuning (``finetune_dropout``).
        A model without a dropout layer is refused in one line.
        """
        raise self._lacks('set_dropout')

    def adapt(self, model: Any, adapter: Adapter) -> None:
        """Train only what ``adapter`` names in the base of ``model`` (from ``attach``), and the head
        (optional verb; :mod:`zoo_bench.adapters` says what each kind trains).

        The parameter-efficient strategies (``bitfit``, ``norm_tune``, ``lora``) need it. A backend that
        cannot do one kind refuses it in one line; ``save_weights`` of an adapted model saves weights
        that load into the plain rebuilt model (LoRA merged).
        """
        raise self._lacks('adapt')

    def merge(self, model: Any) -> Any:
        """The model as it would be deployed: an adapted model's updates merged into its weights (LoRA), a
        copy where that changes anything, else the model itself (optional verb). Inference cost is
        measured on it; ``save_weights`` saves it."""
        raise self._lacks('merge')

    def multiply_adds(self, model: Any, image_size: int) -> int:
        """Multiply-adds of one forward pass of one image through ``model`` (optional verb)."""
        raise self._lacks('multiply_adds')

    @abstractmethod
    def fit(
        self,
        model: Any,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        optimizer: OptimizerSpec,
        batch_size: int,
        inputs: str | None = None,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        augment: "bool | Augment" = False,
        on_epoch: EpochCallback | None = None,
        monitor: Monitor | None = None,
    ) -> list[EpochStats]:
        """Train ``model``; one stat per epoch (count them with an :class:`EpochBook`).

        ``inputs`` (one of :data:`FIT_INPUTS`) says what ``x`` is: ``"images"``, uint8 NHWC pixels for a
        classifier; ``"features"``, float32 ``(N, D)`` for a head; ``"cut"``, activations at a :class:`Cut`
        (an array, or :class:`CutViews`) for its upper part. Strategies always say it; :func:`fit_inputs`
        reads it off ``x`` for callers that do not.

        ``augment`` (pixels only) is an :class:`zoo_bench.augment.Augment` whose terms are all in
        :attr:`augmentations` (``True`` is a flip, from callers written before the vocabulary).

        With validation data, each epoch records validation accuracy and loss. With a ``monitor``,
        the fit reports each epoch to it, stops when it says so and, with ``restore_best``, ends
        with the weights of the best epoch so far (of this fit, or the starting weights when an
        earlier phase was better).
        """

    def fit_heads(self, x: np.ndarray, y: np.ndarray, fits: list[HeadFit], *, num_classes: int, epochs: int,
                  batch_size: int, seed: int, val: tuple[np.ndarray, np.ndarray] | None = None,
                  on_epoch: EpochCallback | None = None) -> list[HeadFitResult]:
        """Train one new head per ``fits`` entry on the same features, together (optional verb).

        A backend that implements it must give every head exactly what this call with that head
        alone gives (same initial weights from ``seed``, same shuffle, its own dropout masks), so a
        result never depends on which heads it was trained with. Epoch ``seconds`` are the shared
        pass divided by the number of heads trained in it, so summing them over a sweep gives its
        cost once. ``on_epoch`` reports the first head's epochs. A head whose loss stops being
        finite stops there (``diverged_epoch``) without stopping the others.
        """
        raise self._lacks('fit_heads')

    @abstractmethod
    def recalibrate_batchnorm(self, model: Any, x: np.ndarray, batch_size: int) -> None:
        """Re-estimate the running statistics of every training-mode BatchNorm over ``x`` (no weight change).

        After a few steps from random weights the running averages lag far behind the weights;
        a pass that averages the batch statistics over the training images fixes inference.
        """

    @abstractmethod
    def predict(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Predicted class indices, int64 (N,)."""

    def logits(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Class scores before softmax, float32 (N, C): for losses, confusion and saved predictions.

        Optional for third-party backends; without it a row has no test or validation loss.
        """
        raise self._lacks('logits')

    def evaluate(self, model: Any, val: tuple[np.ndarray, np.ndarray] | None, batch_size: int
                 ) -> tuple[float | None, float | None]:
        """Validation accuracy and mean cross-entropy of a model (loss None without :meth:`logits`)."""
        if val is None or not len(val[1]):
            return None, None
        if not self.supports("logits"):
            return float((self.predict(model, val[0], batch_size) == val[1]).mean()), None
        scores = self.logits(model, val[0], batch_size)
        return float((scores.argmax(axis=1) == val[1]).mean()), cross_entropy(scores, val[1])

    @abstractmethod
    def count_params(self, model: Any) -> tuple[int, int]:
        """(trainable, total) parameter counts."""

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the framework saying the device ran out of memory (retry smaller)."""
        return False

    def release_memory(self) -> None:
        """Give cached accelerator memory back after a failed attempt (no-op on CPU)."""

    def reset_peak_memory(self) -> None:
        """Start a new accelerator peak-memory window (no-op on CPU)."""

    def peak_memory_mb(self) -> float | None:
        """Peak accelerator memory since the last reset, or None on CPU."""
        return None

"""The Keras 3 Backend. keras (and its framework) is imported when the backend is created for a trial.

Keras specifics, each tested: a base whose BatchNorm must stay in inference mode is called with
``training=False`` inside the training model (the Keras transfer-learning guide), frozen layers have
``trainable = False``, and every ``fit`` builds and compiles a fresh training model, so a change of
``trainable`` always takes effect. Epoch times come from a callback: tracing and compilation land in
the first epoch.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo_bench.augment import TERMS
from zoo_bench.backend import EpochBook, cpu_name, fit_inputs
from zoo_bench import ZooBenchError
from zoo_bench import Backend, BackboneSpec, BackendUnavailableError, Device, HeadSpec, OptimizerSpec

INSTALL = "pip install 'zoo-bench[keras]'"
FRAMEWORK_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def keras_backend_name() -> str:
    """The framework Keras will run on: ``KERAS_BACKEND``, else tensorflow."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send file descriptor 2 to /dev/null for the block; Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class KerasClassifier:
    """Base + global pooling + head; the training model is built from it at each fit."""

    base: Any
    head: Any
    pooling: str = "avg"


# Traced inference calls per Keras model (KerasBackend._inference_call), dropped with the model.
_GRAPHS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


class KerasBackend(Backend):
    """Keras 3 on tensorflow (default), jax or torch, as KERAS_BACKEND says."""

    name = "keras"
    install_hint = INSTALL
    augmentations = TERMS
    poolings = ("avg", "max", "flatten")

    def __init__(self, device: str = "auto", precision: str = "auto", weights_dir: str | None = None,
                 cache_dir: str | None = None):
        super().__init__(device, precision, weights_dir, cache_dir)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if importlib.util.find_spec("torchvision") is not None:
            # torchvision (through triton) segfaults when imported after TensorFlow in one process,
            # which a suite running both backends does: import it first.
            import torchvision  # noqa: F401
        with _quiet_native_stderr():  # TensorFlow's C++ start-up chatter bypasses its log level
            import keras

            self.keras = keras
            self.framework = keras.backend.backend()
            self._gpu = self._framework_has_gpu()
        if device in ("cuda", "mps") and not self._gpu:
            raise BackendUnavailableError(f"device {device!r} was asked for but Keras ({self.framework}) sees no GPU")
        self._kind = "cuda" if (self._gpu and device != "cpu") else "cpu"
        if device == "cpu" and self._gpu:
            raise BackendUnavailableError("keras: device 'cpu' on a GPU machine needs CUDA_VISIBLE_DEVICES=''")
        if precision == "auto":
            precision = "bf16" if self._kind == "cuda" else "fp32"
        self.precision = precision
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        framework = keras_backend_name()
        missing = [p for p in ("keras", FRAMEWORK_PACKAGE.get(framework, framework))
                   if importlib.util.find_spec(p) is None]
        if missing:
            return False, f"keras backend needs {' and '.join(missing)} (KERAS_BACKEND={framework}); install with: {INSTALL}"
        return True, ""

    @classmethod
    def has_accelerator(cls) -> bool:
        """Whether an NVIDIA GPU is present, judged without importing the framework."""
        return os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))

    def _framework_has_gpu(self) -> bool:
        if self.framework == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if self.framework == "torch":
            import torch

            return torch.cuda.is_available()
        if self.framework == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        return False

    def device(self) -> Device:
        name = cpu_name()
        if self._kind == "cuda" and self.framework == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            name = details.get("device_name", "GPU")
        settings = {"keras_backend": self.framework, "mixed_precision": self.keras.mixed_precision.global_policy().name}
        return Device(kind=self._kind, name=name, precision=self.precision, settings=settings)

    def versions(self) -> dict[str, str]:
        out = {"keras": self.keras.__version__, "keras_backend": self.framework}
        module = importlib.import_module(FRAMEWORK_PACKAGE.get(self.framework, self.framework))
        out[self.framework] = getattr(module, "__version__", "unknown")
        return out

    def seed(self, seed: int) -> None:
        self.keras.utils.set_random_seed(seed)

    # -- models ---------------------------------------------------------------------------------
    def build_base(self, spec: BackboneSpec, pretrained: bool, image_size: int) -> Any:
        return spec.builder(pretrained=pretrained, image_size=image_size, weights_dir=self.weights_dir,
                            cache_dir=self.cache_dir)

    def block_count(self, base: Any) -> int:
        return len(base.block_names)

    def feature_dim(self, base: Any, pooling: str = "avg") -> int:
        if pooling == "avg":
            return int(base.feature_dim)
        return int(self._feature_model(base, pooling).output.shape[-1])

    def _pool(self, pooling: str) -> Any:
        """A fresh pooling layer: global average, global max, or flatten (NHWC: row, column, channel)."""
        layers = self.keras.layers
        return {"avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D,
                "flatten": layers.Flatten}[pooling]()

    def _feature_model(self, base: Any, pooling: str) -> Any:
        key = "features" if pooling == "avg" else f"features_{pooling}"
        if key not in base.extra:
            base.extra[key] = self.keras.Model(base.model.input, self._pool(pooling)(base.model.output))
        return base.extra[key]

    def new_head(self, in_features: int, num_classes: int, head: HeadSpec) -> Any:
        from .models import make_head

        return make_head(in_features, num_classes, head.hidden, head.dropout)

    def attach(self, base: Any, head: Any, pooling: str = "avg") -> Any:
        return KerasClassifier(base, head, pooling)

    def set_trainable(self, model: Any, last_blocks: int | None, bn_inference: bool, parts: Any = None) -> None:
        base = model.base
        n = len(base.block_names)
        k = n if last_blocks is None else max(0, min(last_blocks, n))
        base.model.trainable = True
        if "app" in base.extra:
            base.extra["app"].trainable = True
        for layer, block in zip(base.layers, base.block_of):
            if parts is None:
                layer.trainable = block >= n - k
            else:
                layer.trainable = block in parts.blocks or layer.name in parts.layers
        model.head.trainable = True
        base.inference_bn = bn_inference or parts is not None

    def adapt(self, model: Any, adapter: Any) -> None:
        from .adapters import adapt

        adapt(self.keras, model, adapter)

    def unfreeze_units(self, base: Any) -> tuple[list[str], list[str]]:
        return list(base.block_names), [layer.name for layer in base.layers if layer.weights]

    def _training_model(self, model: Any, aug: Any) -> Any:
        if not isinstance(model, KerasClassifier):
            return model
        keras = self.keras
        size = model.base.image_size
        inputs = keras.Input((size, size, 3))
        if aug.terms() == ["flip"]:
            x = keras.layers.RandomFlip("horizontal")(inputs)
        elif aug:
            from .augment import Augmentation

            x = Augmentation(aug)(inputs)
        else:
            x = inputs
        from .models import InferenceMode

        fmap = InferenceMode(model.base.model)(x) if model.base.inference_bn else model.base.model(x)
        pooled = self._pool(model.pooling)(fmap)
        return keras.Model(inputs, model.head(pooled))

    def count_params(self, model: Any) -> tuple[int, int]:
        if isinstance(model, KerasClassifier):
            parts = [model.base.model, model.head]
        elif hasattr(model, "block_of"):  # a bare base
            parts = [model.model]
        else:  # a head
            parts = [model]
        trainable = sum(int(np.prod(w.shape)) for p in parts for w in p.trainable_weights)
        total = sum(int(np.prod(w.shape)) for p in parts for w in p.weights
                    if "moving" not in w.path and "count" not in w.path.split("/")[-1])
        return trainable, total

    # -- verbs ----------------------------------------------------------------------------------
    def _batches(self, x: np.ndarray, batch_size: int):
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size].astype(np.float32)

    def _inference_call(self, model: Any) -> Any:
        """``model(batch, training=False)``, traced once into a graph on TensorFlow.

        Why: called eagerly, every layer of a Keras model is dispatched from Python per batch; on a 2-core
        CPU that halved EfficientNet-Lite0's feature extraction (60 against 110 images per second). The
        graph computes the same scores to float rounding (4e-6 on Lite0's features). Other Keras
        backends run the model as it is.
        """
        if self.framework != "tensorflow":
            return lambda batch: model(batch, training=False)
        call = _GRAPHS.get(model)
        if call is None:
            import tensorflow as tf

            call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
            _GRAPHS[model] = call
        return call

    def features(self, base: Any, images: np.ndarray, batch_size: int, pooling: str = "avg") -> np.ndarray:
        fmodel = self._inference_call(self._feature_model(base, pooling))
        out = [np.asarray(fmodel(b), dtype=np.float32) for b in self._batches(images, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim(base, pooling)), np.float32)

    def _feature_batches(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
        """The batches ``Model.fit(x, y, shuffle=True)`` trains on, as an endless tf.data pipeline made once per fit.

        Why: on arrays, Keras (TensorFlow) builds a new tf.data iterator every epoch (about 10-25 ms on a
        2-core CPU) and calls the train step once per batch from Python; on cached features that was
        most of a head epoch (64 ms against torch's 19 ms, 400 features, batch 32). Here the iterator is
        made once and ``fit`` runs with ``steps_per_epoch`` and ``steps_per_execution`` = the batches
        of an epoch, so an epoch is one call into TensorFlow. What is computed is the same bit for bit
        (tests/test_keras_backend.py compares the weights with ``Model.fit`` on the arrays): Keras' array
        adapter draws its permutation with ``tf.random.shuffle`` inside a tf.data function that every
        epoch's new iterator re-instantiates, so once ``keras.utils.set_random_seed`` has run (as
        ``seed`` does) every epoch of every fit sees the same permutation of the samples; it is drawn
        here the same way, once.
        """
        import tensorflow as tf

        n = len(y)
        draw = tf.data.Dataset.range(1).map(lambda _: tf.random.shuffle(tf.range(n, dtype=tf.int64)))
        order = next(iter(draw)).numpy()
        data = tf.data.Dataset.from_tensor_slices((x[order].astype(np.float32), y[order]))
        return data.batch(batch_size).repeat()

    def _weight_parts(self, model: Any) -> list[tuple[str, Any]]:
        if isinstance(model, KerasClassifier):
            return [("base.weights.h5", model.base.model), ("head.weights.h5", model.head)]
        return [("base.weights.h5", model.model)]

    def save_weights(self, model: Any, folder: Any) -> list[str]:
        for name, part in self._weight_parts(model):  # weights only (HDF5), never a whole saved model
            part.save_weights(str(folder / name))
        return [name for name, _ in self._weight_parts(model)]

    def load_weights(self, model: Any, folder: Any) -> None:
        for name, part in self._weight_parts(model):
            try:
                part.load_weights(str(folder / name))
            except (ValueError, KeyError, OSError) as exc:
                raise ZooBenchError(f"{folder / name}: does not fit the rebuilt model ({exc})".splitlines()[0]) from None

    def supports(self, verb: str) -> bool:
        if verb == "activation_maps":  # Grad-CAM takes gradients through Keras's framework: TensorFlow or JAX
            import keras

            from .gradcam import GRADIENTS

            return keras.backend.backend() in GRADIENTS
        return super().supports(verb)

    def activation_maps(self, model: Any, images: np.ndarray, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        from .gradcam import grad_cam

        pool = self._pool(model.pooling)
        return grad_cam(model.base.model, lambda fmap: model.head(pool(fmap), training=False),
                        images.astype(np.float32), classes)

    def set_dropout(self, model: Any, rate: float) -> int:
        layers = [layer for layer in model._flatten_layers(include_self=False)
                  if isinstance(layer, self.keras.layers.Dropout)]
        if not layers:
            raise ZooBenchError("finetune_dropout: the head has no dropout layer (give it a hidden layer or dropout > 0)")
        for layer in layers:
            layer.rate = float(rate)
        return len(layers)

    def _optimizer(self, spec: OptimizerSpec) -> Any:
        if spec.layer_decay != 1.0:
            raise ZooBenchError("layer_decay: the keras backend has one learning rate per phase; "
                                "layer-wise rates need the torch backend (layer_decay = 1)")
        opt = self.keras.optimizers
        if spec.name == "adam":
            return opt.Adam(learning_rate=spec.lr, weight_decay=spec.weight_decay or None)
        if spec.name == "sgd":
            return opt.SGD(learning_rate=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay or None)
        if spec.name == "rmsprop":
            return opt.RMSprop(learning_rate=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay or None)
        raise ValueError(f"unknown optimizer {spec.name!r} (allowed: adam, sgd, rmsprop)")

    def fit(self, model, x, y, *, epochs, optimizer, batch_size, inputs=None, val=None, augment=False, on_epoch=None,
            monitor=None):
        from zoo_bench.augment import Augment

        keras = self.keras
        kind = fit_inputs(x, inputs)
        if kind == "cut":  # this backend has no cut (supports("cut") is False): nothing asks it to
            raise ZooBenchError("the keras backend trains on images or features, not on activations at a cut")
        images = kind == "images"
        aug = augment if isinstance(augment, Augment) else Augment(flip=bool(augment))
        train_model = self._training_model(model, aug if images else Augment())
        # Features on TensorFlow: a whole epoch runs as one call (see _feature_batches); same steps, same results.
        one_call = not images and self.framework == "tensorflow" and len(y) > 0
        steps = -(-len(y) // batch_size) if one_call else 1
        train_model.compile(optimizer=self._optimizer(optimizer),
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            steps_per_execution=steps)
        book = EpochBook(self, model, phase="images" if images else "features", epochs=epochs, batch_size=batch_size,
                         val=val, on_epoch=on_epoch, monitor=monitor, snapshot=train_model.get_weights,
                         restore=train_model.set_weights)

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - self.start
                if book.end_epoch(epoch, seconds=seconds, images=len(y),
                                  train_loss=float((logs or {}).get("loss", float("nan"))),
                                  lr=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))):
                    self.model.stop_training = True

        callbacks = [keras.callbacks.LearningRateScheduler(lambda epoch, _lr: optimizer.lr_at(epoch, epochs)),
                     EpochTimer()]
        if one_call:
            train_model.fit(self._feature_batches(x, y, batch_size), epochs=epochs, verbose=0, callbacks=callbacks,
                            steps_per_epoch=steps, shuffle=False)  # the order is drawn there
        else:
            train_model.fit(x.astype(np.float32), y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                            callbacks=callbacks)
        return book.finish()

    def _inference_model(self, model: Any) -> Any:
        if isinstance(model, KerasClassifier):
            key = "inference"
            if model.base.extra.get("inference_head") is not model.head:
                keras = self.keras
                size = model.base.image_size
                inputs = keras.Input((size, size, 3))
                pooled = self._pool(model.pooling)(model.base.model(inputs, training=False))
                model.base.extra[key] = keras.Model(inputs, model.head(pooled, training=False))
                model.base.extra["inference_head"] = model.head
            return model.base.extra[key]
        return model

    def logits(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        infer = self._inference_model(model)
        if x.dtype != np.uint8:
            batch_size = max(batch_size, 1024)
        infer = self._inference_call(infer)
        out = [np.asarray(infer(b), dtype=np.float32) for b in self._batches(x, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def predict(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        scores = self.logits(model, x, batch_size)
        return scores.argmax(axis=1).astype(np.int64) if len(scores) else np.zeros(0, np.int64)

    def recalibrate_batchnorm(self, model: Any, x: np.ndarray, batch_size: int) -> None:
        keras = self.keras
        bns = [layer for layer in model.base.layers
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        if not bns or model.base.inference_bn:
            return
        saved = [layer.momentum for layer in bns]
        for layer in bns:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
        for i, batch in enumerate(self._batches(x, batch_size), start=1):
            for layer in bns:  # momentum (i-1)/i makes the moving statistics a plain average over batches
                layer.momentum = (i - 1) / i
            model.base.model(batch, training=True)
        for layer, momentum in zip(bns, saved):
            layer.momentum = momentum

    def is_out_of_memory(self, exc: BaseException) -> bool:
        if self.framework == "tensorflow":
            import tensorflow as tf

            if isinstance(exc, tf.errors.ResourceExhaustedError):
                return True
        return "out of memory" in str(exc).lower() or "resource_exhausted" in str(exc).lower()

    def release_memory(self) -> None:
        import gc

        gc.collect()  # not clear_session: it would invalidate the cached frozen base

    def reset_peak_memory(self) -> None:
        if self._kind == "cuda" and self.framework == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_memory_mb(self) -> float | None:
        if self._kind == "cuda" and self.framework == "tensorflow":
            import tensorflow as tf

            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        return None

"""Grad-CAM (Selvaraju et al. 2017) for Keras 3 models on tensorflow or jax.

Gradients are taken with respect to the last convolutional map only, so frozen layers
(``trainable = False``) are explained as they are and no weight is touched. keras is imported on
call, so importing this module costs nothing on machines without it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

BATCH = 32


def _gradients_tensorflow(head: Callable[[Any], Any], fmap: Any, classes: np.ndarray | None) -> tuple[Any, Any]:
    """Logits and d(logit of the chosen class)/d(fmap), through a tape that watches the map only."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(fmap)
        logits = head(fmap)
        scores = tf.cast(logits, tf.float32)
        chosen = tf.argmax(scores, axis=1) if classes is None else tf.constant(classes, tf.int64)
        score = tf.reduce_sum(scores * tf.one_hot(chosen, tf.shape(scores)[1], dtype=tf.float32))
    return chosen, tape.gradient(score, fmap)


def _gradients_jax(head: Callable[[Any], Any], fmap: Any, classes: np.ndarray | None) -> tuple[Any, Any]:
    """Same as the tensorflow path, with ``jax.grad`` of the chosen logits' sum over the map."""
    import jax
    import jax.numpy as jnp

    if classes is None:
        chosen = jnp.argmax(jnp.asarray(head(fmap), jnp.float32), axis=1)
    else:
        chosen = jnp.asarray(classes)

    def score(f: Any) -> Any:
        logits = jnp.asarray(head(f), jnp.float32)
        return jnp.sum(logits * jax.nn.one_hot(chosen, logits.shape[1], dtype=jnp.float32))

    return chosen, jax.grad(score)(fmap)


GRADIENTS = {"tensorflow": _gradients_tensorflow, "jax": _gradients_jax}


def grad_cam(feature_model: Any, head: Callable[[Any], Any], pixels: np.ndarray,
             classes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class activation maps ``(N, H, W)`` float32 in [0, 1] and the explained classes (int64).

    ``feature_model`` maps float32 NHWC 0..255 pixels to the last convolutional map ``(N, h, w, C)``
    and is called with ``training=False``; ``head(fmap)`` gives the logits ``(N, K)`` and should call
    its own layers with ``training=False``. ``classes`` None explains each image's predicted class.
    """
    import keras

    framework = keras.backend.backend()
    gradients = GRADIENTS.get(framework)
    if gradients is None:
        raise NotImplementedError(f"Grad-CAM for Keras on {framework} is not implemented (tensorflow and jax are)")
    n, height, width = pixels.shape[0], pixels.shape[1], pixels.shape[2]
    if classes is not None and len(classes) != n:
        raise ValueError(f"grad_cam: {len(classes)} classes for {n} images")
    wanted = None if classes is None else np.asarray(classes, np.int64)
    maps, used = [], []
    for start in range(0, n, BATCH):
        x = keras.ops.convert_to_tensor(np.asarray(pixels[start:start + BATCH], np.float32))
        fmap = feature_model(x, training=False)
        chosen, grads = gradients(head, fmap, None if wanted is None else wanted[start:start + BATCH])
        weights = keras.ops.mean(keras.ops.cast(grads, "float32"), axis=(1, 2), keepdims=True)
        cam = keras.ops.relu(keras.ops.sum(weights * keras.ops.cast(fmap, "float32"), axis=3, keepdims=True))
        cam = keras.ops.image.resize(cam, (height, width), interpolation="bilinear", data_format="channels_last")
        cam = keras.ops.convert_to_numpy(cam)[..., 0].astype(np.float32)
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        cam = np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)
        maps.append(np.clip(cam, 0.0, 1.0).astype(np.float32))
        used.append(keras.ops.convert_to_numpy(chosen).astype(np.int64))
    if not maps:
        return np.zeros((0, height, width), np.float32), np.zeros(0, np.int64)
    return np.concatenate(maps), np.concatenate(used)

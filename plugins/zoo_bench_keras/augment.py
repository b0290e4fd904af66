"""The augmentation vocabulary (:mod:`zoo_bench.augment`) as a Keras layer, active in training only.

The same sampling map as the torch backend, evaluated with ``keras.ops`` and applied with
``keras.ops.image.affine_transform`` (bilinear, ``fill_mode="nearest"``) inside the training model,
so it runs on whatever device Keras' framework uses; draws come from a seeded ``SeedGenerator``.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from zoo_bench.augment import GREY, ArrayOps, Augment, sampling_matrix, uniform_ranges

OPS = ArrayOps(cos=ops.cos, sin=ops.sin, tan=ops.tan, stack=lambda xs, axis: ops.stack(xs, axis=axis))


def warp(images: Any, params: dict[str, Any]) -> Any:
    """Float NHWC images (0..255) warped by the sampled maps (square images)."""
    size = int(images.shape[1])
    m = sampling_matrix(OPS, size, **params)
    c0 = (size - 1) / 2.0  # affine_transform takes pixel coordinates from the corner
    a, b, tx = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, ty = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    zero = ops.zeros_like(a)
    transform = ops.stack([a, b, tx + c0 - (a + b) * c0, d, e, ty + c0 - (d + e) * c0, zero, zero], axis=1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest",
                                      data_format="channels_last")


class Augmentation(keras.layers.Layer):
    """Random geometric and colour augmentation of float 0..255 NHWC images while training."""

    def __init__(self, aug: Augment, seed: int | None = None, **kwargs: Any):
        super().__init__(dtype="float32", **kwargs)  # warps in float32 under a mixed-precision policy
        self.aug = aug
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n: Any, low: float, high: float) -> Any:
        return keras.random.uniform((n,), minval=low, maxval=high, seed=self.seed_generator)

    def call(self, x: Any, training: bool | None = None) -> Any:
        if not training or not self.aug:
            return x
        n = ops.shape(x)[0]
        size = int(x.shape[1])
        if self.aug.geometric:
            params = {k: self._uniform(n, lo, hi) for k, (lo, hi) in uniform_ranges(self.aug, size).items()}
            flip = self._uniform(n, 0.0, 1.0) < 0.5 if self.aug.flip else ops.zeros((n,), dtype="bool")
            params["flip"] = 1.0 - 2.0 * ops.cast(flip, "float32")
            params["crop"] = ops.ones((n,), dtype="float32") * self.aug.crop
            x = warp(x, params)
        if self.aug.colour:
            x = self._colour(x, n)
        return x

    def _colour(self, x: Any, n: Any) -> Any:
        weights = ops.convert_to_tensor(GREY, dtype="float32")

        def factor(v: float) -> Any:
            return ops.reshape(self._uniform(n, 1.0 - v, 1.0 + v), (-1, 1, 1, 1))

        if self.aug.brightness:
            x = x * factor(self.aug.brightness)
        if self.aug.contrast:
            mean = ops.mean(ops.sum(x * weights, axis=-1, keepdims=True), axis=(1, 2), keepdims=True)
            x = (x - mean) * factor(self.aug.contrast) + mean
        if self.aug.saturation:
            grey = ops.sum(x * weights, axis=-1, keepdims=True)
            x = (x - grey) * factor(self.aug.saturation) + grey
        return ops.clip(x, 0.0, 255.0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

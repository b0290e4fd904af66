"""PyTorch backend for zoo-bench: torchvision backbones, EfficientNet-Lite0/1/2 and timm's catalogue.

Importing this plugin does not import torch; the backend imports it when a trial first needs it.
"""
from zoo_bench import hookimpl

from .backend import TorchBackend
from .specs import BACKBONES
from .timm_catalog import CATALOG


@hookimpl
def zoo_bench_register_backends() -> list[type]:
    return [TorchBackend]


@hookimpl
def zoo_bench_register_backbones() -> list:
    return list(BACKBONES)


@hookimpl
def zoo_bench_register_backbone_catalogs() -> list:
    return [CATALOG]

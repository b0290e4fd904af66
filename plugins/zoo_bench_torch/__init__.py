"""PyTorch backend for zoo-bench: torchvision backbones plus EfficientNet-Lite0.

Importing this plugin does not import torch; the backend imports it when a trial first needs it.
"""
from zoo_bench import hookimpl

from .backend import TorchBackend
from .specs import BACKBONES


@hookimpl
def zoo_bench_register_backends() -> list[type]:
    return [TorchBackend]


@hookimpl
def zoo_bench_register_backbones() -> list:
    return list(BACKBONES)

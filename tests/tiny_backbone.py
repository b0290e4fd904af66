"""A test plugin that adds a tiny CNN to the torch backend (the same hook a third party uses)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from zoo_bench import BackboneSpec, WeightsUnavailableError, hookimpl

WEIGHTS: Path | None = None  # set by the tiny_weights fixture


def _modules():
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d(2))

    return [block(3, 8), block(8, 16), block(16, 32)]


def save_weights(path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(123)
    torch.save(nn.Sequential(*_modules()).state_dict(), path)


def build(pretrained: bool, image_size: int, weights_dir: str | None):
    import torch
    from torch import nn

    blocks = _modules()
    if pretrained:
        if WEIGHTS is None or not Path(WEIGHTS).exists():
            raise WeightsUnavailableError("mini_cnn: weights file mini_cnn.pth is missing")
        nn.Sequential(*blocks).load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return blocks, ["block1", "block2", "block3"], 32


@hookimpl
def zoo_bench_register_backbones():
    return [BackboneSpec(name="mini_cnn", backend="torch", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                         builder=partial(build), weights="tiny-test", description="3-block CNN for tests")]

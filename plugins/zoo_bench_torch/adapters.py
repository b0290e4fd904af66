"""Parameter-efficient fine-tuning in torch: biases, normalisation layers, LoRA (:mod:`zoo_bench.adapters`).

LoRA is written here, about forty lines, rather than taken from Hugging Face ``peft``: ``peft`` installs
``transformers``, ``accelerate``, ``tokenizers`` and ``pydantic`` with it, and zoo-bench needs only its
simplest part, a low-rank update beside a linear layer or a pointwise convolution, and merging it.
``tests/test_adapters.py`` checks it against ``peft`` where ``peft`` is installed.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from zoo_bench.adapters import Adapter, match_targets

from .models import BN_TYPES, Classifier

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


class LoRA(nn.Module):
    """A layer plus ``scale * up(down(dropout(x)))``; ``up`` starts at zero, so the layer's output does too."""

    def __init__(self, layer: nn.Module, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.layer, self.scale = layer, alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = layer.weight
        if isinstance(layer, nn.Linear):
            self.down = nn.Linear(layer.in_features, rank, bias=False)
            self.up = nn.Linear(rank, layer.out_features, bias=False)
        else:  # a pointwise convolution (pointwise() says which qualify)
            self.down = nn.Conv2d(layer.in_channels, rank, 1, stride=layer.stride, bias=False)
            self.up = nn.Conv2d(rank, layer.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # as nn.Linear initialises, and peft
        nn.init.zeros_(self.up.weight)
        self.down.to(weight.device, weight.dtype)
        self.up.to(weight.device, weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) + self.up(self.down(self.dropout(x))) * self.scale

    def delta(self) -> torch.Tensor:
        """The update as a change of the layer's weight."""
        return (self.up.weight.flatten(1) @ self.down.weight.flatten(1)).view_as(self.layer.weight) * self.scale

    def merged(self) -> nn.Module:
        """A copy of the layer with the update added to its weight: the same function, no extra step."""
        layer = copy.deepcopy(self.layer)
        with torch.no_grad():
            layer.weight += self.delta().to(layer.weight.dtype)
        return layer


def pointwise(module: nn.Module) -> bool:
    """A 1 x 1 convolution over all channels (no groups, no padding): what LoRA wraps in a CNN."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
            and module.padding in ((0, 0), "valid") and module.dilation == (1, 1))


def lora_candidates(base: nn.Module) -> list[str]:
    """Names of the layers LoRA can wrap: linear layers and pointwise convolutions."""
    return [name for name, m in base.named_modules() if name and (isinstance(m, nn.Linear) or pointwise(m))]


def default_targets(base: nn.Module, candidates: list[str]) -> list[str]:
    """A vision transformer's attention ``qkv`` and projection layers; else every pointwise convolution."""
    attention = [n for n in candidates if n.endswith(("attn.qkv", "attn.proj"))]
    return attention or [n for n in candidates if pointwise(base.get_submodule(n))]


def add_lora(base: nn.Module, adapter: Adapter) -> list[str]:
    """Wrap the targeted layers in :class:`LoRA`; the names wrapped."""
    candidates = lora_candidates(base)
    names = match_targets(adapter.targets, candidates, default_targets(base, candidates))
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = base.get_submodule(parent) if parent else base
        setattr(owner, child, LoRA(getattr(owner, child), adapter.rank, adapter.alpha, adapter.dropout))
    return names


def adapt(model: Classifier, adapter: Adapter) -> None:
    """Freeze the base but what ``adapter`` names; the head trains; BatchNorm statistics frozen unless asked."""
    base = model.base
    if adapter.kind == "lora":
        add_lora(base, adapter)
    base.requires_grad_(False)
    if adapter.kind == "bias":
        for name, p in base.named_parameters():
            if name.rsplit(".", 1)[-1] == "bias":
                p.requires_grad_(True)
    elif adapter.kind == "norm":
        for m in base.modules():
            if isinstance(m, NORM_TYPES):
                m.requires_grad_(True)
    else:
        for m in base.modules():
            if isinstance(m, LoRA):
                m.down.requires_grad_(True)
                m.up.requires_grad_(True)
    model.head.requires_grad_(True)
    model.inference_bn = [] if adapter.update_stats else [m for m in base.modules() if isinstance(m, BN_TYPES)]
    model.frozen_blocks = []


def merged(model: nn.Module) -> nn.Module:
    """``model`` with every LoRA merged into its layer (a copy; the model itself when it has none): what is
    saved, so that the saved weights load into the plain rebuilt model."""
    if not any(isinstance(m, LoRA) for m in model.modules()):
        return model
    plain = copy.deepcopy(model)
    for name, m in list(plain.named_modules()):
        if isinstance(m, LoRA):
            parent, _, child = name.rpartition(".")
            setattr(plain.get_submodule(parent) if parent else plain, child, m.merged())
    return plain

"""Parameter-efficient fine-tuning in torch: biases, normalisation layers, LoRA, prompts (:mod:`zoo_bench.adapters`).

LoRA is written here, about forty lines, rather than taken from Hugging Face ``peft``: ``peft`` installs
``transformers``, ``accelerate``, ``tokenizers`` and ``pydantic`` with it, and zoo-bench needs only its
simplest part, a low-rank update beside a linear layer or a pointwise convolution, and merging it.
``tests/test_adapters.py`` checks it against ``peft`` where ``peft`` is installed. Visual prompt tuning is
written here too (``peft``'s prompt methods are for language models): :class:`Prompts` runs timm's
``VisionTransformer.forward_features`` with the prompts joined to the token sequence.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from zoo_bench.adapters import Adapter, match_targets
from zoo_bench.errors import ZooBenchError

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
    """A vision transformer's attention ``qkv`` and projection layers; else every pointwise convolution;
    else every linear layer (a ConvNeXt's pointwise convolutions are linear layers over channels-last maps)."""
    attention = [n for n in candidates if n.endswith(("attn.qkv", "attn.proj"))]
    return attention or [n for n in candidates if pointwise(base.get_submodule(n))] or candidates


def add_lora(base: nn.Module, adapter: Adapter) -> list[str]:
    """Wrap the targeted layers in :class:`LoRA`; the names wrapped."""
    candidates = lora_candidates(base)
    names = match_targets(adapter.targets, candidates, default_targets(base, candidates))
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = base.get_submodule(parent) if parent else base
        setattr(owner, child, LoRA(getattr(owner, child), adapter.rank, adapter.alpha, adapter.dropout))
    return names


PROMPTS_FILE = "prompts.safetensors"


class Prompts(nn.Module):
    """VPT's learned tokens for a timm ``VisionTransformer`` (Jia et al. 2022), ``(layers, count, width)``:
    one layer of tokens for VPT-shallow, one per block for VPT-deep.

    :meth:`features` is timm's ``forward_features`` with the prompts joined after the class (and register)
    tokens once the position embedding is added, so they carry no position; VPT-deep replaces them with
    the next block's own before each block. They are dropped before the final norm, so the class token or
    the mean over patch tokens (whichever the model pools) is what the head sees, as in VPT.
    """

    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.tokens = nn.Parameter(tokens)

    @classmethod
    def initial(cls, vit: nn.Module, count: int, deep: bool) -> "Prompts":
        """VPT's initialisation: uniform within +-sqrt(6 / (3 * patch area + width)) (Xavier on the patch
        projection's fan)."""
        patch = vit.patch_embed.patch_size
        area = patch[0] * patch[1] if isinstance(patch, (tuple, list)) else patch * patch
        width = vit.embed_dim
        bound = math.sqrt(6.0 / (3 * area + width))
        weight = vit.patch_embed.proj.weight
        tokens = torch.empty(len(vit.blocks) if deep else 1, count, width, device=weight.device)
        nn.init.uniform_(tokens, -bound, bound)
        return cls(tokens)

    @property
    def count(self) -> int:
        return self.tokens.shape[1]

    @property
    def deep(self) -> bool:
        return self.tokens.shape[0] > 1

    def features(self, vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        keep, count = vit.num_prefix_tokens, self.count
        for i, block in enumerate(vit.blocks):
            if i < len(self.tokens):
                tokens = self.tokens[i].to(x.dtype).expand(len(x), -1, -1)
                x = torch.cat([x[:, :keep], tokens, x[:, keep + (count if i else 0):]], dim=1)
            x = block(x)
        return vit.norm(torch.cat([x[:, :keep], x[:, keep + count:]], dim=1))


def vision_transformer(base: nn.Module, backbone: str = "this backbone") -> nn.Module:
    """The timm ``VisionTransformer`` inside ``base``; a one-line refusal for any other backbone."""
    from timm.models.vision_transformer import VisionTransformer

    vit = getattr(base, "model", None)
    if not isinstance(vit, VisionTransformer) or not hasattr(base, "prompts"):
        what = f"a timm {type(vit).__name__}" if isinstance(vit, nn.Module) else "not a timm model"
        raise ZooBenchError(f"prompts need a timm vision transformer (timm's VisionTransformer: timm:vit_*, "
                            f"timm:deit_*); {backbone} is {what}")
    return vit


def add_prompts(base: nn.Module, adapter: Adapter) -> None:
    base.prompts = Prompts.initial(vision_transformer(base), adapter.prompts, adapter.deep)


def save_prompts(model: Classifier, folder: Path) -> list[str]:
    """The prompts in ``folder/prompts.safetensors`` (the weights file holds the plain network); the
    file names written (none without prompts)."""
    from safetensors.torch import save_file

    prompts = getattr(model.base, "prompts", None)
    if prompts is None:
        return []
    save_file({"tokens": prompts.tokens.detach().float().cpu().contiguous()}, str(folder / PROMPTS_FILE),
              metadata={"layers": str(len(prompts.tokens)), "count": str(prompts.count)})
    return [PROMPTS_FILE]


def load_prompts(model: Classifier, folder: Path) -> None:
    """Join the prompts saved in ``folder`` (if any) to the rebuilt plain model's vision transformer."""
    from safetensors.torch import load_file

    path = folder / PROMPTS_FILE
    if not path.exists():
        return
    tokens = load_file(str(path))["tokens"]
    vit = vision_transformer(model.base, "the rebuilt backbone")
    if tokens.ndim != 3 or tokens.shape[2] != vit.embed_dim or tokens.shape[0] not in (1, len(vit.blocks)):
        raise ZooBenchError(f"{path}: prompts of shape {tuple(tokens.shape)} do not fit the rebuilt vision "
                            f"transformer ({len(vit.blocks)} blocks of width {vit.embed_dim})")
    weight = vit.patch_embed.proj.weight
    model.base.prompts = Prompts(tokens.to(weight.device))


def adapt(model: Classifier, adapter: Adapter) -> None:
    """Freeze the base but what ``adapter`` names; the head trains; BatchNorm statistics frozen unless asked."""
    base = model.base
    if adapter.kind == "lora":
        add_lora(base, adapter)
    elif adapter.kind == "prompt":
        add_prompts(base, adapter)
    base.requires_grad_(False)
    if adapter.kind == "bias":
        for name, p in base.named_parameters():
            if name.rsplit(".", 1)[-1] == "bias":
                p.requires_grad_(True)
    elif adapter.kind == "norm":
        for m in base.modules():
            if isinstance(m, NORM_TYPES):
                m.requires_grad_(True)
    elif adapter.kind == "prompt":
        base.prompts.requires_grad_(True)
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

"""Torch modules: a backbone cut into ordered blocks, a head, and the classifier that joins them."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from zoo_bench import WeightsUnavailableError

from .weights_files import lite_weights_file


class Normalise(nn.Module):
    """uint8 or float pixels in NCHW with values 0..255 to ``(x / 255 - mean) / std``, so callers never normalise."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale - self.shift


class Block(NamedTuple):
    """One unit of ``last_n``: the parameters it trains and the modules whose BatchNorm mode it sets."""

    name: str
    parameters: list[nn.Parameter]
    modules: list[nn.Module]


class Base(Normalise):
    """A backbone without its classifier: normalisation, ordered blocks, global average pooling.

    Returns the pooled features ``(N, feature_dim)``; :meth:`feature_map` stops before the pooling.
    """

    def __init__(self, blocks: list[nn.Module], names: list[str], feature_dim: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__(mean, std)
        self.blocks = nn.ModuleList(blocks)
        self.block_names = names
        self.feature_dim = feature_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).float().mean(dim=(2, 3))  # pooled in fp32, under bf16 autocast too

    def pooled(self, x: torch.Tensor, pooling: str = "avg") -> torch.Tensor:
        """Features under a head pooling: ``avg`` (global average), ``max`` (global max), ``flatten``
        (the whole map, channel-major as torch lays it out)."""
        return pool(self.feature_map(x), pooling)

    def below(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """Normalised pixels through the first ``cut`` blocks: the activations at a cut."""
        x = super().forward(x)
        for block in self.blocks[:cut]:
            x = block(x)
        return x

    def above(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """Activations at a cut through the remaining blocks: the feature map."""
        for block in self.blocks[cut:]:
            x = block(x)
        return x

    def groups(self) -> list[Block]:
        """The ordered blocks ``last_n`` counts from the end."""
        return [Block(n, list(b.parameters()), list(b.modules())) for n, b in zip(self.block_names, self.blocks)]


POOLINGS = ("avg", "max", "flatten")


def pool(fmap: torch.Tensor, pooling: str) -> torch.Tensor:
    """A feature map (N, C, H, W) to features, in fp32 (under bf16 autocast too)."""
    fmap = fmap.float()
    if pooling == "avg":
        return fmap.mean(dim=(2, 3))
    if pooling == "max":
        return fmap.amax(dim=(2, 3))
    if pooling == "flatten":
        return fmap.flatten(1)
    raise ValueError(f"unknown pooling {pooling!r} (allowed: {', '.join(POOLINGS)})")


def make_head(in_features: int, num_classes: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Hidden Linear+ReLU+Dropout layers, then the class layer."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    if not hidden and dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """Base, pooling, then head. Keeps chosen BatchNorms in inference mode when training.

    ``avg`` is the base's own pooled output (for timm models: the pooling the model defines).
    """

    def __init__(self, base: Base, head: nn.Module, pooling: str = "avg"):
        super().__init__()
        self.base = base
        self.head = head
        self.pooling = pooling
        self.inference_bn: list[nn.Module] = []
        self.frozen_blocks: list[nn.Module] = []  # run in inference mode (no dropout, no stochastic depth) too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(x) if self.pooling == "avg" else self.base.pooled(x, self.pooling))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        for module in self.inference_bn + self.frozen_blocks:
            module.eval()
        return self


class Below(nn.Module):
    """The frozen bottom of a classifier: pixels to the activations at the cut (inference mode only)."""

    def __init__(self, model: Classifier, cut: int):
        super().__init__()
        self.base, self.cut = model.base, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.below(x, self.cut)


class Above(nn.Module):
    """The trainable top of a classifier: activations at the cut to logits, sharing the classifier's weights.

    ``base`` and ``head`` are the classifier's own modules, so optimiser groups (``layer_decay``), saved
    weights and the best epoch's copy see the classifier's parameter names.
    """

    def __init__(self, model: Classifier, cut: int):
        super().__init__()
        self.base, self.head, self.cut, self.classifier = model.base, model.head, cut, [model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.classifier[0]
        return self.head(pool(self.base.above(x, self.cut), model.pooling))

    def train(self, mode: bool = True) -> "Above":
        self.classifier[0].train(mode)
        self.training = mode
        return self


BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def layer_names(base: nn.Module) -> list[str]:
    """Modules of the base that hold parameters themselves, in order: what ``unfreeze`` may name."""
    return [name for name, m in base.named_modules() if name and any(True for _ in m.parameters(recurse=False))]


def open_parts(model: Classifier, blocks: tuple[int, ...], layers: tuple[str, ...]) -> None:
    """Train exactly these blocks and layers of the base (and the head); every base BatchNorm in inference mode."""
    groups = model.base.groups()
    model.base.requires_grad_(False)
    for i in blocks:
        for p in groups[i].parameters:
            p.requires_grad_(True)
    for name in layers:
        model.base.get_submodule(name).requires_grad_(True)
    model.head.requires_grad_(True)
    model.inference_bn = [m for m in model.base.modules() if isinstance(m, BN_TYPES)]
    model.frozen_blocks = frozen_modules(groups)


def is_frozen(block: Block) -> bool:
    return not any(p.requires_grad for p in block.parameters)


def frozen_modules(groups: list[Block]) -> list[nn.Module]:
    """Every module of the blocks none of whose parameters train."""
    return [m for g in groups if is_frozen(g) for m in g.modules]


def cut_index(model: Classifier) -> int:
    """How many blocks at the bottom of the base are frozen (0: none)."""
    index = 0
    for block in model.base.groups():
        if not is_frozen(block):
            break
        index += 1
    return index


def set_trainable(model: Classifier, last_blocks: int | None, bn_inference: bool) -> None:
    """Freeze all but the last ``last_blocks`` blocks (None: none frozen) and pick inference-mode BNs.

    Works on any base with ``groups()`` (torchvision-style blocks, timm's parameter groups).
    """
    blocks = model.base.groups()
    k = len(blocks) if last_blocks is None else max(0, min(last_blocks, len(blocks)))
    frozen, trainable = blocks[: len(blocks) - k], blocks[len(blocks) - k:]
    model.base.requires_grad_(last_blocks is None)  # parameters outside every group follow "all or nothing"
    for block in frozen:
        for p in block.parameters:
            p.requires_grad_(False)
    for block in trainable:
        for p in block.parameters:
            p.requires_grad_(True)
    model.head.requires_grad_(True)
    scope = blocks if bn_inference else frozen
    model.inference_bn = list({id(m): m for block in scope for m in block.modules if isinstance(m, BN_TYPES)}.values())
    model.frozen_blocks = frozen_modules(blocks)


# ---------------------------------------------------------------------------------------------
# Weights


def hub_checkpoint_dir() -> Path:
    """Where torchvision's own weight cache keeps files (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def safe_load(path: Path, backbone: str) -> dict[str, Any]:
    """A state dict read without running code from the file (``weights_only``); refusals in one line."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailableError(f"{backbone}: refusing to load {path}: it holds more than tensors "
                                      f"({detail[:200]})") from None


def load_state(backbone: str, url: str, weights_dir: str | None) -> dict[str, Any]:
    """A state dict from ``weights_dir``, torch's cache, or a download into torch's cache."""
    filename = os.path.basename(url)
    cache = hub_checkpoint_dir()
    candidates = ([Path(weights_dir) / filename] if weights_dir else []) + [cache / filename]
    for path in candidates:
        if path.is_file():
            return safe_load(path, backbone)
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=str(cache), progress=True, check_hash=True,
                                                  map_location="cpu", weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = getattr(exc, "reason", exc)
        where = f"{weights_dir} or {cache}" if weights_dir else str(cache)
        raise WeightsUnavailableError(
            f"{backbone}: pretrained weights file {filename} is not in {where} and could not be downloaded "
            f"from {url} ({reason}); put {filename} in {cache} or pass --weights-dir DIR holding it"
        ) from None


# ---------------------------------------------------------------------------------------------
# Backbones cut into blocks


def _torchvision_blocks(arch: str, model: nn.Module) -> tuple[list[nn.Module], list[str], int]:
    if arch.startswith("vgg"):  # layers named as keras.applications names them (block5_conv3)
        from collections import OrderedDict

        blocks, names, current, conv = [], [], [], 0
        for layer in model.features:
            b = len(blocks) + 1
            if isinstance(layer, nn.Conv2d):
                conv += 1
                current.append((f"block{b}_conv{conv}", layer))
            elif isinstance(layer, nn.ReLU):
                current.append((f"block{b}_relu{conv}", layer))
            else:
                current.append((f"block{b}_pool", layer))
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(OrderedDict(current)))
                names.append(f"block{b}")
                current, conv = [], 0
        return blocks, names, 512
    if arch == "resnet50":
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        names = ["stem", "layer1", "layer2", "layer3", "layer4"]
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4], names, 2048
    if arch == "inception_v3":
        stem = nn.Sequential(model.Conv2d_1a_3x3, model.Conv2d_2a_3x3, model.Conv2d_2b_3x3, model.maxpool1,
                             model.Conv2d_3b_1x1, model.Conv2d_4a_3x3, model.maxpool2)
        mixed = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                 "Mixed_7a", "Mixed_7b", "Mixed_7c"]
        return [stem] + [getattr(model, m) for m in mixed], ["stem"] + mixed, 2048
    if arch == "mobilenet_v2":
        return list(model.features), [f"features.{i}" for i in range(len(model.features))], 1280
    if arch == "efficientnet_b0":
        return list(model.features), ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head_conv"], 1280
    raise KeyError(arch)


def _torchvision(arch: str, weights_name: str, pretrained: bool, weights_dir: str | None) -> tuple:
    from torchvision import models

    kwargs: dict[str, Any] = {}
    if arch == "inception_v3":  # normalisation is in the spec; skip the slow init when weights follow
        kwargs = {"aux_logits": True, "transform_input": False, "init_weights": not pretrained}
    model = models.get_model(arch, weights=None, **kwargs)
    if pretrained:
        weights = models.get_model_weights(arch)[weights_name]
        model.load_state_dict(load_state(arch, weights.url, weights_dir))
    return _torchvision_blocks(arch, model)


def _lite(variant: int, pretrained: bool, image_size: int, weights_dir: str | None) -> tuple:
    """EfficientNet-Lite0/1/2: stem, one block per stage of equal output width, head conv."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=image_size)
    if pretrained:
        model.load_state_dict(safe_load(lite_weights_file(variant, weights_dir), f"efficientnet_lite{variant}"))
    stem = nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())
    stages: list[list[nn.Module]] = []
    last_out = None
    for block in model._blocks:
        out = block._block_args.output_filters
        if out != last_out:
            stages.append([])
            last_out = out
        stages[-1].append(block)
    head = nn.Sequential(model._conv_head, model._bn1, nn.ReLU6())
    blocks = [stem] + [nn.Sequential(*s) for s in stages] + [head]
    names = ["stem"] + [f"stage{i}" for i in range(1, len(stages) + 1)] + ["head_conv"]
    return blocks, names, model._conv_head.out_channels


def build(kind: str, arch: str, *, pretrained: bool, image_size: int, weights_dir: str | None,
          weights_name: str = "") -> tuple[list[nn.Module], list[str], int]:
    """(ordered blocks, block names, pooled feature width) for a first-party spec's builder."""
    if kind == "torchvision":
        return _torchvision(arch, weights_name, pretrained, weights_dir)
    if kind.startswith("lite"):
        return _lite(int(kind[4:]), pretrained, image_size, weights_dir)
    if kind == "tiny":
        return _tiny(pretrained)
    raise KeyError(kind)


def _tiny(pretrained: bool) -> tuple:
    if pretrained:
        raise WeightsUnavailableError("tiny_cnn has no pretrained weights; use it with the scratch strategy "
                                      "(in a suite: [strategies.scratch] backbones = [\"tiny_cnn\"])")

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True), nn.MaxPool2d(2))

    blocks = [block(3, 16), block(16, 32), block(32, 64), block(64, 128)]
    return blocks, [f"block{i}" for i in range(1, 5)], 128

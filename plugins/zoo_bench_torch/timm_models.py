"""timm backbones as torch bases: timm's own forward and pooling, ``last_n`` blocks from timm's groups.

A timm model is kept whole. Its pooled feature is ``forward_head(forward_features(x), pre_logits=True)``
with the classifier removed (``num_classes=0``): the class token (or the mean over tokens, as the model
defines) for a vision transformer, the pooled and normalised map for a CNN. ``last_n`` counts timm's
coarse parameter groups (``group_matcher(coarse=True)``): stem, then one group per stage (CNNs) or per
transformer block (ViT, DeiT, EVA...), the final norm with the last one. A group is a set of parameters
and the modules holding them, not a separately callable stage: timm's forward logic between stages (a
ViT's class token and position embedding, a ResNet's pooling) stays in timm's ``forward_features``.

Imports torch and timm; :mod:`.timm_catalog` is the import-free side.
"""
from __future__ import annotations

from typing import Any

from pathlib import Path

import torch
from torch import nn

from zoo_bench import WeightsUnavailableError

from .models import Block, Normalise
from .timm_weights import locate_weights


class TimmBase(Normalise):
    """Normalisation, then a timm model's ``forward_features`` and ``forward_head(pre_logits=True)``."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__(mean, std)
        self.model = model
        self.feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self._groups = parameter_groups(model)
        self.block_names = [name for name, _, _ in self._groups]
        self.weights_id: str | None = None  # set by build(): the loaded file's fingerprint
        self.prompts: nn.Module | None = None  # VPT's tokens (zoo_bench_torch.adapters.Prompts), once added

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        x = self.model.forward_features(x) if self.prompts is None else self.prompts.features(self.model, x)
        return self.model.forward_head(x, pre_logits=True)

    def groups(self) -> list[Block]:
        """timm's coarse groups, first to last, as ``last_n`` blocks."""
        return [Block(name, [self.model.get_parameter(p) for p in params],
                      [self.model.get_submodule(m) for m in modules]) for name, params, modules in self._groups]


def _label(names: list[str]) -> str:
    """A group's name from its parameters: per top-level module, their common module path
    down to its first index (``stages.2``, ``layer3``, ``blocks.11+norm``, ``cls_token+pos_embed+patch_embed``)."""
    roots: dict[str, list[list[str]]] = {}
    for name in names:
        bits = name.split(".")
        roots.setdefault(bits[0], []).append(bits[:-1] or bits)
    parts = []
    for paths in roots.values():
        common = paths[0]
        for path in paths[1:]:
            n = 0
            while n < min(len(common), len(path)) and common[n] == path[n]:
                n += 1
            common = common[:n]
        digit = 0 if common[0][-1:].isdigit() else next((i for i, bit in enumerate(common) if bit.isdigit()), None)
        parts.append(".".join(common[:digit + 1] if digit is not None else common[:1]))
    return "+".join(parts) if len(parts) <= 4 else f"{parts[0]}..{parts[-1]}"


def parameter_groups(model: nn.Module) -> list[tuple[str, list[str], list[str]]]:
    """(name, parameter names, module names) per coarse group, in forward order.

    Parameters timm's matcher leaves unmatched (a ConvNeXt's head norm, an ``fc_norm``) join the last
    group, as timm's own ``MATCH_PREV_GROUP`` does for a ViT's final norm: on their own they would
    make ``last_n = 1`` train a single norm layer. A group's modules are those that hold its
    parameters directly. A model without ``group_matcher`` is one group: ``last_n`` is all or nothing.
    """
    from timm.models._manipulate import MATCH_PREV_GROUP, group_with_matcher

    names = [n for n, _ in model.named_parameters()]
    try:
        matcher = model.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        matcher = None
    if matcher is None:
        lids = {n: 0 for n in names}
    else:
        if isinstance(matcher, dict):
            matcher = {**matcher, "_rest": [(r".*", MATCH_PREV_GROUP)]}  # last entry: whatever nothing matched
        lids = group_with_matcher(model.named_parameters(), matcher, reverse=True)
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(lids[name], []).append(name)
    out = []
    for lid in sorted(groups):
        params = groups[lid]
        modules = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in params if "." in n))
        out.append((_label(params) if matcher is not None else "all", params, modules))
    return out


def build(name: str, *, pretrained: bool, image_size: int, weights_dir: str | None) -> TimmBase:
    """The timm model ``name`` (``arch`` or ``arch.tag``) without classifier, at ``image_size``.

    Pretrained weights come from a local file (see :func:`.timm_weights.locate_weights`) loaded by
    timm itself (safetensors, or a checkpoint read with ``weights_only``: no code runs), so timm's own
    checkpoint filters apply (position embeddings resampled to ``image_size``). The model is built with its
    classifier so that timm loads strictly (every weight must fit), then the classifier is removed.
    """
    import timm

    cfg = timm.get_pretrained_cfg(name)
    mean = tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225)
    kwargs: dict[str, Any] = {"num_classes": 0}
    if pretrained:  # with its own classifier, so timm loads strictly (a dropped classifier makes it lenient)
        path = locate_weights(name, weights_dir, download=True)
        kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}, "pretrained_strict": True}
    default_size = cfg.input_size[-1] if cfg is not None else 224
    try:
        if image_size != default_size:
            try:
                model = timm.create_model(name, img_size=image_size, **kwargs)
            except TypeError as exc:  # a CNN: any input size, no img_size argument
                if "img_size" not in str(exc):
                    raise
                model = timm.create_model(name, **kwargs)
        else:
            model = timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        if not pretrained:
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailableError(f"timm:{name}: the weights in {kwargs['pretrained_cfg_overlay']['file']} "
                                      f"do not load into the model ({first})") from None
    if pretrained:
        model.reset_classifier(0)
    base = TimmBase(model, mean, std)
    base.weights_id = file_fingerprint(path) if pretrained else None
    return base


def file_fingerprint(path: Path) -> str:
    """Size and a hash of the first and last MiB: which weights file this is, in milliseconds.

    The feature cache keys on it, so features of one file (say, random stand-in weights) are never
    served for another file under the same model name."""
    import hashlib

    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            digest.update(fh.read())
    return f"{size}-{digest.hexdigest()}"


def param_count(name: str) -> int:
    """Parameters of the model without its classifier, from a build on the meta device (nothing allocated)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    return sum(p.numel() for p in model.parameters())

"""The augmentation vocabulary (:mod:`zoo_bench.augment`) in torch: sampled and applied on the device.

One affine warp per batch (``affine_grid`` + ``grid_sample``, bilinear, border padding: the nearest
edge pixel fills what falls outside, as ``ImageDataGenerator``'s ``fill_mode="nearest"``), then the
colour terms; the draws come from torch's generator, which the backend seeds per trial.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zoo_bench.augment import GREY, ArrayOps, Augment, sampling_matrix, uniform_ranges

OPS = ArrayOps(cos=torch.cos, sin=torch.sin, tan=torch.tan, stack=lambda xs, axis: torch.stack(xs, dim=axis))


def sample(aug: Augment, n: int, size: int, device: Any) -> dict[str, torch.Tensor]:
    """Random parameters of :func:`zoo_bench.augment.sampling_matrix` for ``n`` images."""
    out = {}
    for name, (low, high) in uniform_ranges(aug, size).items():
        out[name] = torch.rand(n, device=device) * (high - low) + low
    flip = torch.rand(n, device=device) < 0.5 if aug.flip else torch.zeros(n, dtype=torch.bool, device=device)
    out["flip"] = 1.0 - 2.0 * flip.float()
    out["crop"] = torch.full((n,), float(aug.crop), device=device)
    return out


def warp(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Float NCHW images (0..255) warped by the sampled maps; square images only (all of ours are)."""
    size = images.shape[-1]
    matrix = sampling_matrix(OPS, size, **params)
    theta = torch.cat([matrix[:, :, :2], matrix[:, :, 2:] * (2.0 / size)], dim=2)  # pixels -> [-1, 1] units
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour(images: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Brightness, contrast and saturation factors per image, on float NCHW images (0..255)."""
    n, device = images.shape[0], images.device

    def factor(v: float) -> torch.Tensor:
        return (1.0 + (torch.rand(n, device=device) * 2.0 - 1.0) * v).view(n, 1, 1, 1)

    weights = torch.tensor(GREY, device=device, dtype=images.dtype).view(1, 3, 1, 1)
    if aug.brightness:
        images = images * factor(aug.brightness)
    if aug.contrast:
        mean = (images * weights).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        images = (images - mean) * factor(aug.contrast) + mean
    if aug.saturation:
        grey = (images * weights).sum(dim=1, keepdim=True)
        images = (images - grey) * factor(aug.saturation) + grey
    return images.clamp(0.0, 255.0)


def augment(images: torch.Tensor, aug: Augment) -> torch.Tensor:
    """A training batch (uint8 or float NCHW, 0..255) augmented; float32 out, or the input untouched when off."""
    if not aug:
        return images
    x = images.float()
    if aug.terms() == ["flip"]:  # the common case: a flip needs no resampling
        flip = torch.rand(len(x), device=x.device) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if aug.geometric:
        x = warp(x, sample(aug, len(x), x.shape[-1], x.device))
    if aug.colour:
        x = colour(x, aug)
    return x

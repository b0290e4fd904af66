"""Grad-CAM (Selvaraju et al. 2017) for torch models: where in the image the evidence for a class lies.

Written by hand because the ``grad-cam`` package pulls in OpenCV. The model is split at its last
convolutional map, so gradients are taken with respect to that map only and no parameter gradient
is accumulated or required: frozen backbones are explained as they are.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 32


def _modules_of(*fns: Callable) -> list[torch.nn.Module]:
    """The modules behind callables (a module or a bound method of one), so their mode can be set."""
    found: dict[int, torch.nn.Module] = {}
    for fn in fns:
        owner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module):
            for m in owner.modules():
                found[id(m)] = m
    return list(found.values())


def grad_cam(feature_map: Callable[[torch.Tensor], torch.Tensor], head: Callable[[torch.Tensor], torch.Tensor],
             pixels: torch.Tensor, classes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class activation maps ``(N, H, W)`` float32 in [0, 1] and the explained classes (int64).

    ``feature_map(pixels)`` gives the last convolutional map ``(N, C, h, w)`` from NCHW 0..255 pixels,
    ``head(fmap)`` the logits ``(N, K)``. ``classes`` None explains each image's predicted class.
    Modules reachable from the callables (modules or their bound methods) run in eval mode and are
    put back in their previous mode; for other callables the caller puts the model in eval mode.
    """
    n, height, width = pixels.shape[0], pixels.shape[-2], pixels.shape[-1]
    if classes is not None and len(classes) != n:
        raise ValueError(f"grad_cam: {len(classes)} classes for {n} images")
    modules = _modules_of(feature_map, head)
    modes = [m.training for m in modules]
    maps, used = [], []
    try:
        for m in modules:
            m.training = False  # not .eval(): overrides of train() must not run, and nested modes are restored exactly
        with torch.inference_mode(False), torch.enable_grad():
            for start in range(0, n, BATCH):
                with torch.no_grad():
                    fmap = feature_map(pixels[start:start + BATCH])
                fmap = fmap.detach().requires_grad_(True)
                logits = head(fmap)
                if classes is None:
                    chosen = logits.detach().argmax(dim=1)
                else:
                    chosen = torch.as_tensor(np.asarray(classes[start:start + BATCH], np.int64), device=logits.device)
                score = logits.float().gather(1, chosen.view(-1, 1)).sum()  # images are independent in eval mode
                (grads,) = torch.autograd.grad(score, fmap)
                weights = grads.float().mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * fmap.detach().float()).sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
                peak = cam.flatten(1).amax(dim=1).view(-1, 1, 1)
                cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
                maps.append(cam.clamp_(0, 1).cpu().numpy().astype(np.float32))
                used.append(chosen.cpu().numpy().astype(np.int64))
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode
    if not maps:
        return np.zeros((0, height, width), np.float32), np.zeros(0, np.int64)
    return np.concatenate(maps), np.concatenate(used)

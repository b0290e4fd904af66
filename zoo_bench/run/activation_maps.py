"""Draw Grad-CAM maps over their images, independent of the backend that computed them.

Both backends return maps as NumPy arrays in [0, 1]; this module only blends and lays them out,
so it needs NumPy, Pillow and matplotlib (imported on call, with the Agg backend) and no framework.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from ..results.store import atomic_write


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 from grayscale (HxW, HxWx1), RGB or RGBA images."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[..., :3]


def _resized(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    cam = np.asarray(cam, np.float32)
    if cam.shape != (height, width):
        cam = np.asarray(Image.fromarray(cam).resize((width, height), Image.BILINEAR))
    return np.clip(np.nan_to_num(cam), 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (uint8 HxWx3) blended with the 'jet' colouring of ``cam`` (values in [0, 1]).

    A map of another size is resized to the image with bilinear interpolation.
    """
    import matplotlib

    matplotlib.use("Agg")
    rgb = _rgb(image)
    heat = matplotlib.colormaps["jet"](_resized(cam, rgb.shape[0], rgb.shape[1]))[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_maps(images: np.ndarray, cams: np.ndarray, labels: list[str], path: Path, title: str = "") -> Path:
    """One PNG: a column per image, the image on top and its overlay below, titled by ``labels``.

    Written with :func:`zoo_bench.results.store.atomic_write`, so a reader never sees a partial PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (len(images) == len(cams) == len(labels)) or len(images) == 0:
        raise ValueError(f"save_maps: {len(images)} images, {len(cams)} maps, {len(labels)} labels (need as many, >= 1)")
    path = Path(path)
    cols = len(images)
    fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.9 if title else 4.6), squeeze=False)
    for col, (image, cam, label) in enumerate(zip(images, cams, labels)):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(_rgb(image))
        bottom.imshow(overlay(image, cam))
        top.set_title(textwrap.fill(label, 32), fontsize=8)  # a column is about 35 characters wide at 8 pt
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path

"""The augmentation vocabulary of pixel epochs: one meaning, implemented by each backend on its device.

The geometric terms follow Keras' ``ImageDataGenerator`` (the reference articles use it):

- ``flip``: a horizontal flip with probability 1/2 (the strategies' ``augment = "flip"``);
- ``rotation``: degrees, drawn uniformly in ``[-rotation, rotation]``;
- ``width_shift`` / ``height_shift``: fractions of the side, drawn in ``[-s, s]``;
- ``shear``: a shear angle in degrees, drawn in ``[-shear, shear]``;
- ``zoom``: sampling scales ``zx``, ``zy`` drawn independently in ``[1 - zoom, 1 + zoom]``; a scale
  above 1 samples a larger area, so the content looks smaller (as in ``ImageDataGenerator``);
- ``crop``: a random square of ``crop`` times the side (1: off), resized back to the full size;

composed into one affine map per image, sampled bilinearly, the points that fall outside the image
taking the nearest edge pixel (``fill_mode="nearest"``). The colour terms draw a factor per image in
``[1 - v, 1 + v]``: ``brightness`` scales the pixels, ``contrast`` scales the distance to the image's
mean grey level, ``saturation`` the distance to each pixel's grey level; results are clipped to 0..255.

:func:`sampling_matrix` is the single definition of the geometric map. It is written against a small
array namespace so the torch backend evaluates it with torch and the Keras backend with ``keras.ops``,
each on its own device, and a test checks that both warp an image the same way.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

GEOMETRIC = ("flip", "rotation", "width_shift", "height_shift", "shear", "zoom", "crop")
COLOUR = ("brightness", "contrast", "saturation")
TERMS = GEOMETRIC + COLOUR
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as PIL and torchvision use


@dataclass(frozen=True)
class Augment:
    """The augmentation of one trial's pixel epochs (all terms off by default)."""

    flip: bool = False
    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    crop: float = 1.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Augment":
        """The augmentation named by a strategy's parameters (``augment`` and the vocabulary's keys)."""
        values = {k: float(params[k]) for k in TERMS[1:] if k in params}
        return cls(flip=params.get("augment", "none") == "flip", **values)

    def terms(self) -> list[str]:
        """The terms that are on."""
        off = asdict(Augment())
        return [k for k, v in asdict(self).items() if v != off[k]]

    @property
    def geometric(self) -> bool:
        return any(t in GEOMETRIC for t in self.terms())

    @property
    def colour(self) -> bool:
        return any(t in COLOUR for t in self.terms())

    def __bool__(self) -> bool:
        return bool(self.terms())

    def describe(self) -> str:
        """``flip, rotation=40, zoom=0.2`` (or ``none``), for rows and tables."""
        parts = [t if t == "flip" else f"{t}={getattr(self, t):g}" for t in self.terms()]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class ArrayOps:
    """The few array functions :func:`sampling_matrix` needs, from one framework."""

    cos: Callable[[Any], Any]
    sin: Callable[[Any], Any]
    tan: Callable[[Any], Any]
    stack: Callable[[list, int], Any]  # stack(list of arrays, axis)


def sampling_matrix(ops: ArrayOps, size: int, *, flip: Any, rotation: Any, tx: Any, ty: Any, shear: Any,
                    zx: Any, zy: Any, crop: Any, cx: Any, cy: Any) -> Any:
    """Per image, the 2x3 map from an output pixel to the input point it samples, shape (N, 2, 3).

    Coordinates are pixels ``(x, y)`` = (column, row) measured from the image centre. Every argument
    is an (N,) array in the framework of ``ops``: ``flip`` is -1 (flipped) or 1, angles are radians,
    ``tx``/``ty`` and ``cx``/``cy`` are pixels, ``zx``/``zy`` and ``crop`` are scales. The map is
    crop, then zoom, shear, shift, rotation and flip, each applied to the sampled coordinates, so
    that a crop of a shifted, rotated image is what the network sees.
    """
    c, s = ops.cos(rotation), ops.sin(rotation)
    sh_s, sh_c = ops.sin(shear), ops.cos(shear)
    # input = F R T Sh Z (C out + c0): each factor maps the coordinates of the step after it.
    # F = diag(flip, 1); R = [[c, -s], [s, c]]; T adds (tx, ty); Sh = [[1, -sin], [0, cos]];
    # Z = diag(zx, zy); C scales by crop and adds the crop centre (cx, cy).
    # M = F R Sh' Z: the linear part; the offset follows the shift and the crop centre.
    a = c * zx * crop
    b = (c * -sh_s - s * sh_c) * zy * crop
    d = s * zx * crop
    e = (s * -sh_s + c * sh_c) * zy * crop
    # offset: R (T + Sh Z (cx, cy))
    ox = tx + zx * cx - sh_s * zy * cy
    oy = ty + sh_c * zy * cy
    off_x = c * ox - s * oy
    off_y = s * ox + c * oy
    row0 = ops.stack([flip * a, flip * b, flip * off_x], -1)
    row1 = ops.stack([d, e, off_y], -1)
    return ops.stack([row0, row1], 1)


def uniform_ranges(aug: Augment, size: int) -> dict[str, tuple[float, float]]:
    """The interval each random parameter of :func:`sampling_matrix` is drawn from (radians, pixels)."""
    r, sh = math.radians(aug.rotation), math.radians(aug.shear)
    margin = (1.0 - aug.crop) * size / 2.0  # the crop's centre stays inside the image
    return {"rotation": (-r, r), "tx": (-aug.width_shift * size, aug.width_shift * size),
            "ty": (-aug.height_shift * size, aug.height_shift * size), "shear": (-sh, sh),
            "zx": (1.0 - aug.zoom, 1.0 + aug.zoom), "zy": (1.0 - aug.zoom, 1.0 + aug.zoom),
            "cx": (-margin, margin), "cy": (-margin, margin)}

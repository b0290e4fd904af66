"""Stratified, nested subsets: for one seed, the images at size 50 are among those at size 100.

Each class's train images are shuffled once per seed. A subset of ``n`` per class is the first
``n`` of that order; inside it, a fixed pattern of positions is held out for validation, so both the
training and the validation parts are nested across sizes and the held-out share is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dataset import Listing


@dataclass(frozen=True)
class Subset:
    """Paths and labels of one trial's train and validation images."""

    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...]


def is_val_position(i: int, val_fraction: float) -> bool:
    """Whether position ``i`` of a class's shuffled order is held out (every 1/f-th, exactly f overall)."""
    if val_fraction <= 0:
        return False
    return math.floor((i + 1) * val_fraction) > math.floor(i * val_fraction)


def class_order(paths: list[str], seed: int, label: int) -> list[str]:
    """The per-seed shuffle of one class; independent of other classes and of the sizes asked for."""
    rng = np.random.default_rng([seed, label])
    order = rng.permutation(len(paths))
    return [paths[i] for i in order]


def subset(listing: Listing, size: int, seed: int, val_fraction: float) -> Subset:
    """``size`` images per class from the train part, ``val_fraction`` of them held out."""
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for label, paths in listing.per_class("train").items():
        if size > len(paths):
            raise ValueError(f"class {listing.classes[label]!r} has {len(paths)} train images, fewer than {size}")
        for i, path in enumerate(class_order(sorted(paths), seed, label)[:size]):
            (val if is_val_position(i, val_fraction) else train).append((path, label))
    return Subset(train=tuple(train), val=tuple(val))

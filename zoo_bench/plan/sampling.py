"""Stratified, nested subsets: for one seed, the images at size 50 are among those at size 100.

Each class's train images are shuffled once per seed. A subset of ``n`` per class is the first
``n`` of that order; inside it, a fixed pattern of positions is held out for validation, so both the
training and the validation parts are nested across sizes and the held-out share is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..dataset import Listing


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


def fold_of(position: int, k: int, seed: int, label: int, repeat: int) -> int:
    """The fold (0..k-1) of the image at ``position`` of its class's shuffled order, in one repeat.

    Positions come in blocks of ``k``; each block gives one image to each fold, in an order drawn per
    (seed, class, repeat, block). So the folds are stratified (every class splits evenly, to one image)
    and nested across sizes (an image's fold depends on its position, not on how many were drawn).
    """
    block = position // k
    order = np.random.default_rng([seed, label, repeat, block, 7]).permutation(k)
    return int(order[position % k])


def folds(listing: Listing, size: int, seed: int, k: int, repeats: int
          ) -> list[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]]:
    """Repeated stratified K-fold over a size's whole pool (its train and validation images):
    (fitted on, held out) per fold, ``repeats`` x ``k`` of them, repeat by repeat."""
    if k < 2:
        raise ValueError(f"folds must be at least 2, got {k}")
    pool = []
    for label, paths in listing.per_class("train").items():
        if size > len(paths):
            raise ValueError(f"class {listing.classes[label]!r} has {len(paths)} train images, fewer than {size}")
        pool += [(i, path, label) for i, path in enumerate(class_order(sorted(paths), seed, label)[:size])]
    out = []
    for repeat in range(repeats):
        assigned = [fold_of(i, k, seed, label, repeat) for i, _, label in pool]
        for fold in range(k):
            out.append((tuple((p, l) for (_, p, l), f in zip(pool, assigned) if f != fold),
                        tuple((p, l) for (_, p, l), f in zip(pool, assigned) if f == fold)))
    return out

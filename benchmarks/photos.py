"""The photos a benchmark measures on: the first N of each class folder, decoded and resized once.

One home for what every speed benchmark needs (a folder with one sub-folder per class, file names
sorted, so every run and every machine reads the same photos).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_bench.images import Batch, ImageCache


def class_folders(folder: Path) -> list[Path]:
    """The class folders under ``folder``, in name order (the order of the labels)."""
    return sorted(d for d in folder.iterdir() if d.is_dir())


def load_photos(folder: Path, per_class: int, size: Any) -> Batch:
    """The first ``per_class`` photos of each class under ``folder``, labelled in class-name order, at
    ``size`` (an image size, or a ``zoo_bench.images.Resize`` policy)."""
    classes = class_folders(folder)
    items = [(str(p), i) for i, c in enumerate(classes) for p in sorted(c.iterdir())[:per_class]]
    return ImageCache(None).load(items, size)

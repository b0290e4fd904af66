"""Decode-once image cache: each file is decoded and resized once per image size, then reused.

Images are resized so the shorter side matches the size and centre-cropped to a square, then kept
as uint8 ``(S, S, 3)``. They live in memory for the run and as ``.npy`` files on disk, keyed by the
file's path, size and modification time, so a resumed or repeated run decodes nothing.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError)


def decode(path: str, size: int) -> np.ndarray:
    """Read an image file as RGB, shorter side to ``size``, centre crop to ``size`` x ``size``."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when much larger
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)


@dataclass
class Batch:
    """Decoded images for a list of files, with the files that could not be read."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[str] = field(default_factory=list)


class ImageCache:
    """Memory + disk cache of decoded images; thread-parallel decoding of what is missing."""

    def __init__(self, cache_dir: Path | None, workers: int | None = None):
        self.cache_dir = cache_dir
        self.workers = workers or min(8, (os.cpu_count() or 2) * 2)
        self._memory: dict[tuple[str, int], np.ndarray] = {}
        self._bad: set[tuple[str, int]] = set()
        self.decoded = 0  # files decoded from the image itself (not from a cache)

    def _disk_path(self, path: str, size: int) -> Path | None:
        if self.cache_dir is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{size}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.cache_dir / "images" / str(size) / digest[:2] / f"{digest}.npy"

    def _load_one(self, path: str, size: int) -> np.ndarray | None:
        disk = self._disk_path(path, size)
        if disk is not None and disk.exists():
            try:
                return np.load(disk)
            except (OSError, ValueError):
                pass
        try:
            array = decode(path, size)
        except DECODE_ERRORS:
            return None
        self.decoded += 1
        if disk is not None:
            disk.parent.mkdir(parents=True, exist_ok=True)
            tmp = disk.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, array)
            os.replace(tmp, disk)
        return array

    def load(self, items: list[tuple[str, int]] | tuple[tuple[str, int], ...], size: int) -> Batch:
        """Decoded images for (path, label) items; unreadable files are skipped and listed."""
        missing = [p for p, _ in items if (p, size) not in self._memory and (p, size) not in self._bad]
        if missing:
            with ThreadPoolExecutor(self.workers) as pool:
                for path, array in zip(missing, pool.map(lambda p: self._load_one(p, size), missing)):
                    if array is None:
                        self._bad.add((path, size))
                    else:
                        self._memory[(path, size)] = array
        kept = [(p, y) for p, y in items if (p, size) in self._memory]
        skipped = [p for p, _ in items if (p, size) in self._bad]
        if kept:
            images = np.stack([self._memory[(p, size)] for p, _ in kept])
        else:
            images = np.zeros((0, size, size, 3), np.uint8)
        labels = np.array([y for _, y in kept], dtype=np.int64)
        return Batch(images=images, labels=labels, paths=[p for p, _ in kept], skipped=skipped)

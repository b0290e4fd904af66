"""Three ways to find images: a folder per class, one flat folder named by class, or generated."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zoo_bench import DataError, DatasetSource, Listing

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _images_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _need_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} folder {path} does not exist")


class FolderSource(DatasetSource):
    """``ROOT/<train>/<class>/*.jpg`` and ``ROOT/<test>/<class>/*.jpg``; classes are the sub-folders."""

    name = "folder"
    description = "one sub-folder per class, in train and test parts"

    def list(self, root: Path, config: dict[str, Any], cache_dir: Path) -> Listing:
        train_dir, test_dir = root / config["train"], root / config["test"]
        _need_dir(root, "data set")
        _need_dir(train_dir, "train part")
        _need_dir(test_dir, "test part")
        classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
        if len(classes) < 2:
            raise DataError(f"{train_dir} needs one sub-folder per class (at least two), found {classes}")
        test_classes = sorted(d.name for d in test_dir.iterdir() if d.is_dir())
        if test_classes != classes:
            raise DataError(f"{test_dir} has classes {test_classes}, {train_dir} has {classes}")
        train = tuple((p, i) for i, c in enumerate(classes) for p in _images_in(train_dir / c))
        test = tuple((p, i) for i, c in enumerate(classes) for p in _images_in(test_dir / c))
        return Listing(classes=tuple(classes), train=train, test=test)


class KaggleFlatSource(DatasetSource):
    """All images in one folder per part, the class being the file-name prefix (``cat.123.jpg``)."""

    name = "kaggle-flat"
    options = {"separator": "."}
    description = "one folder per part, class from the file-name prefix (cat.123.jpg)"

    def list(self, root: Path, config: dict[str, Any], cache_dir: Path) -> Listing:
        sep = config.get("separator", ".")
        parts: dict[str, list[tuple[str, str]]] = {}
        for part in ("train", "test"):
            folder = root / config[part]
            _need_dir(folder, f"{part} part")
            items = []
            for path in _images_in(folder):
                stem = Path(path).stem  # cat.123.jpg -> cat.123
                if sep not in stem:
                    raise DataError(f"{path}: file name has no class prefix before {sep!r} (like cat.123.jpg)")
                items.append((path, stem.split(sep, 1)[0]))
            parts[part] = items
        classes = sorted({c for _, c in parts["train"]})
        if len(classes) < 2:
            raise DataError(f"{root / config['train']}: need images of at least two classes, found {classes}")
        unknown = sorted({c for _, c in parts["test"]} - set(classes))
        if unknown:
            raise DataError(f"{root / config['test']}: classes {unknown} do not appear in the train part")
        index = {c: i for i, c in enumerate(classes)}
        return Listing(classes=tuple(classes),
                       train=tuple((p, index[c]) for p, c in parts["train"]),
                       test=tuple((p, index[c]) for p, c in parts["test"]))


def draw_pattern(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB image of pattern ``kind``: stripes at an angle per class, random phase, colour and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = kind * np.pi / 5 + rng.normal(0, 0.08)
    freq = 4 + (kind % 3) * 2 + rng.uniform(-0.5, 0.5)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    fg, bg = rng.uniform(0.5, 1.0, 3), rng.uniform(0.0, 0.4, 3)
    img = np.where(wave[..., None] > 0, fg, bg) + rng.normal(0, 0.08, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


class SyntheticSource(DatasetSource):
    """Generated PNG files (striped patterns, one orientation per class) for tests and the quickstart.

    Files are written once under the cache folder, keyed by the options, so the whole real
    pipeline (decode, cache, sample) runs on them.
    """

    name = "synthetic"
    options = {"classes": 2, "train_per_class": 60, "test_per_class": 30, "image_size": 64, "data_seed": 0}
    LIMITS = {"classes": (2, 10), "train_per_class": (1, 10000), "test_per_class": (1, 10000),
              "image_size": (8, 1024), "data_seed": (0, 2**32 - 1)}
    description = "generated striped images (no files needed)"

    def list(self, root: Path, config: dict[str, Any], cache_dir: Path) -> Listing:
        opts = {k: config.get(k, v) for k, v in self.options.items()}
        for key, (low, high) in self.LIMITS.items():
            if not low <= opts[key] <= high:
                raise DataError(f"dataset.{key}: must be between {low} and {high} for the synthetic source, "
                                f"got {opts[key]}")
        digest = hashlib.sha1(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]
        folder = cache_dir / "synthetic" / digest
        classes = tuple(f"pattern{i}" for i in range(opts["classes"]))
        done = folder / "COMPLETE"
        if not done.exists():
            rng = np.random.default_rng(opts["data_seed"])
            for part, count in (("train", opts["train_per_class"]), ("test", opts["test_per_class"])):
                for i, c in enumerate(classes):
                    (folder / part / c).mkdir(parents=True, exist_ok=True)
                    for j in range(count):
                        Image.fromarray(draw_pattern(i, opts["image_size"], rng)).save(folder / part / c / f"{j}.png")
            done.write_text("ok\n")
        return FolderSource().list(folder, {"train": "train", "test": "test"}, cache_dir)

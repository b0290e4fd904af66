"""Copy a small, fixed subset of a folder data set (``train/<class>``, ``test/<class>``) for the GPU check.

Why: the GPU machine takes at most 64 MiB of files per run, so the check cannot carry the whole
``cats_dogs`` set. This copies the first ``--train`` and ``--test`` photos of each class (file names
sorted, so the subset is the same on every machine) byte for byte into ``--dest``, a git-ignored
folder, and leaves a subset that is already complete untouched.

    python benchmarks/gpu_subset.py --source ../shared/data/cats_dogs --dest .benchdata/gpu_check/cats_dogs
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def planned(source: Path, per_part: dict[str, int]) -> list[Path]:
    """The files to copy, relative to ``source``: the first N images of each class of each part."""
    files: list[Path] = []
    for part, count in per_part.items():
        part_dir = source / part
        if not part_dir.is_dir():
            raise SystemExit(f"gpu_subset: {part_dir}: no such folder (expected {source}/{part}/<class>/*)")
        for class_dir in sorted(d for d in part_dir.iterdir() if d.is_dir()):
            images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if len(images) < count:
                raise SystemExit(f"gpu_subset: {class_dir} has {len(images)} images, fewer than the {count} asked for")
            files += [p.relative_to(source) for p in images[:count]]
    return files


def make_subset(source: Path, dest: Path, train: int, test: int) -> int:
    """Copy what is missing; remove files that are not part of the subset. Returns the files copied."""
    files = planned(source, {"train": train, "test": test})
    wanted = set(files)
    if dest.exists():
        for stale in [p for p in dest.rglob("*") if p.is_file() and p.relative_to(dest) not in wanted]:
            stale.unlink()
    copied = 0
    for rel in files:
        target = dest / rel
        if target.exists() and target.stat().st_size == (source / rel).stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        copied += 1
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a folder data set: train/<class>, test/<class>")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--train", type=int, default=100, help="training photos per class")
    parser.add_argument("--test", type=int, default=200, help="test photos per class")
    args = parser.parse_args(argv)
    copied = make_subset(args.source, args.dest, args.train, args.test)
    size = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    print(f"{args.dest}: {args.train} train and {args.test} test photos per class from {args.source} "
          f"({copied} copied, {size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

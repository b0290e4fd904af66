"""The public cats-vs-dogs archive (Microsoft "PetImages", as used by TFDS and the Keras examples).

``prepare`` unpacks it into ``train/<class>/`` and ``test/<class>/`` folders of ``cat.N.jpg`` files,
skipping (and counting) the corrupt and empty files the archive is known to hold.
"""
from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

from PIL import Image

from zoo_bench import DownloadSpec

URL = "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
SHA256 = "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9"
NAME_RE = re.compile(r"^PetImages/(Cat|Dog)/(\d+)\.jpg$")
TEST_EVERY = 5  # every 5th image (by number) goes to the test part: an 80/20 split


def _is_valid_jpeg(data: bytes) -> bool:
    """Whether the bytes decode fully as a JPEG (the archive holds empty, truncated and non-JPEG files)."""
    if len(data) < 10 or b"JFIF" not in data[:10]:
        return False
    try:
        from io import BytesIO

        with Image.open(BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False


def prepare_pet_images(archive: Path, dest: Path) -> dict[str, int]:
    """Lay the archive out under ``dest``; return counts of kept images per part and of skipped files."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "test": 0, "skipped_corrupt": 0}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            match = NAME_RE.match(info.filename)
            if not match:
                continue
            label, number = match.group(1).lower(), int(match.group(2))
            data = zf.read(info)
            if not _is_valid_jpeg(data):
                counts["skipped_corrupt"] += 1
                continue
            part = "test" if number % TEST_EVERY == 0 else "train"
            out = tmp / part / label / f"{label}.{number}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            counts[part] += 1
    if counts["train"] == 0:
        raise ValueError(f"{archive}: no PetImages/Cat or PetImages/Dog images found")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return counts


CATS_DOGS = DownloadSpec(
    name="cats_dogs", url=URL, sha256=SHA256, prepare=prepare_pet_images,
    description="Microsoft PetImages (Kaggle cats vs dogs); 80/20 train/test split",
)

"""A folder-per-class data set holding one file of each awkward kind, built with PIL and numpy.

Every kind says where it goes (part and class) and either how its converted pixels must look or
that it must be skipped. Large images are cheap to write: flat colours compress to little, and the
decompression bomb is a hand-written PNG whose 400 M zero pixels deflate to about 50 KB.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

CLASSES = ("alpha", "beta")
GOOD_PER_CLASS = {"train": 4, "test": 2}
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def mean_rgb(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 3).mean(axis=0)


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: float) -> bool:
    """Whether the mean colour of ``pixels`` is within ``tol`` of ``rgb`` in every channel."""
    return bool(np.abs(mean_rgb(pixels) - np.array(rgb)).max() <= tol)


# ---------------------------------------------------------------------------------------------
# writers: one file each


def noise_jpeg_bytes(seed: int, w: int = 64, h: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(path: Path, side: int = 20000) -> None:
    """A valid 1-bit greyscale PNG of ``side`` x ``side`` black pixels, written row block by row block."""
    row = bytes(1 + (side + 7) // 8)  # filter type 0, then the packed pixels
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row * min(1000, side - start)) for start in range(0, side, 1000))
    idat += deflate.flush()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def halves(left: tuple[int, ...], right: tuple[int, ...], w: int = 40, h: int = 40) -> np.ndarray:
    pixels = np.zeros((h, w, len(left)), np.uint8)
    pixels[:, : w // 2], pixels[:, w // 2:] = left, right
    return pixels


def rgba_png(path: Path) -> None:
    """Left half fully transparent blue (hidden colour), right half opaque green."""
    Image.fromarray(halves((*BLUE, 0), (*GREEN, 255))).save(path)


def palette_png(path: Path) -> None:
    """Palette image: left half entry 0 (black, marked transparent), right half entry 1 (red)."""
    img = Image.fromarray(halves((0,), (1,))[..., 0]).convert("P")
    img.putpalette([0, 0, 0, *RED])
    img.save(path, transparency=0)


def exif_rotated_jpeg(path: Path) -> None:
    """Stored landscape, red left and blue right; EXIF orientation 6 shows it portrait, red on top."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(halves(RED, BLUE, w=64, h=32)).save(path, exif=exif, quality=95)


def truncated_jpeg(path: Path) -> None:
    data = noise_jpeg_bytes(1)
    path.write_bytes(data[: len(data) * 6 // 10])


WRITERS: dict[str, Callable[[Path], None]] = {
    "zero_byte.jpg": lambda p: p.write_bytes(b""),
    "truncated.jpg": truncated_jpeg,
    "text.jpg": lambda p: p.write_text("not an image, only named like one\n"),
    "bomb.png": png_bomb,
    "grey.jpg": lambda p: Image.new("L", (60, 40), 100).save(p),
    "cmyk.jpg": lambda p: Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(p, quality=95),  # red in CMYK
    "rgba.png": rgba_png,
    "png16.png": lambda p: Image.fromarray(np.full((40, 40), int(65535 * 0.5), np.uint16)).save(p),  # I;16
    "palette.png": palette_png,
    "one_pixel.png": lambda p: Image.new("RGB", (1, 1), (10, 200, 30)).save(p),
    "wide.jpg": lambda p: Image.new("RGB", (10000, 200), (0, 128, 255)).save(p, quality=95),
    "huge_grey.jpg": lambda p: Image.new("L", (10000, 10000), 128).save(p),  # 100 M px: PIL warns, still decodes
    "exif_rotated.jpg": exif_rotated_jpeg,
    "bilevel.png": lambda p: Image.new("1", (40, 40), 1).save(p),
}


# ---------------------------------------------------------------------------------------------
# expected pixels of the kinds that convert


def _grey_100(a: np.ndarray) -> bool:
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all() and abs(a.mean() - 100) <= 3)


def _rgba(a: np.ndarray) -> bool:  # composited over white: the hidden blue must not show
    s = a.shape[0]
    return near(a[:, : s // 2 - 2], WHITE, 2) and near(a[:, s // 2 + 2:], GREEN, 2)


def _palette(a: np.ndarray) -> bool:
    s = a.shape[0]
    return near(a[:, : s // 2 - 2], WHITE, 2) and near(a[:, s // 2 + 2:], RED, 2)


def _exif(a: np.ndarray) -> bool:  # displayed portrait: red over blue (unrotated it would be red | blue)
    s = a.shape[0]
    return near(a[: s // 2 - 2], RED, 40) and near(a[s // 2 + 2:], BLUE, 40)


CHECKS: dict[str, Callable[[np.ndarray], bool] | None] = {  # None: the file must be skipped
    "zero_byte.jpg": None, "truncated.jpg": None, "text.jpg": None, "bomb.png": None,
    "grey.jpg": _grey_100,
    "cmyk.jpg": lambda a: near(a, RED, 12),
    "rgba.png": _rgba,
    "png16.png": lambda a: bool(np.isin(a, (127, 128)).all()),  # 32767 / 257 = 127.5, not clipped to 255
    "palette.png": _palette,
    "one_pixel.png": lambda a: bool((a == (10, 200, 30)).all()),
    "wide.jpg": lambda a: near(a, (0, 128, 255), 6),
    "huge_grey.jpg": lambda a: near(a, (128, 128, 128), 2),
    "exif_rotated.jpg": _exif,
    "bilevel.png": lambda a: bool((a == 255).all()),
}

PLACES = {  # part/class of each kind; train classes stay the same size so a suite can use them all
    "train/alpha": ["zero_byte.jpg", "grey.jpg", "cmyk.jpg", "rgba.png", "exif_rotated.jpg"],
    "train/beta": ["truncated.jpg", "text.jpg", "png16.png", "palette.png", "one_pixel.png"],
    "test/alpha": ["bomb.png", "wide.jpg", "bilevel.png"],
    "test/beta": ["huge_grey.jpg"],
}


@dataclass(frozen=True)
class BadImageSet:
    """Where the data set is and what loading it must give."""

    root: Path
    expected: dict[str, Callable[[np.ndarray], bool] | None]  # path -> pixel check, None when skipped
    labels: dict[str, int]  # path -> class index of its folder

    @property
    def skipped(self) -> set[str]:
        return {p for p, check in self.expected.items() if check is None}

    def unreadable_in(self, part: str) -> int:
        return sum(1 for p in self.skipped if Path(p).parts[-3] == part)


def build(root: Path) -> BadImageSet:
    """Write the data set under ``root``: good noise images plus every kind in :data:`PLACES`."""
    expected: dict[str, Callable[[np.ndarray], bool] | None] = {}
    labels: dict[str, int] = {}
    rng = np.random.default_rng(0)
    for part, count in GOOD_PER_CLASS.items():
        for label, cls in enumerate(CLASSES):
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                path = folder / f"good{i}.png"
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
                expected[str(path)], labels[str(path)] = (lambda a: a.std() > 20), label
            for name in PLACES.get(f"{part}/{cls}", []):
                WRITERS[name](folder / name)
                expected[str(folder / name)], labels[str(folder / name)] = CHECKS[name], label
    return BadImageSet(root=root, expected=expected, labels=labels)

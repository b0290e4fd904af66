"""Decode-once image cache: each file is decoded and resized once per image size, then reused.

Images are resized so the shorter side matches the size and centre-cropped to a square, then kept
as uint8 ``(S, S, 3)`` RGB. A :class:`Resize` policy can ask for a larger resize before the crop
(``crop_pct``, as timm's eval transform: shorter side to ``floor(S / crop_pct)``) and another filter. Every PIL mode is converted: grey and CMYK to RGB, 16-bit and float
images scaled to 8 bits, transparency composited over white, the EXIF orientation applied. Files
that cannot be decoded (empty, truncated, not images, decompression bombs) are skipped and listed
with the reason, so one bad file never stops a run nor shifts another image's label.

Decoded arrays live in memory for the run and on disk as ``.npz`` files keyed by a hash of the
file's bytes, the image size and :data:`DECODE_VERSION`: an edited file is decoded again, a renamed
copy is not, and old arrays are never reused after decoding changes. Entries are checked when read
(zip CRC-32, shape, dtype; never unpickled) and rewritten atomically when they fail.
"""
from __future__ import annotations

import contextlib
import math
import hashlib
import io
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_ASPECT = 4  # beyond this the centre square is cut before resizing (same pixels, bounded memory)
DECODE_VERSION = 2  # part of every disk cache key: bump it whenever decode's output changes
BACKGROUND = (255, 255, 255, 255)  # transparent pixels show white, as an image viewer draws them
DEFAULT_PIXEL_LIMIT = 2 * 89_478_485  # PIL's hard limit, kept when Image.MAX_IMAGE_PIXELS is None
_BOMB_WARNING_FILTER = ("ignore", None, Image.DecompressionBombWarning, None, 0)


INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                  "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
                  "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class Resize:
    """How a file becomes an ``size`` x ``size`` array, as timm's eval transform does it.

    ``center``: shorter side to ``floor(size / crop_pct)`` with ``interpolation``, then the centre
    square. ``squash``: both sides to ``floor(size / crop_pct)`` (aspect not kept), then the centre
    square. ``border``: longer side to ``floor(size / crop_pct)``, then the centre square, padded with
    ``fill`` where the image is smaller. The default is zoo-bench's own policy (centre, crop_pct 1).
    """

    size: int
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    crop_mode: str = "center"
    fill: tuple[int, int, int] = (0, 0, 0)  # border padding (timm: the mean colour)

    @property
    def resize_to(self) -> int:
        """The shorter side before the centre crop."""
        return max(self.size, math.floor(self.size / self.crop_pct)) if self.crop_pct < 1 else self.size

    @property
    def is_default(self) -> bool:
        """zoo-bench's own policy (shorter side to the size, bilinear), as before policies existed."""
        return self.crop_pct == 1.0 and self.interpolation == "bilinear" and self.crop_mode == "center"

    @property
    def key(self) -> str:
        """The policy's part of a disk cache key; the default policy keeps the key it always had."""
        if self.is_default:
            return str(self.size)
        mode = "" if self.crop_mode == "center" else f"-{self.crop_mode}"
        fill = "-f" + ".".join(map(str, self.fill)) if self.crop_mode == "border" else ""
        return f"{self.size}-c{self.crop_pct:g}-{self.interpolation}{mode}{fill}"


def as_resize(size: "int | Resize") -> Resize:
    """A policy from a bare size (the default policy) or a policy."""
    return size if isinstance(size, Resize) else Resize(int(size))


class DecodeError(ValueError):
    """A file PIL can open that is still not used: no pixels, or too many (a decompression bomb)."""


# ---------------------------------------------------------------------------------------------
# decoding


def _quiet_bomb_warning() -> None:
    """PIL warns about images over ``MAX_IMAGE_PIXELS`` and decodes them anyway; the pixel limit
    here decides instead. Left on, the warning repeats once per image size and turns into an
    exception under ``-W error``."""
    if _BOMB_WARNING_FILTER not in warnings.filters:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def pixel_limit() -> int:
    """Images with more pixels are skipped undecoded; PIL's own error limit, even if disabled."""
    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else DEFAULT_PIXEL_LIMIT


def _open(data: bytes, size: int | None) -> Image.Image:
    """Open (header only), refuse empty and oversized images, and ask JPEG for a reduced decode."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    if w < 1 or h < 1:
        raise DecodeError(f"image has no pixels ({w}x{h})")
    if w * h > pixel_limit():
        raise DecodeError(f"{w}x{h} px is over the {pixel_limit()} pixel limit (decompression bomb); not decoded")
    if size is not None:  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that still covers size
        img.draft("RGB", (size, size))
    return img


def _depth_scale(img: Image.Image) -> float:
    """Factor to 0..255 for 16-bit, 32-bit and float pixels (PIL's conversion clips them instead)."""
    if img.mode.startswith("I;16"):
        return 255 / 65535
    _, high = img.getextrema()
    if img.mode == "F" and high <= 1.0:
        return 255.0  # floats in 0..1
    return 255 / 65535 if high > 255 else 1.0  # 'I' holds 16-bit data (PNG, TIFF) or 8-bit values


def _working_mode(img: Image.Image) -> Image.Image:
    """Convert to L, RGB or RGBA: modes that resize well and turn into RGB without loss."""
    if img.mode.startswith("I") or img.mode == "F":
        scale = _depth_scale(img)
        return img.convert("F").point(lambda v: v * scale + 0.5).convert("L")  # +0.5: round, not truncate
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:  # alpha, or a tRNS entry or colour
        return img if img.mode == "RGBA" else img.convert("RGBA")
    return img if img.mode in ("L", "RGB") else img.convert("RGB")  # 1, P, CMYK, YCbCr, LAB, HSV


def _square(img: Image.Image, policy: Resize) -> Image.Image:
    """Shorter side to ``policy.resize_to`` (antialiased when shrinking), then the centre ``size`` x ``size``."""
    size, short, resample = policy.size, policy.resize_to, INTERPOLATIONS[policy.interpolation]
    w, h = img.size
    if policy.crop_mode == "squash":  # timm: Resize((s, s)), then CenterCrop
        img = img.resize((short, short), resample, reducing_gap=None)
        left = int(round((short - size) / 2.0))
        return img.crop((left, left, left + size, left + size))
    if policy.crop_mode == "border":  # timm: ResizeKeepRatio(s, longest=1), then CenterCropOrPad(fill)
        ratio = max(w / short, h / short)
        img = _to_rgb(img).resize((max(1, round(w / ratio)), max(1, round(h / ratio))), resample, reducing_gap=None)
        nw, nh = img.size
        canvas = Image.new("RGB", (max(nw, size), max(nh, size)), policy.fill)
        canvas.paste(img, ((size - nw) // 2 if size > nw else 0, (size - nh) // 2 if size > nh else 0))
        cw, ch = canvas.size
        left, top = int(round((cw - size) / 2.0)), int(round((ch - size) / 2.0))
        return canvas.crop((left, top, left + size, top + size))
    if max(w, h) > MAX_ASPECT * min(w, h):  # a long thin strip: resize only its centre square,
        m = min(w, h) * size / short        # or 1x40000 px would become 224x8960000
        left, top = (w - m) / 2, (h - m) / 2
        return img.resize((size, size), resample, box=(left, top, left + m, top + m), reducing_gap=None)
    if policy.is_default:
        scale = short / min(w, h)
        nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
        img = img.resize((nw, nh), resample, reducing_gap=None)
        left, top = (nw - size) // 2, (nh - size) // 2
        return img.crop((left, top, left + size, top + size))
    # A backbone's own eval transform (timm): torchvision's Resize and CenterCrop geometry and rounding.
    nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize((nw, nh), resample, reducing_gap=None)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB from a working-mode image, compositing any transparency over :data:`BACKGROUND`."""
    if img.mode == "RGBA":
        img = Image.alpha_composite(Image.new("RGBA", img.size, BACKGROUND), img)
    return img.convert("RGB")


def decode_bytes(data: bytes, size: "int | Resize") -> np.ndarray:
    """An image file's bytes as RGB uint8 ``(size, size, 3)``; raises for files that cannot be used.

    PIL's plugins raise many exception types for malformed files (OSError, SyntaxError, ValueError,
    struct.error, ...); callers that skip bad files catch ``Exception``.
    """
    policy = as_resize(size)
    size = policy.size
    _quiet_bomb_warning()
    # A backbone's own eval transform (timm) decodes at full resolution, as timm does; the default
    # policy keeps JPEG's reduced-scale decoding (faster, and what every cached array was made with).
    with _open(data, policy.resize_to if policy.is_default else None) as img:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        out = _to_rgb(_square(_working_mode(img), policy))
    array = np.asarray(out, dtype=np.uint8)
    if array.shape != (size, size, 3):
        raise DecodeError(f"decoded to shape {array.shape}, expected {(size, size, 3)}")
    return array


def decode(path: str, size: "int | Resize") -> np.ndarray:
    """Read an image file as RGB, shorter side to ``size`` (or as the policy says), centre crop to a square."""
    return decode_bytes(Path(path).read_bytes(), size)


# ---------------------------------------------------------------------------------------------
# checked, atomic .npz files (also used for converted weights)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as .npz through a temporary file and ``os.replace``: readers see the old
    file or the new one, never a partial one; each zip member carries a CRC-32 checked on read."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # in memory first: one write call instead of zipfile's many small ones
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file, or None when it cannot be trusted: truncated, bytes changed
    (CRC-32 mismatch), not a zip, or holding Python objects (never unpickled)."""
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:  # bytes: no handle left open
            return {name: data[name] for name in data.files}
    except Exception:  # BadZipFile, ValueError, OSError, EOFError, ... and plain .npy arrays (no context manager)
        return None


# ---------------------------------------------------------------------------------------------
# the cache


@dataclass
class Batch:
    """Decoded images for a list of files, with the files that could not be read and why."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # skipped path -> why it could not be used


def cache_key(data: bytes, size: "int | Resize") -> str:
    """What a decoded array depends on: the file's bytes, the resize policy and the decoder version."""
    return f"{hashlib.blake2b(data, digest_size=20).hexdigest()}-{as_resize(size).key}-v{DECODE_VERSION}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class ImageCache:
    """Memory + disk cache of decoded images; thread-parallel decoding of what is missing."""

    def __init__(self, cache_dir: Path | None, workers: int | None = None):
        self.cache_dir = cache_dir
        self.workers = workers or min(8, (os.cpu_count() or 2) * 2)
        self._memory: dict[tuple[str, Resize], np.ndarray] = {}
        self._bad: dict[tuple[str, Resize], str] = {}  # (path, policy) -> reason
        self._policy: Resize | None = None  # the policy whose arrays are held in memory
        self._lock = threading.Lock()
        self.decoded = 0  # files decoded from the image itself (not from a cache)
        self.rejected = 0  # disk entries found corrupt or stale, then rebuilt

    def _entry(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / "images" / key[:2] / f"{key}.npz"

    def cached(self, path: str, size: "int | Resize") -> np.ndarray | None:
        """The file's decoded array from the disk cache, or None where it is not there (never decodes)."""
        try:
            entry = self._entry(cache_key(Path(path).read_bytes(), size))
        except OSError:
            return None
        return self._read_entry(entry, as_resize(size).size) if entry is not None else None

    def _read_entry(self, entry: Path, size: int) -> np.ndarray | None:
        """The cached array if the entry exists and passes every check; a failing one is counted."""
        if not entry.exists():
            return None
        pixels = (load_npz(entry) or {}).get("pixels")
        if pixels is not None and pixels.shape == (size, size, 3) and pixels.dtype == np.uint8:
            return pixels
        with self._lock:
            self.rejected += 1
        return None

    def _write_entry(self, entry: Path, array: np.ndarray) -> None:
        try:
            save_npz(entry, {"pixels": array})
        except OSError:
            pass  # a full or read-only cache disk costs a decode next time, nothing else

    def _load_one(self, path: str, size: Resize) -> np.ndarray | str:
        """The image's array, or the reason it cannot be used."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return _reason(exc)
        key = cache_key(data, size)
        entry = self._entry(key)
        cached = self._read_entry(entry, size.size) if entry is not None else None
        if cached is not None:
            return cached
        try:
            array = decode_bytes(data, size)
        except Exception as exc:  # any failure to decode one file skips that file only
            return _reason(exc)
        with self._lock:
            self.decoded += 1
        if entry is not None:
            self._write_entry(entry, array)
        return array

    def load(self, items: list[tuple[str, int]] | tuple[tuple[str, int], ...], size: "int | Resize") -> Batch:
        """Decoded images for (path, label) items; unreadable files are skipped and listed."""
        size = as_resize(size)
        if size != self._policy:  # one policy's arrays in memory at a time; the others stay on disk
            self._memory = {k: v for k, v in self._memory.items() if k[1] == size}
            self._policy = size
        missing = list(dict.fromkeys(p for p, _ in items if (p, size) not in self._memory
                                     and (p, size) not in self._bad))
        if missing:
            _quiet_bomb_warning()  # here too: in this thread, before the workers start
            with ThreadPoolExecutor(self.workers) as pool:
                for path, result in zip(missing, pool.map(lambda p: self._load_one(p, size), missing)):
                    if isinstance(result, str):
                        self._bad[(path, size)] = result
                    else:
                        self._memory[(path, size)] = result
        kept = [(p, y) for p, y in items if (p, size) in self._memory]
        skipped = [p for p, _ in items if (p, size) in self._bad]
        if kept:
            images = np.stack([self._memory[(p, size)] for p, _ in kept])
        else:
            images = np.zeros((0, size.size, size.size, 3), np.uint8)
        labels = np.array([y for _, y in kept], dtype=np.int64)
        return Batch(images=images, labels=labels, paths=[p for p, _ in kept], skipped=skipped,
                     reasons={p: self._bad[(p, size)] for p in skipped})

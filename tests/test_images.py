"""Decode-once cache: sizes, corrupt files skipped and counted, disk entries keyed by content and checked."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_bench import images
from zoo_bench.images import ImageCache, cache_key, decode, load_npz, save_npz


def make_image(path, w=80, h=40, colour=(200, 10, 10)):
    Image.new("RGB", (w, h), colour).save(path)
    return str(path)


def noise_image(path, seed=0, w=48, h=40):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def entries(cache_dir):
    return sorted((cache_dir / "images").rglob("*.npz"))


def test_decode_resizes_shorter_side_and_crops(tmp_path):
    arr = decode(make_image(tmp_path / "a.jpg"), 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert abs(int(arr[..., 0].mean()) - 200) < 10


def test_corrupt_and_missing_files_are_skipped_and_listed(tmp_path):
    good = make_image(tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    batch = ImageCache(None).load([(good, 0), (str(bad), 1), (str(empty), 1), (str(tmp_path / "gone.jpg"), 0)], 16)
    assert batch.images.shape == (1, 16, 16, 3)
    assert batch.labels.tolist() == [0]
    assert sorted(batch.skipped) == sorted([str(bad), str(empty), str(tmp_path / "gone.jpg")])
    assert batch.reasons[str(tmp_path / "gone.jpg")].startswith("FileNotFoundError")


def test_each_image_is_decoded_once_per_size(tmp_path):
    items = [(make_image(tmp_path / f"{i}.png", colour=(i * 40, 0, 0)), i % 2) for i in range(6)]
    cache = ImageCache(tmp_path / "cache")
    cache.load(items, 16)
    cache.load(items[:3], 16)
    assert cache.decoded == 6
    cache.load(items, 24)
    assert cache.decoded == 12
    fresh = ImageCache(tmp_path / "cache")  # a new run reads the disk cache
    batch = fresh.load(items, 16)
    assert fresh.decoded == 0 and len(batch.labels) == 6


def test_the_key_covers_content_size_and_decoder_version(monkeypatch):
    key = cache_key(b"abc", 32)
    assert key != cache_key(b"abd", 32) and key != cache_key(b"abc", 33)
    monkeypatch.setattr(images, "DECODE_VERSION", images.DECODE_VERSION + 1)
    assert cache_key(b"abc", 32) != key


def test_an_edited_file_is_decoded_again_even_with_the_same_size_and_mtime(tmp_path):
    path = tmp_path / "a.bmp"  # BMP: the byte size does not depend on the colour
    make_image(path, colour=(200, 10, 10))
    stat = os.stat(path)
    ImageCache(tmp_path / "cache").load([(str(path), 0)], 16)
    make_image(path, colour=(10, 10, 200))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    fresh = ImageCache(tmp_path / "cache")
    batch = fresh.load([(str(path), 0)], 16)
    assert fresh.decoded == 1 and batch.images[0, ..., 2].mean() > 150


def test_a_renamed_or_copied_file_reuses_the_entry(tmp_path):
    original = noise_image(tmp_path / "a.png")
    ImageCache(tmp_path / "cache").load([(original, 0)], 16)
    copy = tmp_path / "elsewhere" / "b.png"
    copy.parent.mkdir()
    shutil.copy(original, copy)
    fresh = ImageCache(tmp_path / "cache")
    batch = fresh.load([(str(copy), 1)], 16)
    assert fresh.decoded == 0 and np.array_equal(batch.images[0], decode(original, 16))
    assert batch.labels.tolist() == [1] and len(entries(tmp_path / "cache")) == 1


def _unpickled_marker():
    """Called only if a cache entry's pickle were ever loaded."""
    _unpickled_marker.called = True
    return 0


class _Trap:
    def __reduce__(self):
        return (_unpickled_marker, ())


def _flip_pixel_bytes(entry, pixels):
    data = bytearray(entry.read_bytes())
    start = data.find(pixels.tobytes())
    assert start > 0
    at = start + pixels.nbytes // 2
    data[at: at + 4] = bytes(255 - b for b in data[at: at + 4])
    entry.write_bytes(bytes(data))


def _write(entry, saver, *args, **kwargs):
    with open(entry, "wb") as fh:
        saver(fh, *args, **kwargs)


CORRUPTIONS = {
    "truncated": lambda entry, pixels: entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2]),
    "empty": lambda entry, pixels: entry.write_bytes(b""),
    "flipped_pixel_bytes": _flip_pixel_bytes,
    "garbage": lambda entry, pixels: entry.write_bytes(os.urandom(2000)),
    "pickled_npy": lambda entry, pixels: _write(entry, np.save, np.array([_Trap()], dtype=object),
                                                allow_pickle=True),
    "pickled_npz_member": lambda entry, pixels: _write(entry, np.savez, pixels=np.array([_Trap()], dtype=object)),
    "wrong_shape": lambda entry, pixels: save_npz(entry, {"pixels": np.zeros((16, 16, 4), np.uint8)}),
    "wrong_dtype": lambda entry, pixels: save_npz(entry, {"pixels": pixels.astype(np.float32)}),
    "no_pixels_member": lambda entry, pixels: save_npz(entry, {"other": pixels}),
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_a_corrupt_entry_is_detected_decoded_again_and_rewritten(tmp_path, corrupt):
    _unpickled_marker.called = False
    path = noise_image(tmp_path / "a.png")
    ImageCache(tmp_path / "cache").load([(path, 0)], 16)
    [entry] = entries(tmp_path / "cache")
    before = entry.read_bytes()
    good = load_npz(entry)["pixels"]
    CORRUPTIONS[corrupt](entry, good)
    assert entry.read_bytes() != before
    fresh = ImageCache(tmp_path / "cache")
    batch = fresh.load([(path, 0)], 16)
    assert fresh.decoded == 1 and fresh.rejected == 1 and batch.skipped == []
    assert np.array_equal(batch.images[0], decode(path, 16))
    assert np.array_equal(load_npz(entry)["pixels"], good)  # rewritten: the next run reads it again
    assert not _unpickled_marker.called
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary file left


def test_a_failed_cache_write_leaves_no_file_and_still_returns_the_image(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.os, "replace", fail)
    path = noise_image(tmp_path / "a.png")
    batch = ImageCache(tmp_path / "cache").load([(path, 0)], 16)
    assert batch.skipped == [] and np.array_equal(batch.images[0], decode(path, 16))
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_identical_files_in_one_batch_share_one_entry(tmp_path):
    paths = [noise_image(tmp_path / f"{i}.png", seed=7) for i in range(12)]
    batch = ImageCache(tmp_path / "cache", workers=6).load([(p, i % 2) for i, p in enumerate(paths)], 16)
    assert len(batch.paths) == 12 and batch.labels.tolist() == [i % 2 for i in range(12)]
    [entry] = entries(tmp_path / "cache")
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_save_npz_replaces_atomically(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"
    save_npz(target, {"a": np.arange(3)})
    seen = []
    real_replace = os.replace

    def watch(src, dst):  # the old file stays whole until the new one is complete
        seen.append((load_npz(target)["a"].tolist(), load_npz(Path(src))["a"].tolist()))
        real_replace(src, dst)

    monkeypatch.setattr(images.os, "replace", watch)
    save_npz(target, {"a": np.arange(5)})
    assert seen == [([0, 1, 2], [0, 1, 2, 3, 4])] and load_npz(target)["a"].tolist() == [0, 1, 2, 3, 4]

"""Decode-once cache: sizes, corrupt files skipped and counted, disk reuse."""
import numpy as np
from PIL import Image

from zoo_bench.images import ImageCache, decode


def make_image(path, w=80, h=40, colour=(200, 10, 10)):
    Image.new("RGB", (w, h), colour).save(path)
    return str(path)


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


def test_each_image_is_decoded_once_per_size(tmp_path):
    items = [(make_image(tmp_path / f"{i}.png"), i % 2) for i in range(6)]
    cache = ImageCache(tmp_path / "cache")
    cache.load(items, 16)
    cache.load(items[:3], 16)
    assert cache.decoded == 6
    cache.load(items, 24)
    assert cache.decoded == 12
    fresh = ImageCache(tmp_path / "cache")  # a new run reads the disk cache
    batch = fresh.load(items, 16)
    assert fresh.decoded == 0 and len(batch.labels) == 6

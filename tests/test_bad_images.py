"""Awkward image files: each converted to RGB uint8 (S, S, 3) or skipped and listed, never a crash.

The data set (tests/bad_image_set.py) holds empty, truncated and fake JPEGs, a decompression bomb,
grey, CMYK, RGBA, 16-bit, palette-with-transparency, 1-bit, 1 px, 10000 px and EXIF-rotated images
in a folder-per-class layout, read through the `folder` source like a user's data.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

import bad_image_set
from conftest import run_inprocess, write_suite
from zoo_bench.images import DecodeError, ImageCache, decode
from zoo_bench_datasets.sources import FolderSource


@pytest.fixture(scope="module")
def bad_set(tmp_path_factory) -> bad_image_set.BadImageSet:
    return bad_image_set.build(tmp_path_factory.mktemp("bad-images"))


def listed(bad_set):
    return FolderSource().list(bad_set.root, {"train": "train", "test": "test"}, bad_set.root)


def test_the_folder_source_lists_every_file_with_its_folder_label(bad_set):
    listing = listed(bad_set)
    assert listing.classes == bad_image_set.CLASSES
    assert dict(listing.train + listing.test) == bad_set.labels


@pytest.mark.parametrize("size", [32, 224])
def test_each_kind_is_converted_or_skipped_and_labels_stay_with_their_files(bad_set, size, tmp_path):
    listing = listed(bad_set)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decompression-bomb warning must not become an exception
        batch = ImageCache(tmp_path / "cache").load(listing.train + listing.test, size)
    assert set(batch.skipped) == bad_set.skipped and set(batch.reasons) == bad_set.skipped
    assert sorted(batch.paths) == sorted(set(bad_set.expected) - bad_set.skipped)
    assert batch.images.shape == (len(batch.paths), size, size, 3) and batch.images.dtype == np.uint8
    assert batch.labels.tolist() == [bad_set.labels[p] for p in batch.paths]
    wrong = [p for p, pixels in zip(batch.paths, batch.images) if not bad_set.expected[p](pixels)]
    assert wrong == []


def test_skip_reasons_say_what_was_wrong(bad_set):
    batch = ImageCache(None).load([(p, 0) for p in sorted(bad_set.skipped)], 32)
    reasons = {p.rsplit("/", 1)[1]: r for p, r in batch.reasons.items()}
    assert "bomb" in reasons["bomb.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["zero_byte.jpg"].startswith("UnidentifiedImageError")
    assert reasons["text.jpg"].startswith("UnidentifiedImageError")


def test_converted_kinds_come_back_equal_from_the_disk_cache(bad_set, tmp_path):
    items = listed(bad_set).train + listed(bad_set).test
    first = ImageCache(tmp_path / "cache").load(items, 32)
    again = ImageCache(tmp_path / "cache")
    second = again.load(items, 32)
    assert again.decoded == 0 and again.rejected == 0  # only the skipped files were tried again
    assert second.paths == first.paths and np.array_equal(second.images, first.images)
    assert set(second.skipped) == bad_set.skipped


def test_a_bomb_is_skipped_without_decoding_even_with_pils_limit_switched_off(bad_set, monkeypatch):
    bomb = next(p for p in bad_set.skipped if p.endswith("bomb.png"))
    loaded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(self.size) or real_load(self))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode(bomb, 32)
    assert loaded == [] and time.perf_counter() - start < 1.0


def test_the_bomb_is_a_real_png(tmp_path):
    bad_image_set.png_bomb(tmp_path / "small.png", side=300)  # the same writer, decodable size
    assert (decode(str(tmp_path / "small.png"), 16) == 0).all()


def test_large_images_decode_without_a_warning(bad_set):
    huge = next(p for p in bad_set.expected if p.endswith("huge_grey.jpg"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode(huge, 32)
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


def test_a_suite_over_the_bad_set_runs_and_counts_the_unreadable_files(bad_set, tmp_path, registry, cache_dir):
    per_class = bad_image_set.GOOD_PER_CLASS["train"] + len(bad_image_set.PLACES["train/alpha"])
    body = f"""
    [suite]
    name = "bad-images"
    seeds = [0]
    [dataset]
    source = "folder"
    path = "{bad_set.root}"
    sizes = [{per_class}]
    val_fraction = 0.25
    [run]
    backends = ["torch"]
    backbones = ["mini_cnn"]
    batch_size = 8
    [strategies.scratch]
    epochs = 1
    """
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    # every train image is in the trial (size = class size), so all unreadable files of both parts count
    assert row["skipped_images"] == bad_set.unreadable_in("train") + bad_set.unreadable_in("test") == 4
    kept = len(bad_set.expected) - len(bad_set.skipped)
    assert row["train_images"] + row["val_images"] + row["test_images"] == kept
    listed = dict(line.split("\t", 1) for line in (store.run_dir / "skipped_images.txt").read_text().splitlines())
    assert set(listed) == set(bad_set.skipped) and all(listed.values())  # each file once, with its reason


def test_a_long_thin_strip_is_cropped_before_resizing(tmp_path):
    """1 x 40000 px would become 224 x 8960000 (6 GB) if resized whole; only its centre is used."""
    from PIL import Image

    from zoo_bench.images import decode

    path = tmp_path / "strip.png"
    Image.new("RGB", (1, 40000), (10, 200, 30)).save(path)
    out = decode(str(path), 224)
    assert out.shape == (224, 224, 3) and tuple(out[100, 100]) == (10, 200, 30)

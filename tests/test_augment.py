"""The augmentation vocabulary: one meaning in both backends, seeded, and as suite keys."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, TINY_SUITE, run_inprocess, write_suite
from zoo_bench.augment import Augment
from zoo_bench.errors import SuiteError
from zoo_bench.plan.grid import expand
from zoo_bench.plan.suite import parse_suite
from zoo_bench_torch.augment import augment as torch_augment
from zoo_bench_torch.augment import warp as torch_warp

N = 3
FIXED = dict(flip=[1.0, -1.0, 1.0], rotation=[math.radians(30), math.radians(-20), math.radians(5)],
             tx=[10.0, -5.0, 0.0], ty=[-8.0, 3.0, 12.0], shear=[math.radians(0.2), math.radians(10), math.radians(-15)],
             zx=[1.2, 0.8, 1.0], zy=[0.9, 1.1, 1.0], crop=[1.0, 0.8, 0.7], cx=[0.0, 5.0, -8.0], cy=[0.0, -4.0, 6.0])
IDENTITY = dict(flip=[1.0] * N, rotation=[0.0] * N, tx=[0.0] * N, ty=[0.0] * N, shear=[0.0] * N, zx=[1.0] * N,
                zy=[1.0] * N, crop=[1.0] * N, cx=[0.0] * N, cy=[0.0] * N)


def photos(size: int = 96) -> np.ndarray:
    """Three real photos (cats_dogs) as float NHWC 0..255."""
    from PIL import Image

    folder = SHARED_DATA / "cats_dogs" / "train"
    if not folder.is_dir():
        pytest.skip("needs ../shared/data/cats_dogs")
    paths = sorted(p for p in folder.rglob("*") if p.is_file())[:N]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in paths]).astype(np.float32)


def twarp(images: np.ndarray, params: dict) -> np.ndarray:
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()}
    return torch_warp(torch.from_numpy(images).permute(0, 3, 1, 2), t).permute(0, 2, 3, 1).numpy()


def kwarp(images: np.ndarray, params: dict) -> np.ndarray:
    pytest.importorskip("keras")
    from keras import ops

    from zoo_bench_keras.augment import warp

    return np.asarray(warp(ops.convert_to_tensor(images), {k: ops.convert_to_tensor(np.float32(v)) for k, v in params.items()}))


def test_identity_parameters_leave_images_unchanged():
    x = photos()
    assert np.abs(twarp(x, IDENTITY) - x).max() < 1e-2
    assert np.abs(kwarp(x, IDENTITY) - x).max() < 1e-2


def test_both_backends_warp_real_photos_the_same_way():
    x = photos()
    t, k = twarp(x, FIXED), kwarp(x, FIXED)
    moved = np.abs(t - x).mean()
    assert moved > 20  # the parameters change the images a lot...
    assert np.abs(t - k).mean() < 0.01 and np.abs(t - k).max() < 1.0  # ...and both backends the same way


def test_parameters_mean_what_the_vocabulary_says():
    """Rotation turns the image, a shift moves it by that many pixels, a zoom above 1 shows it smaller."""
    size = 64
    img = np.zeros((1, size, size, 3), np.float32)
    img[0, 8:16, 40:56] = 255.0  # a bar in the upper right
    one = {k: [v[0]] for k, v in IDENTITY.items()}
    for warp in (twarp, kwarp):
        shifted = warp(img, {**one, "tx": [-8.0]})  # sampling 8 px to the left: content moves 8 px right
        assert np.abs(shifted[0, 8:16, 48:64] - 255.0).max() < 1 and shifted[0, 8:16, 40:48].max() < 1
        quarter = warp(img, {**one, "rotation": [math.pi / 2]})
        expected = np.rot90(img[0], k=1)  # a quarter turn, counter-clockwise on screen
        assert np.abs(quarter[0] - expected).mean() < 2.0
        small = warp(img, {**one, "zx": [2.0], "zy": [2.0]})
        ys, xs = np.nonzero(small[0, :, :, 0] > 127)
        assert 3 <= xs.max() - xs.min() + 1 <= 9  # the 16 px bar is about 8 px wide now


def test_torch_augmentation_is_seeded_and_covers_every_term():
    x = torch.from_numpy(photos(64)).permute(0, 3, 1, 2)
    aug = Augment(flip=True, rotation=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, crop=0.9,
                  brightness=0.3, contrast=0.3, saturation=0.3)
    torch.manual_seed(0)
    a = torch_augment(x, aug)
    torch.manual_seed(0)
    b = torch_augment(x, aug)
    torch.manual_seed(1)
    c = torch_augment(x, aug)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 255
    assert torch_augment(x, Augment()) is x


def test_keras_augmentation_layer_trains_only():
    keras = pytest.importorskip("keras")
    from zoo_bench_keras.augment import Augmentation

    x = photos(64)
    layer = Augmentation(Augment(rotation=40, zoom=0.2, brightness=0.2), seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and np.abs(out - x).mean() > 5
    keras.utils.set_random_seed(0)


def test_suite_keys_are_checked_and_quiet_when_off(tmp_path, registry):
    body = TINY_SUITE + "[strategies.full]\nepochs = 1\n"
    [plain] = expand(parse_suite(write_suite(tmp_path, body), registry))
    assert "rotation" not in plain.id and "crop" not in plain.id  # ids of runs from before the vocabulary
    body = TINY_SUITE + "[strategies.full]\nepochs = 1\nrotation = 40\nzoom = [0.0, 0.2]\n"
    trials = expand(parse_suite(write_suite(tmp_path, body), registry))
    assert [("rotation=40" in t.id, "zoom=0.2" in t.id) for t in trials] == [(True, False), (True, True)]
    for text, message in [("rotation = 200", "strategies.full.rotation: 200 is out of range"),
                          ("crop = 0", "strategies.full.crop: 0 is out of range"),
                          ("zoom = 1", "strategies.full.zoom: 1 is out of range")]:
        with pytest.raises(SuiteError, match=message):
            parse_suite(write_suite(tmp_path, TINY_SUITE + f"[strategies.full]\n{text}\n"), registry)


def test_frozen_base_epochs_on_augmented_pixels(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + ('[strategies.frozen_pixels]\nepochs = 2\naugment = "flip"\n'
                         'rotation = 40\nwidth_shift = 0.2\nheight_shift = 0.2\nshear = 0.2\nzoom = 0.2\n')
    store, reporter = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert row["augmentation"] == "flip, rotation=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2"
    assert {e["input"] for e in row["history"]} == {"images"}  # every epoch ran the frozen base on pixels
    assert row["trainable_params"] < row["total_params"] and row["head_epoch_time_s"] is None
    assert row["feature_time_s"] > 0.0  # only to score the test photos from the unchanged base's features

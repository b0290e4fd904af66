"""Grad-CAM in both backends finds the evidence a trained CNN uses, and the maps draw as PNGs.

The tiny CNNs learn "a bright square means class 1" from images whose square is always in the
top-left quadrant, so a correct Grad-CAM for class 1 must peak there.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo_bench.run.activation_maps import overlay, save_maps
from zoo_bench_torch.gradcam import grad_cam as torch_grad_cam

SIZE = 32
SQUARE = 6
HALF = SIZE // 2


def squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC noise; every other image (class 1) has a bright square inside the top-left quadrant."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 110, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        r, c = rng.integers(0, HALF - SQUARE + 1, size=2)
        x[i, r:r + SQUARE, c:c + SQUARE] = 255
    return x, y.astype(np.int64)


def check_maps(maps: np.ndarray, used: np.ndarray, n: int) -> None:
    """Shape, dtype and range, and most of each map's mass (and its peak) in the top-left quadrant."""
    assert maps.shape == (n, SIZE, SIZE) and maps.dtype == np.float32
    assert used.dtype == np.int64 and used.shape == (n,)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.reshape(n, -1).max(axis=1), 1.0)
    share = maps[:, :HALF, :HALF].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    peaks = np.array([np.unravel_index(m.argmax(), m.shape) for m in maps])
    assert (share > 0.5).all(), share
    assert ((peaks[:, 0] < HALF) & (peaks[:, 1] < HALF)).all(), peaks


# ---------------------------------------------------------------------------------------------
# torch

class TinyTorchCNN(torch.nn.Module):
    """conv-relu-conv(stride 2)-relu to a 16x16 map, then pooling, dropout and a 2-class layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(16, 2)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float() / 255.0)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(fmap.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x))


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def torch_model() -> TinyTorchCNN:
    torch.manual_seed(0)
    model = TinyTorchCNN()
    x, y = squares(256, seed=1)
    xt, yt = nchw(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: worker threads only wait on each other, badly so on a busy CPU
    try:
        for _ in range(25):
            for idx in torch.randperm(len(x), generator=gen).split(32):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        xv, yv = squares(64, seed=2)
        assert (model(nchw(xv)).argmax(1).numpy() == yv).mean() == 1.0, "the tiny CNN did not learn the squares"
    return model


def test_torch_grad_cam_finds_the_square(torch_model: TinyTorchCNN) -> None:
    x, y = squares(80, seed=3)
    ones = nchw(x[y == 1])
    maps, used = torch_grad_cam(torch_model.feature_map, torch_model.head, ones, classes=[1] * len(ones))
    assert (used == 1).all()
    check_maps(maps, used, len(ones))
    predicted_maps, predicted = torch_grad_cam(torch_model.feature_map, torch_model.head, ones)
    assert (predicted == 1).all() and np.allclose(predicted_maps, maps, atol=1e-6)


def test_torch_grad_cam_keeps_the_model_as_it_was(torch_model: TinyTorchCNN) -> None:
    x, _ = squares(40, seed=4)  # more than one batch of 32
    torch_model.body[0].requires_grad_(False)
    torch_model.train()
    torch_model.drop.eval()  # a mixed state, as a classifier with inference-mode BatchNorm has
    flags = [p.requires_grad for p in torch_model.parameters()]
    modes = [m.training for m in torch_model.modules()]
    weights = [p.detach().clone() for p in torch_model.parameters()]
    try:
        with torch.inference_mode():  # as a caller evaluating under inference mode would
            first, used = torch_grad_cam(torch_model.feature_map, torch_model.head, nchw(x).float())
        second, _ = torch_grad_cam(torch_model.feature_map, torch_model.head, nchw(x))  # dropout would differ
        assert first.shape == (40, SIZE, SIZE) and used.shape == (40,)
        assert np.allclose(first, second, atol=1e-6)
        assert [p.requires_grad for p in torch_model.parameters()] == flags
        assert [m.training for m in torch_model.modules()] == modes
        assert all(p.grad is None for p in torch_model.parameters())
        assert all(torch.equal(a, b) for a, b in zip(weights, torch_model.parameters()))
    finally:
        torch_model.body[0].requires_grad_(True)
        torch_model.eval()


def test_torch_grad_cam_zero_map_and_empty_batch() -> None:
    fmap = lambda x: torch.zeros(len(x), 4, 8, 8) + 0 * x.float().mean()  # noqa: E731
    head = lambda f: torch.stack([f.mean(dim=(1, 2, 3)), -f.mean(dim=(1, 2, 3))], dim=1)  # noqa: E731
    maps, used = torch_grad_cam(fmap, head, torch.zeros(3, 3, 16, 16, dtype=torch.uint8))
    assert maps.shape == (3, 16, 16) and not maps.any() and used.dtype == np.int64
    maps, used = torch_grad_cam(fmap, head, torch.zeros(0, 3, 16, 16))
    assert maps.shape == (0, 16, 16) and used.shape == (0,)


# ---------------------------------------------------------------------------------------------
# Keras (also run under KERAS_BACKEND=jax in a child process where jax is installed)

def check_keras() -> None:
    """Train the tiny Keras CNN on the squares and check its Grad-CAM and that nothing changed."""
    import keras

    from zoo_bench_keras.gradcam import grad_cam

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    fmap = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    feature_model = keras.Model(inputs, fmap)
    pool, drop, dense = keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.5), keras.layers.Dense(2)
    model = keras.Model(inputs, dense(drop(pool(feature_model(inputs)))))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = squares(256, seed=1)
    model.fit(x.astype(np.float32), y, batch_size=32, epochs=25, verbose=0)
    xv, yv = squares(64, seed=2)
    assert (model.predict(xv.astype(np.float32), verbose=0).argmax(1) == yv).mean() == 1.0

    def head(f):
        return dense(drop(pool(f), training=False))

    feature_model.layers[2].trainable = False
    trainable = [layer.trainable for layer in model.layers + feature_model.layers]
    weights = [w.copy() for w in model.get_weights()]
    xt, yt = squares(80, seed=3)
    ones = xt[yt == 1]
    maps, used = grad_cam(feature_model, head, ones, classes=[1] * len(ones))
    assert (used == 1).all()
    check_maps(maps, used, len(ones))
    predicted_maps, predicted = grad_cam(feature_model, head, ones.astype(np.float32))
    assert (predicted == 1).all() and np.allclose(predicted_maps, maps, atol=1e-5)
    many, _ = grad_cam(feature_model, head, squares(40, seed=4)[0])  # more than one batch of 32
    assert many.shape == (40, SIZE, SIZE) and many.dtype == np.float32
    assert [layer.trainable for layer in model.layers + feature_model.layers] == trainable
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_keras_grad_cam_finds_the_square() -> None:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() == "tensorflow":
        pytest.importorskip("tensorflow")
    elif keras.backend.backend() != "jax":
        pytest.skip(f"Grad-CAM is not implemented for Keras on {keras.backend.backend()}")
    check_keras()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_keras_grad_cam_on_jax() -> None:
    pytest.importorskip("keras")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_gradcam; test_gradcam.check_keras()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_keras_grad_cam_refuses_other_backends(monkeypatch) -> None:
    keras = pytest.importorskip("keras")
    from zoo_bench_keras.gradcam import grad_cam

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(NotImplementedError, match="Grad-CAM for Keras on torch is not implemented"):
        grad_cam(None, lambda f: f, np.zeros((1, 8, 8, 3), np.uint8))


# ---------------------------------------------------------------------------------------------
# drawing

def test_overlay_and_save_maps(tmp_path: Path) -> None:
    x, _ = squares(3, seed=5)
    cams = np.zeros((3, 8, 8), np.float32)  # another size than the images: resized to them
    cams[:, :4, :4] = 1.0
    blended = overlay(x[1], cams[1])
    assert blended.dtype == np.uint8 and blended.shape == x[1].shape
    assert not np.array_equal(blended, x[1])
    labels = ["true cat / predicted dog (0.93)", "true dog / predicted dog (0.88)", "true cat / predicted cat (0.51)"]
    out = save_maps(x, cams, labels, tmp_path / "maps" / "gradcam.png", title="Grad-CAM")
    assert out == tmp_path / "maps" / "gradcam.png"
    assert [p.name for p in out.parent.iterdir()] == ["gradcam.png"]  # no temporary file left
    with Image.open(out) as png:
        png.verify()
    with Image.open(out) as png:
        width, height = png.size
    assert width == pytest.approx(3 * 2.2 * 100, abs=2)
    assert 0.6 < height / width < 0.85
    with pytest.raises(ValueError):
        save_maps(x, cams[:2], labels, tmp_path / "bad.png")

"""The reference backend: the Backend contract's required verbs in numpy alone, and no optional one.

It shows that the contract is complete: the feature strategies (``svm``, ``logreg``, ``knn``,
``last_layer``) and ``check_plugin`` run on it unchanged, and ``zoo_bench.testing`` checks strategies on
it where torch is not installed. It is not registered: a plugin that wants it as a backend named
``numpy`` returns :class:`NumpyBackend` and :data:`GRID_NET` from its hooks (``tests/fixtures/numpy_backend``
does). Its one backbone, ``grid_net``, averages each
image's pixels and their horizontal and vertical differences over a 4 x 4 grid of cells, and maps every
cell through one 1 x 1 convolution and a ReLU: a feature map of 4 x 4 cells, one block. Its "pretrained" weights are a fixed random draw, the same every time,
so features cached under its weights tag stay right.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .backend import Backend, BackboneSpec, Device, EpochBook, HeadSpec, OptimizerSpec, fit_inputs
from .errors import ZooBenchError

GRID = 4  # cells per side of the feature map
CHANNELS = 32


def grid_net(pretrained: bool, image_size: int, weights_dir: str | None, rng: np.random.Generator) -> dict:
    """The base's weights: a fixed draw when pretrained, else one from the backend's seeded generator."""
    draw = np.random.default_rng(1234) if pretrained else rng
    return {"w": draw.normal(0.0, 1.0, (9, CHANNELS)).astype(np.float32), "b": np.zeros(CHANNELS, np.float32)}


class NumpyBackend(Backend):
    name = "numpy"
    poolings = ("avg", "max", "flatten")

    def __init__(self, device: str = "auto", precision: str = "auto", weights_dir: str | None = None,
                 cache_dir: str | None = None):
        super().__init__(device, precision, weights_dir, cache_dir)
        self._rng = np.random.default_rng(0)

    def device(self) -> Device:
        return Device("cpu", "numpy", "fp32")

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    # The base: cells of normalised pixels and their edges, a 1 x 1 convolution, ReLU, then a pooling.
    def build_base(self, spec: BackboneSpec, pretrained: bool, image_size: int) -> dict:
        weights = spec.builder(pretrained=pretrained, image_size=image_size, weights_dir=self.weights_dir, rng=self._rng)
        return {**weights, "mean": np.asarray(spec.mean, np.float32), "std": np.asarray(spec.std, np.float32)}

    def block_count(self, base: dict) -> int:
        return 1

    def _cells(self, base: dict, images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) / 255.0 - base["mean"]) / base["std"]
        dx = np.abs(np.diff(x, axis=2, append=x[:, :, -1:]))  # edges across columns (vertical stripes)
        dy = np.abs(np.diff(x, axis=1, append=x[:, -1:]))  # edges across rows (horizontal stripes)
        x = np.concatenate([x, dx, dy], axis=3)
        n, h, w, c = x.shape
        x = x[:, : h - h % GRID, : w - w % GRID]
        return x.reshape(n, GRID, x.shape[1] // GRID, GRID, x.shape[2] // GRID, c).mean(axis=(2, 4))

    def _forward_base(self, base: dict, images: np.ndarray, pooling: str) -> tuple[np.ndarray, tuple]:
        cells = self._cells(base, images)
        pre = cells @ base["w"] + base["b"]
        fmap = np.maximum(pre, 0.0)
        if pooling == "avg":
            pooled = fmap.mean(axis=(1, 2))
        elif pooling == "max":
            pooled = fmap.max(axis=(1, 2))
        else:
            pooled = fmap.reshape(len(fmap), -1)
        return pooled.astype(np.float32), (cells, pre, fmap)

    def features(self, base: dict, images: np.ndarray, batch_size: int, pooling: str = "avg") -> np.ndarray:
        return self._forward_base(base, images, pooling)[0]

    def feature_dim(self, base: dict, pooling: str = "avg") -> int:
        return CHANNELS * GRID * GRID if pooling == "flatten" else CHANNELS

    # The head: dense layers with ReLU and dropout, then the class layer.
    def new_head(self, in_features: int, num_classes: int, head: HeadSpec) -> dict:
        sizes = [in_features, *head.hidden, num_classes]
        layers = [(self._rng.normal(0.0, np.sqrt(2.0 / a), (a, b)).astype(np.float32), np.zeros(b, np.float32))
                  for a, b in zip(sizes[:-1], sizes[1:])]
        return {"layers": layers, "dropout": head.dropout}

    def attach(self, base: dict, head: dict, pooling: str = "avg") -> dict:
        return {"base": base, "head": head, "pooling": pooling, "train_base": False}

    def set_trainable(self, model: dict, last_blocks: int | None, bn_inference: bool, parts: Any = None) -> None:
        if parts is not None:
            raise ZooBenchError("the numpy backend cannot unfreeze named parts")
        model["train_base"] = last_blocks is None or last_blocks > 0

    def count_params(self, model: dict) -> tuple[int, int]:
        if "layers" in model:  # a head
            n = sum(w.size + b.size for w, b in model["layers"])
            return n, n
        if "head" not in model:  # a base
            n = model["w"].size + model["b"].size
            return 0, n
        head, base = self.count_params(model["head"])[1], self.count_params(model["base"])[1]
        return head + (base if model["train_base"] else 0), head + base

    def _logits(self, head: dict, x: np.ndarray, train: bool) -> tuple[np.ndarray, list]:
        tape, h = [], x
        for i, (w, b) in enumerate(head["layers"]):
            pre = h @ w + b
            last = i == len(head["layers"]) - 1
            out = pre if last else np.maximum(pre, 0.0)
            if train and not last and head["dropout"] > 0:
                keep = (self._rng.random(out.shape) >= head["dropout"]) / (1.0 - head["dropout"])
                out = out * keep
            else:
                keep = None
            tape.append((h, pre, keep))
            h = out
        return h, tape

    def predict(self, model: dict, x: np.ndarray, batch_size: int) -> np.ndarray:
        if "layers" in model:
            logits, _ = self._logits(model, x.astype(np.float32), train=False)
        else:
            pooled, _ = self._forward_base(model["base"], x, model["pooling"])
            logits, _ = self._logits(model["head"], pooled, train=False)
        return logits.argmax(axis=1).astype(np.int64)

    def recalibrate_batchnorm(self, model: Any, x: np.ndarray, batch_size: int) -> None:
        """No BatchNorm here: nothing to re-estimate."""

    def fit(self, model, x, y, *, epochs, optimizer: OptimizerSpec, batch_size, inputs=None, val=None, augment=False,
            on_epoch=None, monitor=None):
        kind = fit_inputs(x, inputs)
        if kind == "cut":
            raise ZooBenchError("the numpy backend has no cut: it trains on images or features")
        head = model if kind == "features" else model["head"]
        base = None if kind == "features" or not model["train_base"] else model["base"]
        params = [a for layer in head["layers"] for a in layer] + ([base["w"], base["b"]] if base else [])
        state = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        def restore(saved: list[np.ndarray]) -> None:
            for param, value in zip(params, saved):
                param[...] = value

        book = EpochBook(self, model, phase=kind, epochs=epochs, batch_size=batch_size, val=val, on_epoch=on_epoch,
                         monitor=monitor, snapshot=lambda: [p.copy() for p in params], restore=restore)
        step = 0
        for epoch in range(epochs):
            lr = optimizer.lr_at(epoch, epochs)
            start, total, seen = time.perf_counter(), 0.0, 0
            order = self._rng.permutation(len(y))
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                xb, yb = x[idx], y[idx]
                if kind == "images" and augment and self._rng.random() < 0.5:
                    xb = xb[:, :, ::-1]
                if kind == "images":
                    pooled, cache = self._forward_base(model["base"], xb, model["pooling"])
                else:
                    pooled, cache = xb.astype(np.float32), None
                loss, grads, d_pooled = self._backward(head, pooled, yb)
                if base is not None:
                    grads += self._base_grads(base, cache, d_pooled, model["pooling"])
                step += 1
                self._update(params, grads, state, optimizer, lr, step)
                total, seen = total + loss * len(idx), seen + len(idx)
            if book.end_epoch(epoch, seconds=time.perf_counter() - start, images=seen,
                              train_loss=total / max(seen, 1), lr=lr):
                break
        return book.finish()

    def _backward(self, head: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, list, np.ndarray]:
        """Softmax cross-entropy: the loss, the head's gradients (in ``params`` order) and d loss / d ``x``."""
        logits, tape = self._logits(head, x, train=True)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
        d = probs
        d[np.arange(len(y)), y] -= 1.0
        d /= len(y)
        grads: list[np.ndarray] = []
        for i in range(len(head["layers"]) - 1, -1, -1):
            h, _, _ = tape[i]
            grads = [h.T @ d, d.sum(axis=0)] + grads
            d = d @ head["layers"][i][0].T  # d loss / d (layer i's input), the previous layer's output
            if i > 0:
                _, prev_pre, prev_keep = tape[i - 1]
                d = d * (prev_pre > 0) * (prev_keep if prev_keep is not None else 1.0)
        return loss, grads, d

    def _base_grads(self, base: dict, cache: tuple, d_pooled: np.ndarray, pooling: str) -> list[np.ndarray]:
        cells, pre, fmap = cache
        if pooling == "avg":
            d_fmap = np.broadcast_to(d_pooled[:, None, None, :] / (GRID * GRID), fmap.shape)
        elif pooling == "max":
            d_fmap = (fmap == fmap.max(axis=(1, 2), keepdims=True)) * d_pooled[:, None, None, :]
        else:
            d_fmap = d_pooled.reshape(fmap.shape)
        d_pre = d_fmap * (pre > 0)
        return [np.einsum("nijc,nijd->cd", cells, d_pre), d_pre.sum(axis=(0, 1, 2))]

    def _update(self, params: list, grads: list, state: tuple, opt: OptimizerSpec, lr: float, step: int) -> None:
        first, second = state
        for p, g, m, v in zip(params, grads, first, second):
            g = g + opt.weight_decay * p
            if opt.name == "sgd":
                m[...] = opt.momentum * m + g
                p -= lr * m
            elif opt.name == "rmsprop":
                v[...] = 0.9 * v + 0.1 * g * g
                p -= lr * g / (np.sqrt(v) + 1e-7)
            else:  # adam
                m[...] = 0.9 * m + 0.1 * g
                v[...] = 0.999 * v + 0.001 * g * g
                p -= lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)


GRID_NET = BackboneSpec(name="grid_net", backend="numpy", image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                        builder=grid_net, weights="grid-net-edges-1234",
                        description="4 x 4 cells of pixels and edges, 1 x 1 conv, ReLU")

__all__ = ["GRID_NET", "NumpyBackend", "grid_net"]

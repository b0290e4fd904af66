"""What a trained model costs to run: latency at batch 1, throughput at the suite's batch size, multiply-adds
per image, and the size of the whole saved model and of what training changed.

Measured through the Backend API on blank images after the trial has trained (nothing else runs then), once
per architecture a deployment would run: (backend, backbone, image size, head, pooling, classes, kind, and
what else the deployed network runs: ``Strategy.deployed_extras``, VPT's prompts) on the trial's device and
precision. A LoRA model is measured merged, as it is saved, so it shares the plain network's measurement;
a prompted vision transformer is measured with its prompts. A linear probe (``svm``, ``logreg``) is its frozen base's features and a matrix
product; ``knn`` is measured as its base's features, its neighbour search left out.

* ``latency_ms``: median of 20 timed single-image predictions after 3 untimed ones;
* ``throughput_ips``: images per second of a batch of the suite's size, the median of 3 after 1 untimed;
* ``multiply_adds``: per image, from the backend's optional ``multiply_adds`` (torch: ``FlopCounterMode``
  FLOPs / 2); null where the backend cannot count them;
* ``model_mb``: the saved weights of the deployable model (``save_weights``: the base and the head, or the
  base and the linear map), in MB (10^6 bytes); null where the backend cannot save;
* ``delta_mb``: what training changed, the trainable parameters at 4 bytes each: all the weights for
  ``full``, the biases and head for ``bitfit``, the low-rank updates and head for ``lora``.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backend import Backend

LATENCY_RUNS, LATENCY_WARMUP = 20, 3
THROUGHPUT_RUNS, THROUGHPUT_WARMUP = 3, 1


@dataclass(frozen=True)
class InferenceCost:
    latency_ms: float
    throughput_ips: float
    multiply_adds: int | None
    model_mb: float | None

    def fields(self, trainable_params: int | None) -> dict[str, Any]:
        """The row's cost fields, with ``delta_mb`` from this trial's trainable parameters."""
        delta = None if trainable_params is None else trainable_params * 4 / 1e6
        return {**asdict(self), "delta_mb": delta}


FIELDS = ("latency_ms", "throughput_ips", "multiply_adds", "model_mb", "delta_mb")


def _median_seconds(run: Callable[[], Any], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(backend: Backend, model: Any, image_size: int, batch_size: int, features_of: Any = None,
            pooling: str = "avg") -> InferenceCost:
    """Time ``model`` (a classifier of pixels), or the frozen base ``features_of`` for a probe, on blank images."""
    one = np.zeros((1, image_size, image_size, 3), np.uint8)
    batch = np.zeros((batch_size, image_size, image_size, 3), np.uint8)
    if features_of is not None:
        kw = {} if pooling == "avg" else {"pooling": pooling}

        def forward(x: np.ndarray) -> Any:
            return backend.features(features_of, x, len(x), **kw)
        network = features_of
    else:
        network = backend.merge(model) if backend.supports("merge") else model

        def forward(x: np.ndarray) -> Any:
            return backend.predict(network, x, len(x))
    latency = _median_seconds(lambda: forward(one), LATENCY_RUNS, LATENCY_WARMUP)
    per_batch = _median_seconds(lambda: forward(batch), THROUGHPUT_RUNS, THROUGHPUT_WARMUP)
    macs = backend.multiply_adds(network, image_size) if backend.supports("multiply_adds") else None
    return InferenceCost(latency * 1000, batch_size / per_batch, macs, saved_mb(backend, network))


def saved_mb(backend: Backend, network: Any) -> float | None:
    """The bytes ``save_weights`` writes for ``network``, in MB."""
    if not backend.supports("save_weights"):
        return None
    with tempfile.TemporaryDirectory() as folder:
        names = backend.save_weights(network, Path(folder))
        return sum((Path(folder) / name).stat().st_size for name in names) / 1e6

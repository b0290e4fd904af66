"""The torch backend against the keras backend: same backbone, photos, batch size and precision.

Why: a comparison of backends is only about the strategies if neither backend is slow at the same
work. The project's target: each backend within 10% of the faster one on the same CPU for feature
extraction and head epochs, or a measured reason why not. This times, alternating the two backends in
one process (the CPU may be shared: alternation and medians keep the comparison fair), over
``--repeats`` rounds:

- features: ``backend.features(base, images, batch_size)`` over the uint8 NHWC photos, after a warm-up
  batch (images/s; median of the rounds);
- head epoch: ``backend.fit`` of a fresh ``HeadSpec((256,), 0.5)`` head on that backend's cached
  features (Adam 1e-3, shuffled, no validation); the median ``EpochStats.seconds`` of the epochs after
  the first (the first carries tracing and compilation);
- full epoch (``--full``, slow on a CPU): ``fit`` of ``attach(base, head)`` with every layer trainable
  and BatchNorm in inference mode (Adam 1e-4), median of the epochs after the first.

It prints one row per measure: torch, keras, and slower / faster (1.00 = parity; the target is <= 1.10).

    python benchmarks/backend_parity.py --images ../shared/data/cats_dogs/train [--n 160] [--repeats 2] \\
        [--head-epochs 6] [--full] [--threads 1]

On a CPU shared with other work, torch's OpenMP threads wait at every barrier for a thread that was
descheduled, while TensorFlow's work-stealing pool does not; ``--threads 1`` shows the two without that.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.plugins import load_plugins

from photos import class_folders, load_photos

BACKENDS = ("torch", "keras")


def time_features(backend, base, images: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    backend.features(base, images[:batch_size], batch_size)  # warm-up: first call traces / allocates
    start = time.perf_counter()
    feats = backend.features(base, images, batch_size)
    return time.perf_counter() - start, feats


def head_epochs(backend, feats: np.ndarray, labels: np.ndarray, classes: int, epochs: int, batch_size: int
                ) -> list[float]:
    backend.seed(0)
    head = backend.new_head(feats.shape[1], classes, HeadSpec((256,), 0.5))
    stats = backend.fit(head, feats, labels, epochs=epochs, optimizer=OptimizerSpec("adam", 1e-3),
                        batch_size=batch_size)
    return [s.seconds for s in stats[1:]]


def full_epochs(backend, spec, images: np.ndarray, labels: np.ndarray, classes: int, epochs: int,
                batch_size: int) -> list[float]:
    backend.seed(0)
    base = backend.build_base(spec, pretrained=True, image_size=spec.image_size)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), classes, HeadSpec((256,), 0.5)))
    backend.set_trainable(model, None, bn_inference=True)
    stats = backend.fit(model, images, labels, epochs=epochs, optimizer=OptimizerSpec("adam", 1e-4),
                        batch_size=batch_size)
    return [s.seconds for s in stats[1:]]


def threads() -> str:
    import torch

    text = f"torch {torch.get_num_threads()} threads"
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        text += f", tensorflow {tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} intra-op threads"
    return text


def measure(images_dir: Path, n: int = 160, backbone: str = "efficientnet_lite0", batch_size: int = 32,
            repeats: int = 2, head_epochs_per_fit: int = 6, full: bool = False, full_epochs_per_fit: int = 2,
            n_threads: int = 0, device: str = "cpu", precision: str = "fp32") -> dict:
    """Medians per backend: features images/s, head epoch seconds, full epoch seconds (with ``full``)."""
    registry = load_plugins()
    backends = {"torch": registry.backends["torch"](device=device, precision=precision)}  # torch before TensorFlow
    if n_threads:  # before TensorFlow runs an op
        import torch

        torch.set_num_threads(n_threads)
        if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    backends["keras"] = registry.backends["keras"](device=device, precision=precision)
    specs = {name: registry.backbone(name, backbone) for name in BACKENDS}
    size = specs["torch"].image_size
    assert specs["keras"].image_size == size, "the two backends' backbones take different image sizes"
    classes = class_folders(images_dir)
    batch = load_photos(images_dir, n // len(classes), size)
    images, labels = batch.images, batch.labels
    bases = {}
    for name in BACKENDS:
        backends[name].seed(0)
        bases[name] = backends[name].build_base(specs[name], pretrained=True, image_size=size)

    features: dict[str, list[float]] = {name: [] for name in BACKENDS}
    head: dict[str, list[float]] = {name: [] for name in BACKENDS}
    full_s: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for repeat in range(repeats):
        order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]  # neither backend always goes first
        for name in order:
            seconds, feats = time_features(backends[name], bases[name], images, batch_size)
            features[name].append(len(images) / seconds)
            head[name] += head_epochs(backends[name], feats, labels, len(classes), head_epochs_per_fit, batch_size)
        if full:
            for name in order:
                full_s[name] += full_epochs(backends[name], specs[name], images, labels, len(classes),
                                            full_epochs_per_fit, batch_size)
    out = {"backbone": backbone, "images": len(labels), "image_size": size, "batch_size": batch_size,
           "repeats": repeats, "threads": threads(), "keras_backend": backends["keras"].framework,
           "device_names": {name: b.device().name for name, b in backends.items()},
           "precision": {name: b.precision for name, b in backends.items()}}
    for key, values in (("features_images_per_s", features), ("head_epoch_s", head), ("full_epoch_s", full_s)):
        if all(values.values()):
            out[key] = {name: statistics.median(values[name]) for name in BACKENDS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--n", type=int, default=160, help="photos, split evenly over the classes")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the two backends")
    parser.add_argument("--head-epochs", type=int, default=6, help="per head fit; the first is dropped")
    parser.add_argument("--full", action="store_true", help="also time full pixel epochs (slow on a CPU)")
    parser.add_argument("--full-epochs", type=int, default=2, help="per full fit; the first is dropped")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of both frameworks (0: their defaults, one per core)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for both backends")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    r = measure(args.images, args.n, args.backbone, args.batch_size, args.repeats, args.head_epochs, args.full,
                args.full_epochs, args.threads, args.device, args.precision)
    print(f"{args.backbone}, {r['images']} photos at {r['image_size']} px, batch {args.batch_size}, {args.precision}, "
          f"{args.repeats} alternating repeats (medians; the CPU may be shared, so expect noise)")
    print(f"device: {r['device_names']['torch']}, {os.cpu_count()} logical cores; {r['threads']}; "
          f"keras on {r['keras_backend']}")
    print(f"{'measure':<26} {'torch':>9} {'keras':>9} {'slower/faster':>14}  faster")
    rows = [("features (images/s)", "features_images_per_s", True), ("head epoch (ms)", "head_epoch_s", False)]
    if args.full:
        rows.append(("full epoch (s)", "full_epoch_s", False))
    for label, key, higher_better in rows:
        med = dict(r[key])
        if label.endswith("(ms)"):
            med = {name: 1000 * v for name, v in med.items()}
        fast = max(BACKENDS, key=med.get) if higher_better else min(BACKENDS, key=med.get)
        slow = BACKENDS[1 - BACKENDS.index(fast)]
        ratio = med[fast] / med[slow] if higher_better else med[slow] / med[fast]
        print(f"{label:<26} {med['torch']:>9.2f} {med['keras']:>9.2f} {ratio:>14.2f}  {fast}")


if __name__ == "__main__":
    main()

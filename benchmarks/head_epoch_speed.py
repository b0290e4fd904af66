"""Frozen-base head epoch vs one backbone forward pass over the same images.

Why: frozen-base strategies (svm, last_layer, the head phase of last_n and fpt) train on cached
bottleneck features; this checks that a head epoch is at least 50x cheaper than running the
backbone once over the images, and that on a GPU it is at least 100x cheaper at 500 images per class
(``--n 1000``). Prints both times and the ratio, for one head alone and per head of a sweep trained
together (``--sweep K`` heads at learning rates spaced over a decade, as a suite's lr sweep trains them).

    python benchmarks/head_epoch_speed.py --images DIR_WITH_CLASS_FOLDERS [--n 400] [--backbone efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from zoo_bench.backend import OptimizerSpec
from zoo_bench.plugins import load_plugins

from photos import class_folders, load_photos


def measure(images: Path, n: int = 400, backbone: str = "efficientnet_lite0", backend_name: str = "torch",
            device: str = "auto", batch_size: int = 32, repeats: int = 3, sweep: int = 8,
            image_size: int | None = None) -> dict:
    """One backbone pass over the images, one head epoch on their features, one head of a sweep; seconds."""
    from zoo_bench import HeadSpec
    from zoo_bench.backend import HeadFit

    registry = load_plugins()
    backend = registry.backends[backend_name](device=device)
    spec = registry.backbones[backend_name][backbone]
    size = image_size or spec.image_size
    classes = class_folders(images)
    batch = load_photos(images, n // len(classes), size)
    base = backend.build_base(spec, pretrained=True, image_size=size)
    backend.features(base, batch.images[:batch_size], batch_size)  # warm-up

    forward = []
    for _ in range(repeats):
        start = time.perf_counter()
        feats = backend.features(base, batch.images, batch_size)  # returns host arrays: synchronised
        forward.append(time.perf_counter() - start)
    head = backend.new_head(feats.shape[1], len(classes), HeadSpec())
    stats = backend.fit(head, feats, batch.labels, epochs=1 + repeats, optimizer=OptimizerSpec("adam", 1e-3),
                        batch_size=batch_size)
    fwd = statistics.median(forward)
    head_epoch = statistics.median(s.seconds for s in stats[1:])
    dev = backend.device()
    out = {"device_name": dev.name, "device_kind": dev.kind, "precision": dev.precision, "backbone": backbone,
           "images": len(batch.labels), "image_size": size, "batch_size": batch_size,
           "forward_s": fwd, "head_epoch_s": head_epoch, "ratio": fwd / head_epoch, "sweep": sweep}
    if sweep:
        fits = [HeadFit(HeadSpec(), OptimizerSpec("adam", 1e-3 * 10 ** (k / sweep - 0.5))) for k in range(sweep)]
        results = backend.fit_heads(feats, batch.labels, fits, num_classes=len(classes), epochs=1 + repeats,
                                    batch_size=batch_size, seed=0)
        swept = statistics.median(s.seconds for s in results[0].epochs[1:])  # the shared pass / heads
        out.update(sweep_head_epoch_s=swept, sweep_ratio=fwd / swept)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--n", type=int, default=400, help="images to use")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", type=int, default=8, help="heads trained together in the sweep line (0: none)")
    args = parser.parse_args()
    r = measure(args.images, args.n, args.backbone, args.backend, args.device, args.batch_size, args.repeats,
                args.sweep)
    print(f"device: {r['device_name']} ({r['device_kind']}, {r['precision']})")
    print(f"{r['backbone']}: {r['images']} images at {r['image_size']}px, batch {r['batch_size']}")
    print(f"one backbone forward pass over the images: {r['forward_s']:.4f} s (median of {args.repeats})")
    print(f"one head epoch on cached features:        {r['head_epoch_s']:.5f} s (median of {args.repeats})")
    print(f"ratio: {r['ratio']:.0f}x")
    if args.sweep:
        print(f"one head epoch in a sweep of {args.sweep} heads:   {r['sweep_head_epoch_s']:.5f} s per head "
              "(the shared pass / heads)")
        print(f"ratio: {r['sweep_ratio']:.0f}x")


if __name__ == "__main__":
    main()

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
from zoo_bench.images import ImageCache
from zoo_bench.plugins import load_plugins


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

    registry = load_plugins()
    backend = registry.backends[args.backend](device=args.device)
    spec = registry.backbones[args.backend][args.backbone]
    classes = sorted(d for d in args.images.iterdir() if d.is_dir())
    per_class = args.n // len(classes)
    items = [(str(p), i) for i, c in enumerate(classes) for p in sorted(c.iterdir())[:per_class]]
    batch = ImageCache(None).load(items, spec.image_size)
    base = backend.build_base(spec, pretrained=True, image_size=spec.image_size)
    backend.features(base, batch.images[: args.batch_size], args.batch_size)  # warm-up

    forward = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        feats = backend.features(base, batch.images, args.batch_size)
        forward.append(time.perf_counter() - start)
    head = backend.new_head(feats.shape[1], len(classes), __import__("zoo_bench").HeadSpec())
    stats = backend.fit(head, feats, batch.labels, epochs=1 + args.repeats, optimizer=OptimizerSpec("adam", 1e-3),
                        batch_size=args.batch_size)
    head_epoch = statistics.median(s.seconds for s in stats[1:])
    fwd = statistics.median(forward)
    swept = None
    if args.sweep:
        from zoo_bench import HeadSpec
        from zoo_bench.backend import HeadFit

        fits = [HeadFit(HeadSpec(), OptimizerSpec("adam", 1e-3 * 10 ** (k / args.sweep - 0.5)))
                for k in range(args.sweep)]
        results = backend.fit_heads(feats, batch.labels, fits, num_classes=len(classes), epochs=1 + args.repeats,
                                    batch_size=args.batch_size, seed=0)
        swept = statistics.median(s.seconds for s in results[0].epochs[1:])  # the shared pass / heads
    device = backend.device()
    print(f"device: {device.name} ({device.kind}, {device.precision})")
    print(f"{args.backbone}: {len(batch.labels)} images at {spec.image_size}px, batch {args.batch_size}")
    print(f"one backbone forward pass over the images: {fwd:.4f} s (median of {args.repeats})")
    print(f"one head epoch on cached features:        {head_epoch:.5f} s (median of {args.repeats})")
    print(f"ratio: {fwd / head_epoch:.0f}x")
    if swept is not None:
        print(f"one head epoch in a sweep of {args.sweep} heads:   {swept:.5f} s per head (the shared pass / heads)")
        print(f"ratio: {fwd / swept:.0f}x")


if __name__ == "__main__":
    main()

"""Training throughput of a backbone from scratch on synthetic images, and its share of the chip's peak.

Why: a fine-tune costs what training the whole network costs, and a GPU run should say how much of
the chip it uses. This trains ``resnet50`` (no weights needed: ``pretrained=False``, as ``scratch``)
through the torch backend's own ``fit`` on seeded random 224 px uint8 images, at batch 128 in bf16
with channels-last (the backend's CUDA layout), with and without ``run.compile``, and reports images
per second (median of the epochs after the first; the first carries cudnn autotuning and compilation)
and the share of the peak: images/s x 25 GFLOP per training image (forward about 4.1 GMAC, backward
twice that) / 790 TFLOP/s (dense bf16 measured on the H100 and H200 lent here). Override with
``--gflop-per-image`` and ``--peak-tflops``.

    python benchmarks/train_throughput.py --device cuda [--n 2048] [--batch-size 128] [--compile both]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.plugins import load_plugins


def measure(backbone: str = "resnet50", device: str = "cuda", n: int = 2048, batch_size: int = 128,
            precision: str = "bf16", compile: bool = False, epochs: int = 3, image_size: int = 224,
            gflop_per_image: float = 25.0, peak_tflops: float = 790.0) -> dict:
    """Images per second of ``fit`` with every layer trainable, from random weights."""
    registry = load_plugins()
    backend = registry.backends["torch"](device=device, precision=precision)
    backend.compile = compile
    spec = registry.backbone("torch", backbone)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    backend.seed(0)
    base = backend.build_base(spec, pretrained=False, image_size=image_size)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 10, HeadSpec((), 0.0)))
    backend.set_trainable(model, None, bn_inference=False)
    stats = backend.fit(model, x, y, epochs=epochs, optimizer=OptimizerSpec("sgd", 0.01), batch_size=batch_size)
    per_s = statistics.median(s.images / s.seconds for s in stats[1:])
    tflops = per_s * gflop_per_image / 1e3
    dev = backend.device()
    return {"backbone": backbone, "device_name": dev.name, "precision": backend.precision,
            "channels_last": backend.channels_last, "compile": compile, "images": n, "batch_size": batch_size,
            "image_size": image_size, "first_epoch_s": stats[0].seconds,
            "epoch_s": statistics.median(s.seconds for s in stats[1:]), "images_per_s": per_s,
            "tflops": tflops, "peak_share": tflops / peak_tflops, "peak_tflops": peak_tflops,
            "data_wait_fraction": sum(s.data_seconds for s in stats[1:]) / sum(s.seconds for s in stats[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=2048, help="synthetic images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--epochs", type=int, default=3, help="the first is dropped")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--gflop-per-image", type=float, default=25.0)
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    args = parser.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    print(f"{'compile':<8} {'first epoch s':>13} {'images/s':>9} {'TFLOP/s':>8} {'of peak':>8}  device")
    for mode in modes:
        r = measure(args.backbone, args.device, args.n, args.batch_size, args.precision, mode, args.epochs,
                    gflop_per_image=args.gflop_per_image, peak_tflops=args.peak_tflops)
        print(f"{str(mode):<8} {r['first_epoch_s']:>13.2f} {r['images_per_s']:>9.1f} {r['tflops']:>8.1f} "
              f"{100 * r['peak_share']:>7.1f}%  {r['device_name']} ({r['precision']})")


if __name__ == "__main__":
    main()

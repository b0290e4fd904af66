"""What parameter-efficient fine-tuning saves while training: step time and peak memory of ``bitfit``,
``norm_tune``, ``lora`` and ``vpt`` against ``full`` on a timm vision transformer.

Why: on a CPU ``peak_memory_mb`` is the process's resident memory with its caches, so it cannot show
what training a few weights saves; on a GPU the accelerator's peak allocation can, and a step's time
shows what skipping the weights' gradients and optimiser state is worth. Each configuration builds the
backbone with random weights (no download: ``pretrained=False``), adapts it as its strategy does
(``Backend.adapt``; ``full``: every layer trainable), and trains through the torch backend's own ``fit``
on seeded random uint8 images, Adam, a linear head over 10 classes. The step time is the median epoch
after the first divided by its steps; peak memory is ``Backend.peak_memory_mb`` over the whole fit,
reset before each configuration (the images, resident on the device, are the same for all).

    python benchmarks/peft_cost.py --device cuda [--backbone timm:vit_small_patch16_224] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from zoo_bench import Adapter, HeadSpec, OptimizerSpec
from zoo_bench.plugins import load_plugins

CONFIGS = {"full": None, "bitfit": Adapter("bias"), "norm_tune": Adapter("norm"), "lora": Adapter("lora"),
           "vpt": Adapter("prompt", prompts=10, deep=True)}


def measure(backbone: str = "timm:vit_small_patch16_224", device: str = "cuda", image_size: int = 224,
            batch_size: int = 64, steps: int = 8, epochs: int = 3, precision: str = "bf16") -> list[dict]:
    """One row per configuration: trained parameters, step time, peak memory, on ``device``."""
    registry = load_plugins()
    backend = registry.backends["torch"](device=device, precision=precision)
    spec = registry.backbone("torch", backbone)
    n = batch_size * steps
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    rows = []
    for name, adapter in CONFIGS.items():
        backend.release_memory()
        backend.seed(0)
        base = backend.build_base(spec, pretrained=False, image_size=image_size)
        model = backend.attach(base, backend.new_head(backend.feature_dim(base), 10, HeadSpec((), 0.0)))
        if adapter is None:
            backend.set_trainable(model, None, bn_inference=True)
        else:
            backend.adapt(model, adapter)
        trainable, total = backend.count_params(model)
        backend.reset_peak_memory()
        stats = backend.fit(model, x, y, epochs=epochs, optimizer=OptimizerSpec("adam", 1e-3), batch_size=batch_size,
                            inputs="images")
        step_s = statistics.median(s.seconds for s in stats[1:]) / steps
        rows.append({"strategy": name, "backbone": backbone, "device_name": backend.device().name,
                     "precision": backend.precision, "image_size": image_size, "batch_size": batch_size,
                     "trainable_params": trainable, "total_params": total, "step_s": step_s,
                     "peak_memory_mb": backend.peak_memory_mb()})
        del model, base
    full = rows[0]
    for r in rows:
        r["step_vs_full"] = r["step_s"] / full["step_s"]
        r["memory_vs_full"] = (None if r["peak_memory_mb"] is None or not full["peak_memory_mb"]
                               else r["peak_memory_mb"] / full["peak_memory_mb"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="timm:vit_small_patch16_224")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is dropped")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    args = parser.parse_args()
    for row in measure(args.backbone, args.device, args.image_size, args.batch_size, args.steps, args.epochs,
                       args.precision):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

"""zoo-bench's torch backend against the plain PyTorch loop a user would write, same model and images.

Why: the time per epoch zoo-bench reports is only honest if its harness adds nothing measurable to
the work. This times, on the same photos, model, batch size, precision and device, alternating the
two in one process:

- a ``full`` epoch: ``TorchBackend.fit`` (every layer trainable, BatchNorm in inference mode, Adam
  1e-4, no augmentation) against a bare loop over the same Classifier (uint8 NHWC photos made a
  strided NCHW view with no copy, zero_grad(set_to_none), no per-step host sync);
- feature extraction: ``TorchBackend.features`` against a bare ``inference_mode`` loop over the base.

It prints the median seconds of the epochs after the first and of the extraction passes, and the ratio
harness / bare (target: within 1.10 on CPU, 1.05 on GPU).

    python benchmarks/bare_loop.py --images ../shared/data/cats_dogs/train [--n 160] [--repeats 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.backend import cpu_name
from zoo_bench.plugins import load_plugins

from photos import class_folders, load_photos


def autocast(precision: str):
    """bf16 autocast as the harness applies it (``--precision bf16``), or nothing."""
    return lambda device: torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


AUTOCAST = autocast("fp32")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, batch: int,
               order: np.ndarray, device: torch.device) -> float:
    """One epoch as a user writes it; BatchNorm is kept in inference mode by the model's own train()."""
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = torch.from_numpy(order[i:i + batch])
        xb = x[idx].to(device, non_blocking=True).permute(0, 3, 1, 2)  # NHWC in memory, NCHW view
        with AUTOCAST(device):
            logits = model(xb)
        loss = loss_fn(logits.float(), y[idx].to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def bare_features(base: torch.nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> float:
    base.eval()
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            with AUTOCAST(device):
                base(x[i:i + batch].to(device, non_blocking=True).permute(0, 3, 1, 2)).float()
    sync(device)
    return time.perf_counter() - start


def measure(images: Path, n: int = 160, backbone: str = "efficientnet_lite0", device: str = "cpu",
            batch_size: int = 32, precision: str = "fp32", epochs: int = 3, repeats: int = 2,
            image_size: int | None = None) -> dict:
    """Median seconds of the harness and the bare loop (``full`` epoch and feature pass) and their ratios."""
    registry = load_plugins()
    global AUTOCAST
    AUTOCAST = autocast(precision)
    backend = registry.backends["torch"](device=device, precision=precision)
    device = backend._device
    spec = registry.backbone("torch", backbone)
    size = image_size or spec.image_size
    classes = class_folders(images)
    batch = load_photos(images, n // len(classes), size)
    x_np, y_np = batch.images, batch.labels
    x_t, y_t = torch.from_numpy(x_np), torch.from_numpy(y_np)
    if device.type == "cuda":
        x_t, y_t = x_t.pin_memory(), y_t.pin_memory()

    def new_model():
        backend.seed(0)
        base = backend.build_base(spec, pretrained=True, image_size=size)
        model = backend.attach(base, backend.new_head(backend.feature_dim(base), len(classes), HeadSpec((256,), 0.0)))
        backend.set_trainable(model, None, bn_inference=True)
        return model

    spec_opt = OptimizerSpec("adam", 1e-4)
    results: dict[str, list[float]] = {"full harness": [], "full bare": [], "features harness": [],
                                       "features bare": []}
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        model = new_model()
        stats = backend.fit(model, x_np, y_np, epochs=epochs, optimizer=spec_opt, batch_size=batch_size)
        results["full harness"] += [s.seconds for s in stats[1:]]
        model = new_model()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = [bare_epoch(model, x_t, y_t, opt, batch_size, rng.permutation(len(y_np)), device)
                 for _ in range(epochs)]
        results["full bare"] += times[1:]
        base = model.base
        backend.features(base, x_np[:batch_size], batch_size)  # warm-up
        sync(device)
        start = time.perf_counter()
        backend.features(base, x_np, batch_size)
        sync(device)
        results["features harness"].append(time.perf_counter() - start)
        bare_features(base, x_t[:batch_size], batch_size, device)
        results["features bare"].append(bare_features(base, x_t, batch_size, device))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()} (CPU)"
    out = {"backbone": backbone, "images": len(y_np), "image_size": size, "batch_size": batch_size,
           "precision": precision, "device_name": name, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    for what in ("full", "features"):
        harness = statistics.median(results[f"{what} harness"])
        bare = statistics.median(results[f"{what} bare"])
        out.update({f"{what}_harness_s": harness, f"{what}_bare_s": bare, f"{what}_ratio": harness / bare})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast on both sides")
    parser.add_argument("--epochs", type=int, default=3, help="per measurement; the first is dropped")
    parser.add_argument("--repeats", type=int, default=2, help="alternations of harness and bare loop")
    args = parser.parse_args()
    r = measure(args.images, args.n, args.backbone, args.device, args.batch_size, args.precision, args.epochs,
                args.repeats)
    print(f"{r['backbone']}, {r['images']} photos at {r['image_size']} px, batch {r['batch_size']}, {r['precision']}, "
          f"on {r['device_name']}, torch {r['torch']}, {r['threads']} threads")
    print(f"{'measure':<10} {'harness s':>10} {'bare s':>8} {'ratio':>6}")
    for what in ("full", "features"):
        print(f"{what:<10} {r[what + '_harness_s']:>10.2f} {r[what + '_bare_s']:>8.2f} {r[what + '_ratio']:>6.2f}")


if __name__ == "__main__":
    main()

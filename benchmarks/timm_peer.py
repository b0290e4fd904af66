"""Images per second of zoo-bench's torch backend next to timm's own ``benchmark.py``, same timm model.

Why: bare_loop.py checks the harness against a loop we wrote ourselves; this is a second, outside
reference. timm's ``benchmark.py`` is the script timm's authors use for the throughput tables of their
models; if zoo-bench's torch backend is much slower on the same model, batch, size, precision and
device, the harness (or how it builds the model) costs something it should not.

timm's ``benchmark.py`` lives in the timm GitHub repository, not in the pip package. Get it once, e.g.

    git clone --depth 1 https://github.com/huggingface/pytorch-image-models /tmp/timm-repo
    cp /tmp/timm-repo/benchmark.py /tmp/timm_benchmark.py

(a version matching the installed timm is best), then

    python benchmarks/timm_peer.py --timm-benchmark /tmp/timm_benchmark.py \\
        --images ../shared/data/cats_dogs/train [--model efficientnet_lite0] [--batch-size 32] \\
        [--img-size 224] [--device cpu|cuda] [--precision fp32|bf16] [--n 160]

It runs timm's script as a subprocess (this Python, ``--bench inference`` then ``--bench train``, results
read from its ``--results-file`` JSON), each followed by zoo-bench's measurement of the same thing:

- inference: ``TorchBackend.features(base, photos, batch)`` on the ``timm:MODEL`` base (random weights),
  after one warm-up call; timm: ``model(x)`` under ``inference_mode`` after ``--num-warm-iter`` steps;
- train: one ``TorchBackend.fit`` epoch of a full classifier (base + linear head, every layer trainable,
  BatchNorm in training mode unless ``--bn-inference``, SGD lr 1e-4 momentum 0.9, no augmentation), after
  a one-epoch fit on the first batch as warm-up; timm: forward, cross-entropy, backward and an SGD step.

Both sides see ``--n`` images (timm: ``max(5, n / batch)`` steps; its script cannot do fewer than 5) and
warm up on ``--warm-iter`` batches. It prints images/s of each and the ratio zoo-bench / timm (1.0 =
as fast as timm's reference; below it, the harness is slower).

What differs, on purpose or not (the ratio includes all of it):

- timm feeds one random float tensor, already on the device, every step; zoo-bench feeds real photos,
  uint8 NHWC in host memory, copied and normalised per batch (part of what the harness costs), and
  inference also copies the pooled features back to the host as float32 numpy;
- timm's train step draws random targets over the model's 1000 ImageNet classes and uses timm's SGD
  (nesterov, lr 1e-4); zoo-bench trains a 2-class (one per photo folder) linear head with torch's SGD
  (momentum 0.9, no nesterov) on the real labels, shuffles the photos and keeps the loss on the device;
- timm's model has its 1000-class classifier and ``global_pool='fast'``; zoo-bench's base drops the
  classifier (``num_classes=0``), pools as the model defines, and normalises pixels in its forward;
- precision: ``bf16`` is autocast on both sides (timm ``--precision amp_bfloat16``); ``fp32`` is fp32;
- memory format: timm gets ``--channels-last`` on every device: on CUDA zoo-bench makes the model
  channels_last, and on CPU its input is an NHWC-strided view (the photos' own layout), which makes the
  convolutions run channels_last too; without the flag timm's CPU numbers measure NCHW, not the harness;
- host memory: on CPU timm's process gets the malloc settings zoo-bench's torch backend applies to its
  own (``MALLOC_MMAP_THRESHOLD_`` etc., see ``zoo_bench_torch.backend.MALLOC_SETTINGS``), so both keep
  large blocks in the heap instead of page-faulting them in every batch;
- timing: timm times ``--num-bench-iter`` steps on a fixed tensor; zoo-bench times one call (one epoch).

On a shared or busy CPU the numbers are noisy (run it twice, or with the machine idle). A run with the
defaults on 2 CPU cores takes about 3 minutes; on a GPU use a larger ``--n``.
"""
from __future__ import annotations

import argparse
import json
import os
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.backend import cpu_name
from zoo_bench.plugins import load_plugins

from photos import class_folders, load_photos


def timm_run(script: Path, mode: str, args: argparse.Namespace, steps: int, channels_last: bool) -> float:
    """Images/s that timm's ``benchmark.py`` reports for ``mode`` (inference | train)."""
    precision = {"fp32": "float32", "bf16": "amp_bfloat16"}[args.precision]
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        cmd = [sys.executable, str(script.resolve()), "--model", args.model, "--bench", mode,
               "--batch-size", str(args.batch_size), "--img-size", str(args.img_size), "--device", args.device,
               "--precision", precision, "--num-warm-iter", str(args.warm_iter), "--num-bench-iter", str(steps),
               "--no-retry", "--results-file", str(results), "--results-format", "json"]
        if channels_last:
            cmd.append("--channels-last")
        env = dict(os.environ)
        if args.device == "cpu":  # the host-memory settings zoo-bench's torch backend applies to its process
            from zoo_bench_torch.backend import MALLOC_SETTINGS

            env.update({f"MALLOC_{name[2:]}_": str(value) for name, (_, value) in MALLOC_SETTINGS.items()})
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        if args.verbose:
            print(" ".join(cmd), proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        if results.exists():
            out = json.loads(results.read_text())
        elif "--result\n" in proc.stdout:  # its stdout carries the same JSON after a delimiter
            out = json.loads(proc.stdout.split("--result\n", 1)[1])
        else:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"timm benchmark.py ({mode}) exited {proc.returncode} without results:\n{tail}")
    if "error" in out:
        raise SystemExit(f"timm benchmark.py ({mode}): {out['error']}")
    key = "infer_samples_per_sec" if mode == "inference" else "train_samples_per_sec"
    if out.get(f"{key.split('_')[0]}_batch_size", args.batch_size) != args.batch_size:
        raise SystemExit(f"timm benchmark.py ({mode}) changed the batch size: {out}")
    return float(out[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm-benchmark", type=Path, required=True,
                        help="path to benchmark.py from the timm GitHub repository")
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="a timm model name; zoo-bench builds it as the backbone timm:MODEL")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--n", type=int, default=160, help="images timed per measurement, both sides")
    parser.add_argument("--warm-iter", type=int, default=1, help="warm-up batches, both sides")
    parser.add_argument("--bn-inference", action="store_true",
                        help="train with BatchNorm in inference mode (zoo-bench's 'full' default); timm cannot")
    parser.add_argument("--verbose", action="store_true", help="show timm's command and output")
    args = parser.parse_args()
    if not args.timm_benchmark.is_file():
        parser.error(f"--timm-benchmark {args.timm_benchmark}: no such file")

    registry = load_plugins()
    backend = registry.backends["torch"](device=args.device, precision=args.precision)
    device = backend._device
    spec = registry.backbone("torch", f"timm:{args.model}")
    if spec is None:
        parser.error(f"--model {args.model}: zoo-bench's timm catalogue has no such model")

    steps = max(5, math.ceil(args.n / args.batch_size))  # timm's script divides by num_bench_iter // 5
    n = steps * args.batch_size
    warm = args.warm_iter * args.batch_size
    classes = class_folders(args.images)
    photos = load_photos(args.images, math.ceil(max(n, warm) / len(classes)), args.img_size)
    order = np.random.default_rng(0).permutation(len(photos.labels))  # classes mixed in every batch
    x_all, y_all = photos.images[order], photos.labels[order]
    if len(y_all) < n:
        raise SystemExit(f"{args.images}: {len(y_all)} readable photos, {n} needed")
    x, y = x_all[:n], y_all[:n]

    rates: dict[str, tuple[float, float]] = {}

    # inference
    timm_rate = timm_run(args.timm_benchmark, "inference", args, steps, True)
    backend.seed(0)
    base = backend.build_base(spec, pretrained=False, image_size=args.img_size)
    backend.features(base, x_all[:warm], args.batch_size)
    start = time.perf_counter()
    backend.features(base, x, args.batch_size)  # returns host numpy: synchronised
    rates["inference"] = (timm_rate, n / (time.perf_counter() - start))
    del base

    # train
    timm_rate = timm_run(args.timm_benchmark, "train", args, steps, True)
    backend.seed(0)
    base = backend.build_base(spec, pretrained=False, image_size=args.img_size)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), len(classes), HeadSpec((), 0.0)))
    backend.set_trainable(model, None, bn_inference=args.bn_inference)
    sgd = OptimizerSpec("sgd", 1e-4, momentum=0.9)
    backend.fit(model, x_all[:warm], y_all[:warm], epochs=1, optimizer=sgd, batch_size=args.batch_size)
    stats = backend.fit(model, x, y, epochs=1, optimizer=sgd, batch_size=args.batch_size)
    rates["train"] = (timm_rate, stats[0].images / stats[0].seconds)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()} (CPU)"
    import timm

    print(f"timm:{args.model} (random weights), {n} images at {args.img_size} px, batch {args.batch_size}, "
          f"{args.precision}, on {name}, torch {torch.__version__}, timm {timm.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'measure':<10} {'timm img/s':>11} {'zoo-bench img/s':>16} {'ratio':>6}")
    for what, (ref, ours) in rates.items():
        print(f"{what:<10} {ref:>11.2f} {ours:>16.2f} {ours / ref:>6.2f}")


if __name__ == "__main__":
    main()

"""``run.compile``: a ``full`` fit with torch.compile against the same fit without it, same model and photos.

Why: compiling costs time once (the first epoch carries it) and may save time every epoch after. This
fits the same classifier (every layer trainable, BatchNorm in inference mode, Adam 1e-4) on the same
photos with the backend's ``compile`` off and on, and prints the first epoch, the median of the later
epochs, the share of epoch time spent producing batches (``data_wait_fraction``), and after how many
epochs compiling pays off (never, where the compiled epochs are not faster).

    python benchmarks/compile_speed.py --images ../shared/data/cats_dogs/train [--n 96] [--epochs 4]
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.backend import cpu_name
from zoo_bench.plugins import load_plugins

from photos import class_folders, load_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    registry = load_plugins()
    backend = registry.backends["torch"](device=args.device, precision=args.precision)
    spec = registry.backbone("torch", args.backbone)
    classes = class_folders(args.images)
    batch = load_photos(args.images, args.n // len(classes), spec.image_size)

    rows = {}
    for compiled in (False, True):
        backend.compile = compiled
        backend.seed(0)
        base = backend.build_base(spec, pretrained=True, image_size=spec.image_size)
        model = backend.attach(base, backend.new_head(backend.feature_dim(base), len(classes), HeadSpec((256,), 0.0)))
        backend.set_trainable(model, None, bn_inference=True)
        stats = backend.fit(model, batch.images, batch.labels, epochs=args.epochs, optimizer=OptimizerSpec("adam", 1e-4),
                            batch_size=args.batch_size)
        later = stats[1:]
        rows[compiled] = (stats[0].seconds, statistics.median(s.seconds for s in later),
                          sum(s.data_seconds for s in later) / sum(s.seconds for s in later), stats[-1].train_loss)

    device = backend.device()
    print(f"{args.backbone}, {len(batch.labels)} photos at {spec.image_size} px, batch {args.batch_size}, "
          f"{device.precision}, on {device.name} ({device.kind}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'compile':<8} {'first epoch s':>13} {'later epoch s':>13} {'data share':>10} {'last loss':>9}")
    for compiled, (first, later, share, loss) in rows.items():
        print(f"{str(compiled).lower():<8} {first:>13.2f} {later:>13.2f} {100 * share:>9.1f}% {loss:>9.4f}")
    (first_off, later_off, _, _), (first_on, later_on, _, _) = rows[False], rows[True]
    overhead, saving = first_on - first_off, later_off - later_on
    verdict = (f"pays off after {math.ceil(overhead / saving)} epochs ({overhead:.1f} s of compiling, "
               f"{saving:.2f} s saved per epoch)" if saving > 0 else
               f"never pays off here ({overhead:.1f} s of compiling, compiled epochs {-saving:.2f} s slower)")
    print(f"compile {verdict}")


if __name__ == "__main__":
    main()

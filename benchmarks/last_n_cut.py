"""last_n with cached activations at the cut against last_n over every block each epoch, real photos.

Why: ``last_n`` trains only the last blocks of its base, so running the frozen blocks below them every
epoch, and again over the validation and test images, repeats work whose result never changes.
``cache_cut = true`` (the default) runs them once per image (and once more per mirror image under the
default flip augmentation) and trains the top on the cached activations. This runs the cats_dogs
suite's ``cpu`` profile of ``last_n`` (EfficientNet-Lite0, sizes 50, 100 and 500 per class, 5 head epochs
on features, 2 fine-tuning epochs) twice through ``zoo-bench run``, with ``cache_cut`` true and false,
after one ``svm`` run that fills the shared feature cache (so neither side pays for the head phase's
features), and prints each trial's wall time and test accuracy side by side.

    python benchmarks/last_n_cut.py --data-root ../shared/data [--sizes 50 100 500] [--n 1]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from zoo_bench.backend import cpu_name

SUITE = """
[suite]
name = "{name}"
seeds = [0]
[dataset]
source = "folder"
path = "cats_dogs"
train = "train"
test = "test"
val_fraction = 0.2
sizes = {sizes}
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
batch_size = 32
{strategies}
"""


def run(name: str, strategies: str, sizes: list[int], work: Path, data_root: Path) -> pd.DataFrame:
    suite = work / f"{name}.toml"
    suite.write_text(SUITE.format(name=name, sizes=sizes, strategies=strategies))
    subprocess.run([sys.executable, "-m", "zoo_bench.cli", "run", str(suite), "--no-profile", "--no-progress",
                    "--device", "cpu", "--data-root", str(data_root), "--cache-dir", str(work / "cache"),
                    "--results-dir", str(work / "results"), "--run-id", "r"], check=True, stdout=subprocess.DEVNULL)
    return pd.read_parquet(work / "results" / name / "r" / "trials.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cats_dogs/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 500])
    parser.add_argument("--n", type=int, default=1, help="last_n's n (blocks trained)")
    parser.add_argument("--augment", default="flip", choices=["flip", "none"])
    args = parser.parse_args()
    last_n = (f"[strategies.last_n]\nn = {args.n}\nhead_epochs = 5\nfinetune_epochs = 2\n"
              f"augment = \"{args.augment}\"\ncache_cut = {{}}\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run("warm", "[strategies.svm]\n", args.sizes, work, args.data_root.resolve())
        cut = run("cut", last_n.format("true"), args.sizes, work, args.data_root.resolve())
        pixels = run("pixels", last_n.format("false"), args.sizes, work, args.data_root.resolve())
    print(f"last_n n={args.n}, augment={args.augment}, EfficientNet-Lite0 at 224 px, batch 32, fp32, "
          f"on {cpu_name()} (CPU); trial wall seconds, one run each")
    print(f"{'per class':>9}  {'cut':>5}  {'pixels s':>8}  {'cut s':>6}  {'speed-up':>8}  "
          f"{'pixels acc':>10}  {'cut acc':>7}")
    for size in args.sizes:
        p = pixels[pixels["size_per_class"] == size].iloc[0]
        c = cut[cut["size_per_class"] == size].iloc[0]
        print(f"{size:>9}  {c['cut']:>5}  {p['wall_s']:>8.1f}  {c['wall_s']:>6.1f}  {p['wall_s'] / c['wall_s']:>7.2f}x"
              f"  {100 * p['test_accuracy']:>9.2f}%  {100 * c['test_accuracy']:>6.2f}%")
    total_p, total_c = pixels["wall_s"].sum(), cut["wall_s"].sum()
    print(f"{'all':>9}  {'':>5}  {total_p:>8.1f}  {total_c:>6.1f}  {total_p / total_c:>7.2f}x")


if __name__ == "__main__":
    main()

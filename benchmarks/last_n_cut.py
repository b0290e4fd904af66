"""last_n with cached activations at the cut against last_n over every block each epoch, real photos.

Why: ``last_n`` trains only the last blocks of its base, so running the frozen blocks below them every
epoch, and again over the validation and test images, repeats work whose result never changes.
``cache_cut = true`` (the default) runs them once per image (and once more per mirror image under the
default flip augmentation) and trains the top on the cached activations. This runs the cats_dogs
suite's ``cpu`` profile of ``last_n`` (EfficientNet-Lite0, sizes 50, 100 and 500 per class, 5 head epochs
on features, 2 fine-tuning epochs) twice through ``zoo-bench run``, with ``cache_cut`` true and false,
after one ``svm`` run that fills the shared feature cache (so neither side pays for the head phase's
features), and prints each trial's wall time and test accuracy side by side. The three runs share
this process, as the GPU check runs them (no worker process).

    python benchmarks/last_n_cut.py --data-root ../shared/data [--sizes 50 100 500] [--n 1] [--device cuda]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from zoo_bench import cli

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
image_size = {image_size}
{strategies}
"""


def run(name: str, strategies: str, sizes: list[int], work: Path, data_root: Path, device: str,
        image_size: int = 0) -> pd.DataFrame:
    """One ``zoo-bench run`` in this process (no worker), sharing the feature cache under ``work``."""
    suite = work / f"{name}.toml"
    suite.write_text(SUITE.format(name=name, sizes=sizes, strategies=strategies, image_size=image_size))
    code = cli.main(["run", str(suite), "--no-profile", "--no-progress", "--isolation", "off", "--device", device,
                     "--data-root", str(data_root), "--cache-dir", str(work / "cache"),
                     "--results-dir", str(work / "results"), "--run-id", "r"])
    if code != 0:
        raise RuntimeError(f"zoo-bench run {suite.name} exited {code}")
    rows = pd.read_parquet(work / "results" / name / "r" / "trials.parquet")
    if (rows["status"] != "ok").any():
        raise RuntimeError(f"{name}: {rows.loc[rows['status'] != 'ok', 'error'].iloc[0]}")
    return rows


def measure(data_root: Path, sizes: list[int], n: int = 1, augment: str = "flip", device: str = "cpu",
            head_epochs: int = 5, finetune_epochs: int = 2, image_size: int = 0) -> dict:
    """Per size: wall seconds and test accuracy of last_n on pixels and at the cut, and the speed-up."""
    last_n = (f"[strategies.last_n]\nn = {n}\nhead_epochs = {head_epochs}\nfinetune_epochs = {finetune_epochs}\n"
              f"augment = \"{augment}\"\ncache_cut = {{}}\n")
    frames: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, strategies in (("warm", "[strategies.svm]\n"), ("cut", last_n.format("true")),
                                 ("pixels", last_n.format("false"))):
            frames[name] = run(name, strategies, sizes, work, data_root.resolve(), device, image_size)
    cut, pixels = frames["cut"], frames["pixels"]
    rows = []
    for size in sizes:
        p = pixels[pixels["size_per_class"] == size].iloc[0]
        c = cut[cut["size_per_class"] == size].iloc[0]
        rows.append({"size_per_class": size, "cut": c["cut"], "pixels_s": float(p["wall_s"]),
                     "cut_s": float(c["wall_s"]), "speedup": float(p["wall_s"] / c["wall_s"]),
                     "pixels_accuracy": float(p["test_accuracy"]), "cut_accuracy": float(c["test_accuracy"])})
    return {"n": n, "augment": augment, "device_name": str(cut["device_name"].iloc[0]),
            "precision": str(cut["precision"].iloc[0]), "rows": rows,
            "pixels_s": float(pixels["wall_s"].sum()), "cut_s": float(cut["wall_s"].sum()),
            "speedup": float(pixels["wall_s"].sum() / cut["wall_s"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cats_dogs/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 500])
    parser.add_argument("--n", type=int, default=1, help="last_n's n (blocks trained)")
    parser.add_argument("--augment", default="flip", choices=["flip", "none"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    r = measure(args.data_root, args.sizes, args.n, args.augment, args.device)
    print(f"last_n n={args.n}, augment={args.augment}, EfficientNet-Lite0 at 224 px, batch 32, {r['precision']}, "
          f"on {r['device_name']}; trial wall seconds, one run each")
    print(f"{'per class':>9}  {'cut':>5}  {'pixels s':>8}  {'cut s':>6}  {'speed-up':>8}  "
          f"{'pixels acc':>10}  {'cut acc':>7}")
    for row in r["rows"]:
        print(f"{row['size_per_class']:>9}  {row['cut']:>5}  {row['pixels_s']:>8.1f}  {row['cut_s']:>6.1f}  "
              f"{row['speedup']:>7.2f}x  {100 * row['pixels_accuracy']:>9.2f}%  {100 * row['cut_accuracy']:>6.2f}%")
    print(f"{'all':>9}  {'':>5}  {r['pixels_s']:>8.1f}  {r['cut_s']:>6.1f}  {r['speedup']:>7.2f}x")


if __name__ == "__main__":
    main()

"""Which preprocessing of the features serves the ``svm`` probe best, on five data sets: the evidence for its default.

Why: ``svm`` standardised its features before any choice was offered, and standardising many dimensions
from few images amplifies the noisy ones. This runs, through ``zoo-bench run``, EfficientNet-Lite0's
``svm`` with ``preprocess`` = none, l2 and standardize, each at ``C`` = 1 (the default) and tuned over
the default search space on the validation images (``[select]``, no refit), on every data set under
the data root (cats_dogs, eurosat5, trashnet, pbc_blood_cells, weather) at 20 and 100 images per class,
3 seeds. It prints the mean test accuracy of each cell, the rank of each preprocessing in each
(data set, size, C) column (1 = best, ties share the mean rank), and the mean rank over the columns;
the default is the best mean rank, ties going to ``none``.

    python benchmarks/probe_preprocessing.py --data-root ../shared/data [--sets cats_dogs eurosat5] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from zoo_bench import cli
from zoo_bench.results.store import RunStore, load_run
from zoo_bench.results.selection import default_rows, tuned_rows

SETS = ("cats_dogs", "eurosat5", "trashnet", "pbc_blood_cells", "weather")
ORDER = ("none", "l2", "standardize")  # also the tie-break: the first of equals is the default
SUITE = """
[suite]
name = "{name}"
seeds = [0, 1, 2]
[dataset]
source = "folder"
path = "{name}"
val_fraction = 0.2
sizes = {sizes}
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
batch_size = 32
precision = "fp32"
device = "cpu"
[select]
metric = "val_accuracy"
search = "default"
[strategies.svm]
preprocess = ["none", "l2", "standardize"]
"""


def run_set(name: str, sizes: list[int], data_root: Path, work: Path) -> pd.DataFrame:
    """Mean test accuracy over seeds per (size, preprocess, C default or tuned)."""
    suite = work / f"{name}.toml"
    suite.write_text(SUITE.format(name=name, sizes=sizes))
    code = cli.main(["run", str(suite), "--no-profile", "--no-progress", "--data-root", str(data_root),
                     "--results-dir", str(work / "results"), "--run-id", "r", "--cache-dir", str(work / "cache")])
    if code != 0:
        raise SystemExit(f"probe_preprocessing: the {name} run exited {code}")
    run_dir = work / "results" / name / "r"
    df = load_run(run_dir)
    selection = RunStore(run_dir).meta()["selection"]
    parts = []
    for label, rows in (("C=1", default_rows(df, selection)), ("tuned C", tuned_rows(df, selection))):
        rows = rows.assign(preprocess=rows["params"].map(lambda p: (p or {}).get("preprocess", "standardize")))
        means = rows.groupby(["size_per_class", "preprocess"])["test_accuracy"].agg(["mean", "count"]).reset_index()
        parts.append(means.assign(C=label, data_set=name))
    return pd.concat(parts)


def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Rank of each preprocessing per (data set, size, C) column; 1 is the best."""
    wide = table.pivot_table(index=["data_set", "size_per_class", "C"], columns="preprocess", values="mean")
    return wide[list(ORDER)].rank(axis=1, ascending=False, method="average")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--out", type=Path, help="keep the runs and write table.csv here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        table = pd.concat([run_set(name, args.sizes, args.data_root.resolve(), work) for name in args.sets])
        table.to_csv(work / "table.csv", index=False)
    wide = table.pivot_table(index=["data_set", "size_per_class"], columns=["C", "preprocess"], values="mean")
    r = ranks(table)
    print("mean test accuracy over 3 seeds, EfficientNet-Lite0 svm (%)")
    print((100 * wide).round(2).to_string())
    print("\nrank per (data set, size, C) column (1 = best)")
    print(r.to_string())
    mean_rank = r.mean().reindex(ORDER)
    print("\nmean rank: " + ", ".join(f"{k} {v:.2f}" for k, v in mean_rank.items()))
    best = min(ORDER, key=lambda k: (mean_rank[k], ORDER.index(k)))
    print(f"default: {best}")


if __name__ == "__main__":
    main()

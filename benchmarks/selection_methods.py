"""Does K-fold selection choose better than the validation split, or than the defaults? Five data sets.

Why: at 20 to 50 images per class the validation split holds 4 to 10 images per class, and tuning on
it was measured to lose points against the defaults. This runs, through ``zoo-bench run``,
EfficientNet-Lite0's strategies on cached features (svm, logreg, knn, last_layer) at 20 and 50 images
per class, 5 seeds, on every data set under the data root, three ways, all three trained in the end on
the same pool (the size's images, validation share included), so they differ only in how they chose:

- default: each strategy at its defaults, trained on the whole pool (``val_fraction = 0``);
- holdout: tuned on the validation split (``[select] search = "default"``), then refit on the pool;
- kfold: tuned by 5-fold cross-validation over the pool, 2 repeats, then refit on the pool.

``logreg`` searches 9 values of C (1e-4 to 1e4, one per decade) here instead of its 45, to keep the
ten fold fits of each cell affordable on a CPU. It prints the paired mean difference of each method
against the others over (data set x size x seed x strategy), with a 95% interval clustered by data set
(the mean of each data set's differences, then a t interval over the data sets: 4 degrees of freedom),
per strategy and pooled; and, for the record, the test accuracy of the configuration that was best on
test in hindsight: a fourth run ("grid") trains every configuration the other two searched on the same
pool, with nothing chosen, and the bound is its best test accuracy per cell. It is a bound, never a
target, and never a tuned number.

A stopped run resumes when the command is run again. A choice counts once its refit on the pool has
run; other run folders beside ``r`` (a run of the strategies a stopped run did not reach) are read too.

    python benchmarks/selection_methods.py --data-root ../shared/data --out DIR [--sets ...] [--seeds 5]
    python benchmarks/selection_methods.py --out DIR --analyse-only
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

SETS = ("cats_dogs", "eurosat5", "trashnet", "pbc_blood_cells", "weather")
METHODS = ("default", "holdout", "kfold")
RUNS = ("default", "holdout", "grid", "kfold")  # grid: every searched configuration on the pool, for the hindsight bound only
SUITE = """
[suite]
name = "{name}_{method}"
seeds = {seeds}
[dataset]
source = "folder"
path = "{name}"
val_fraction = {val_fraction}
sizes = {sizes}
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
batch_size = 32
precision = "fp32"
device = "cpu"
{select}
[strategies.svm]
{svm}
[strategies.logreg]
{logreg}
[strategies.knn]
{knn}
[strategies.last_layer]
{last_layer}
"""
SELECT = {"default": "", "holdout": "[select]\nsearch = \"default\"\nrefit = true",
          "kfold": "[select]\nsearch = \"default\"\nfolds = 5\nrepeats = 2", "grid": ""}
LOGREG_C = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4]


def run_all(data_root: Path, out: Path, sets: list[str], sizes: list[int], seeds: int) -> None:
    from zoo_bench import cli
    from zoo_bench.plugins import load_plugins

    spaces = {name: cls.search_space for name, cls in load_plugins().strategies.items()}
    for name in sets:
        for method in RUNS:
            grid = {s: "\n".join(f"{k} = {json.dumps(v)}" for k, v in spaces[s].items()) if method == "grid" else ""
                    for s in ("svm", "knn", "last_layer")}
            suite = out / f"{name}_{method}.toml"
            suite.write_text(SUITE.format(
                name=name, method=method, seeds=list(range(seeds)), sizes=sizes,
                val_fraction=0.0 if method in ("default", "grid") else 0.2, select=SELECT[method],
                logreg="" if method == "default" else f"C = {LOGREG_C}", **grid))
            code = cli.main(["run", str(suite), "--no-profile", "--no-progress", "--data-root", str(data_root),
                             "--results-dir", str(out / "results"), "--run-id", "r"])
            if code != 0:
                raise SystemExit(f"selection_methods: {name} {method} exited {code}")


def cell_table(out: Path, sets: list[str]) -> pd.DataFrame:
    """One row per (data set, strategy, size, seed): the test accuracy of each method and the hindsight bound."""
    from zoo_bench.results.store import RunStore, load_run
    from zoo_bench.results.selection import choose

    rows = []
    for name in sets:
        frames = {}
        for method in METHODS:
            parts = []
            for run_dir in run_dirs(out, name, method):
                df = load_run(run_dir)
                selection = RunStore(run_dir).meta().get("selection")
                chosen = df[df["status"] == "ok"] if selection is None else choose(df, selection)
                if selection is not None:  # a choice counts once refit on the pool; a stopped run may lack refits
                    chosen = chosen[chosen["refit_status"] == "ok"]
                parts.append(chosen)
            frames[method] = pd.concat(parts, ignore_index=True)
        grid = pd.concat([load_run(d) for d in run_dirs(out, name, "grid")], ignore_index=True)
        hindsight = grid[grid["status"] == "ok"].groupby(["strategy", "size_per_class", "seed"])["test_accuracy"].max()
        keys = ["strategy", "size_per_class", "seed"]
        merged = None
        for method, frame in frames.items():
            part = frame[keys + ["test_accuracy"]].rename(columns={"test_accuracy": method})
            merged = part if merged is None else merged.merge(part, on=keys)
        merged = merged.merge(hindsight.rename("hindsight").reset_index(), on=keys)
        rows.append(merged.assign(data_set=name))
    return pd.concat(rows, ignore_index=True)


def run_dirs(out: Path, name: str, method: str) -> list[Path]:
    """The run folders of one (data set, method): ``r``, and any other run of the same suite's strategies
    (a run of the strategies a stopped run did not reach, say)."""
    return sorted(p for p in (out / "results" / f"{name}_{method}").iterdir() if (p / "run.json").exists())


def fit_seconds(out: Path, sets: list[str]) -> pd.DataFrame:
    """Seconds spent fitting in each run: every trial's fit time plus its fold fits (features excluded)."""
    from zoo_bench.results.store import load_run

    table = {}
    for name in sets:
        for method in METHODS:
            for run_dir in run_dirs(out, name, method):
                df = load_run(run_dir)
                cv = df["cv_train_s"].fillna(0).sum() if "cv_train_s" in df else 0.0
                table[(name, method)] = table.get((name, method), 0.0) + float(df["train_time_s"].fillna(0).sum() + cv)
    return pd.Series(table).unstack()[list(METHODS)]


def clustered(diff: pd.Series, clusters: pd.Series) -> tuple[float, float, float, int]:
    """Mean difference (points), and a 95% t interval over the clusters' means: (mean, low, high, clusters)."""
    from scipy import stats

    means = (100 * diff).groupby(clusters).mean()
    g = len(means)
    mean = float(means.mean())
    if g < 2:
        return mean, math.nan, math.nan, g
    half = float(stats.t.ppf(0.975, g - 1)) * float(means.std(ddof=1)) / math.sqrt(g)
    return mean, mean - half, mean + half, g


def analyse(table: pd.DataFrame) -> list[dict]:
    out = []
    groups = [("all", table)] + [(f"n={n}", part) for n, part in table.groupby("size_per_class")]
    groups += [(name, part) for name, part in table.groupby("strategy")]
    for strategy, part in groups:
        for a, b in (("kfold", "holdout"), ("kfold", "default"), ("holdout", "default"), ("hindsight", "kfold")):
            mean, low, high, g = clustered(part[a] - part[b], part["data_set"])
            out.append({"strategy": strategy, "a": a, "b": b, "mean": mean, "low": low, "high": high, "sets": g,
                        "cells": len(part)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--analyse-only", action="store_true", help="read the runs already in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        if args.data_root is None:
            parser.error("--data-root is needed to run")
        run_all(args.data_root.resolve(), args.out, args.sets, args.sizes, args.seeds)
    table = cell_table(args.out, args.sets)
    table.to_csv(args.out / "cells.csv", index=False)
    means = table.groupby(["data_set", "size_per_class"])[list(METHODS) + ["hindsight"]].mean() * 100
    print("mean test accuracy over seeds and strategies (%)")
    print(means.round(2).to_string())
    print("\ncells per data set and strategy (size x seed, where every method has a result)")
    print(table.groupby(["data_set", "strategy"]).size().unstack(fill_value=0).to_string())
    cost = fit_seconds(args.out, args.sets)
    print("\nfitting seconds per run (probe and head fits, fold fits included; features excluded)")
    print(cost.round(0).to_string())
    results = analyse(table)
    (args.out / "differences.json").write_text(json.dumps(results, indent=1))
    print("\npaired differences (points), 95% interval clustered by data set")
    for r in results:
        print(f"  {r['strategy']:10s} {r['a']:9s} - {r['b']:8s} {r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] "
              f"({r['cells']} cells, {r['sets']} data sets)")


if __name__ == "__main__":
    main()

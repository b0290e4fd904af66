"""PNG plots of a run: accuracy against images per class, and time per epoch per strategy."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .results import row_labels
from .stats import estimate


def accuracy_plot(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """One panel per (backend, backbone): a line per strategy with its 95% band, log x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["status"] == "ok"]
    if ok.empty:  # no accuracy to draw (every trial failed or diverged)
        return None
    ok = ok.assign(label=row_labels(ok))
    panels = list(ok.groupby(["backend", "backbone"], sort=True))
    cols = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols) if panels else 1
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, ((backend, backbone), group) in zip(axes.flat, panels):
        for label, g in group.groupby("label", sort=True):
            sizes, means, lows, highs = [], [], [], []
            for size, s in sorted(g.groupby("size_per_class")):
                e = estimate(s["test_accuracy"])
                sizes.append(size)
                means.append(e.mean * 100)
                lows.append(e.low * 100)
                highs.append(e.high * 100)
            line, = ax.plot(sizes, means, marker="o", label=label)
            ax.fill_between(sizes, lows, highs, color=line.get_color(), alpha=0.15)
            ax.errorbar(sizes, means, yerr=[[m - lo for m, lo in zip(means, lows)], [h - m for m, h in zip(means, highs)]],
                        fmt="none", ecolor=line.get_color(), capsize=3, alpha=0.8)  # visible at a single size too
        ax.set_xscale("log")
        ax.set_xticks(sorted(group["size_per_class"].unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # no 2x10^2-style minor labels
        ax.set_xlabel("images per class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{backbone} ({backend})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    fig.suptitle(f"{title}: test accuracy, mean and 95% CI over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def time_plot(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Seconds per epoch (log scale) per strategy, one bar group per size, per backend/backbone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "ok") & df["epoch_time_s"].notna()]
    if ok.empty:  # nothing timed (every trial failed or diverged): no plot rather than an empty one
        return None
    ok = ok.assign(label=row_labels(ok))
    ok["who"] = ok["label"] + "\n" + ok["backbone"] + " (" + ok["backend"] + ")"
    whos = sorted(ok["who"].unique())
    sizes = sorted(ok["size_per_class"].unique())
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(whos) * max(1, len(sizes)) * 0.6 + 2), 4.8))
    width = 0.8 / max(1, len(sizes))
    for i, size in enumerate(sizes):
        values, errors = [], []
        for who in whos:
            e = estimate(ok[(ok["who"] == who) & (ok["size_per_class"] == size)]["epoch_time_s"])
            values.append(e.mean if e else float("nan"))
            errors.append(e.half_width or 0.0 if e else 0.0)
        xs = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(whos))]
        ax.bar(xs, values, width=width, yerr=errors, capsize=3, label=f"{size} per class")
    ax.set_yscale("log")
    ax.set_xticks(range(len(whos)))
    ax.set_xticklabels(whos, fontsize=8)
    ax.set_ylabel("seconds per epoch (median after the first)")
    ax.set_title(f"{title}: time per epoch")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(df: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    """Both plots into ``out_dir``; a plot with nothing to draw is left out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [accuracy_plot(df, out_dir / "accuracy.png", title), time_plot(df, out_dir / "epoch_time.png", title)]
    return [p for p in plots if p is not None]

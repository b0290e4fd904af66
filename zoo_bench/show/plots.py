"""PNG plots of a run: accuracy per size, time per epoch, learning curves, cost, confusion matrices."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from ..results.stats import estimate
from ..results.store import row_labels


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
    # one colour per label, except that "<strategy> tuned" shares its strategy's colour, dashed
    bases = sorted({label.replace(" tuned", "") for label in ok["label"]})
    palette = plt.get_cmap("tab10" if len(bases) <= 10 else "tab20")
    colour = {b: palette(i % palette.N) for i, b in enumerate(bases)}
    for ax, ((backend, backbone), group) in zip(axes.flat, panels):
        for label, g in group.groupby("label", sort=True):
            tuned = " tuned" in label
            sizes, means, lows, highs = [], [], [], []
            for size, s in sorted(g.groupby("size_per_class")):
                e = estimate(s["test_accuracy"])
                sizes.append(size)
                means.append(e.mean * 100)
                lows.append(e.low * 100)
                highs.append(e.high * 100)
            line, = ax.plot(sizes, means, marker="s" if tuned else "o", linestyle="--" if tuned else "-", label=label,
                            color=colour[label.replace(" tuned", "")])
            ax.fill_between(sizes, lows, highs, color=line.get_color(), alpha=0.08 if tuned else 0.15)
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


MAX_PANELS = 12  # beyond this a figure's panels get too small to read
MAX_CONFUSION = 12  # confusion images per run: one per configuration, the first ones in id order


def _pyplot():
    """pyplot on the file-only Agg backend (no display on servers and in tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_list(value: Any) -> list[Any]:
    """A list cell as a list: rows from jsonl hold lists, from parquet arrays, from csv JSON text."""
    if _missing(value):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if isinstance(value, dict):
        return []
    try:
        return list(value)
    except TypeError:
        return []


def history_of(value: Any) -> list[dict[str, Any]]:
    """A row's ``history`` as a list of epoch dicts; empty for old runs, ``svm`` and odd cells."""
    return [e for e in _as_list(value) if isinstance(e, dict)]


def matrix_of(value: Any) -> list[list[int]] | None:
    """A row's ``confusion`` as a square list of int rows, or None when absent or malformed."""
    rows = [_as_list(r) for r in _as_list(value)]
    if not rows or any(len(r) != len(rows) for r in rows):
        return None
    try:
        return [[int(c) for c in r] for r in rows]
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float:
    """A finite float, or NaN for None, missing and infinite values (a diverged loss is not drawn)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


def _mean(values: list[float]) -> float:
    xs = [v for v in values if not math.isnan(v)]
    return sum(xs) / len(xs) if xs else float("nan")


def _wrap(line: str, width: int) -> str:
    """Break a long line after ``/`` or ``,`` where possible: trial ids have no spaces to break at."""
    out: list[str] = []
    current = ""
    for token in re.split(r"(?<=[/, ])", line):
        if current and len(current) + len(token) > width:
            out.append(current.rstrip())
            current = ""
        current += token
        while len(current) > width:
            out.append(current[:width])
            current = current[width:]
    out.append(current.rstrip())
    return "\n".join(out)


def _natural(text: str) -> list[Any]:
    """Sort key reading digit runs as numbers: n=4 before n=16, lr=2 before lr=10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _grid(n: int, cols_max: int = 3) -> tuple[int, int]:
    cols = min(cols_max, max(1, n))
    return math.ceil(max(1, n) / cols), cols


def finetune_starts(history: list[dict[str, Any]]) -> list[float]:
    """Where fine-tuning follows head epochs, half-way between the two epochs (where the plot draws its line)."""
    epochs = [int(e.get("epoch") or i + 1) for i, e in enumerate(history)]
    return [(epochs[i - 1] + epochs[i]) / 2 for i in range(1, len(history))
            if history[i - 1].get("phase") == "head" and history[i].get("phase") == "finetune"]


def _seed_lines(group: pd.DataFrame
                ) -> tuple[list[int], list[float], list[float], list[dict[str, Any]], list[int], str]:
    """One line for a size's seeds: the epoch-by-epoch mean when they ran the same epochs, else the first seed.

    Returns epochs, train losses, validation accuracies (%), the history the phases are read from, the
    best epochs to mark, and the legend text saying which seeds the line is.
    """
    runs = [(seed, history_of(h), best) for seed, h, best in
            sorted(zip(group["seed"], group["history"], group["best_epoch"]), key=lambda t: _number(t[0]))]
    runs = [r for r in runs if r[1]]
    first_seed, first, first_best = runs[0]
    epochs = [int(e.get("epoch") or i + 1) for i, e in enumerate(first)]
    same = len(runs) > 1 and all([e.get("epoch") for e in h] == [e.get("epoch") for e in first] for _, h, _ in runs)
    used = runs if same else runs[:1]
    losses = [_mean([_number(h[i].get("train_loss")) for _, h, _ in used]) for i in range(len(first))]
    accs = [_mean([_number(h[i].get("val_accuracy")) * 100 for _, h, _ in used]) for i in range(len(first))]
    bests = sorted({int(b) for _, _, b in used if not _missing(b)})
    if same:
        note = f"mean of {len(used)} seeds"
    elif len(runs) == 1:
        note = f"seed {first_seed}"
    else:
        note = f"seed {first_seed} only: seeds ran different epochs"
    return epochs, losses, accs, first, bests, note


def learning_curves_plot(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Per configuration, loss and validation accuracy per epoch: shows under-, over-fitting and the fine-tune step.

    None when no row has a history (old runs, only ``svm``, every trial failed before its first epoch).
    """
    if "history" not in df.columns:
        return None
    rows = df[df["history"].map(lambda h: bool(history_of(h)))]
    if rows.empty:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    rows = rows.assign(label=row_labels(rows))
    if "best_epoch" not in rows.columns:
        rows = rows.assign(best_epoch=None)
    panels = sorted(rows.groupby(["backend", "backbone", "label"]), key=lambda kv: [_natural(str(k)) for k in kv[0]])
    total = len(panels)
    panels = panels[:MAX_PANELS]
    sizes = sorted(rows["size_per_class"].unique())
    colours = {s: f"C{i % 10}" for i, s in enumerate(sizes)}
    nrows, ncols = _grid(len(panels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 5.0 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, ((backend, backbone, label), group) in zip(axes.flat, panels):
        acc_ax = ax.twinx()
        handles: list[Any] = []
        boundaries: set[float] = set()
        marked = has_val = False
        for size, g in sorted(group.groupby("size_per_class")):
            epochs, losses, accs, hist, bests, note = _seed_lines(g)
            colour = colours[size]
            dots = 3 if len(epochs) <= 30 else 0  # a dot per epoch only while they stay apart
            ax.plot(epochs, losses, color=colour, lw=1.6, marker="o", ms=dots)
            if any(not math.isnan(a) for a in accs):
                has_val = True
                acc_ax.plot(epochs, accs, color=colour, lw=1.6, ls="--", marker="o", ms=dots, mfc="white")
            handles.append(Line2D([], [], color=colour, lw=2, label=f"n={size} per class ({note})"))
            boundaries.update(finetune_starts(hist))
            for best in bests:
                if best in epochs and not math.isnan(accs[epochs.index(best)]):
                    acc_ax.plot([best], [accs[epochs.index(best)]], marker="*", ms=13, color=colour,
                                mec="black", mew=0.8, ls="none", zorder=5)
                    marked = True
        for x in sorted(boundaries):
            ax.axvline(x, color="0.35", ls=(0, (4, 3)), lw=1.2, zorder=0)
            ax.text(x, 0.99, " fine-tune", transform=ax.get_xaxis_transform(), ha="left", va="top",
                    fontsize=8, color="0.25")
        handles.append(Line2D([], [], color="0.2", lw=1.6, label="train loss (left axis)"))
        if has_val:
            handles.append(Line2D([], [], color="0.2", lw=1.6, ls="--", label="validation accuracy (right axis)"))
            acc_ax.set_ylabel("validation accuracy (%)")
        else:  # no validation images: no empty right axis
            acc_ax.set_yticks([])
        if marked:
            handles.append(Line2D([], [], marker="*", ms=11, color="0.5", mec="black", ls="none",
                                  label="best validation epoch, each seed"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel("train loss")
        ax.set_title(_wrap(f"{label} - {backbone} ({backend})", 62), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(handles=handles, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                  frameon=False)
    note = f"; first {len(panels)} of {total} configurations shown" if total > len(panels) else ""
    fig.suptitle(f"{title}: learning curves per epoch{note}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_plot(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """Heatmap of a confusion matrix: colour is the share of each true class, so rare classes read as well."""
    plt = _pyplot()
    n = len(matrix)
    names = [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]
    names = [c if len(c) <= 24 else c[:23] + "…" for c in names]
    totals = [sum(r) for r in matrix]
    shares = [[c / t if t else 0.0 for c in r] for r, t in zip(matrix, totals)]
    side = max(4.8, (0.62 if n <= 12 else 0.45) * n + 2.6)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class")
    cbar.ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    font = 9 if n <= 8 else 7.5 if n <= 12 else 7
    for i in range(n):
        for j in range(n):
            text = f"{matrix[i][j]}\n{shares[i][j]:.0%}" if n <= 12 else str(matrix[i][j])
            ax.text(j, i, text, ha="center", va="center", fontsize=font,
                    color="white" if shares[i][j] > 0.55 else "black")
    cell_inches = (side - 1.8) / n
    label_inches = max((len(c) for c in names), default=0) * (font + 1) * 0.6 / 72
    long = label_inches > 0.9 * cell_inches  # horizontal names would run into each other
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=45 if long else 0, ha="right" if long else "center",
                       rotation_mode="anchor", fontsize=font + 1)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=font + 1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct = sum(matrix[i][i] for i in range(n))
    overall = f"accuracy {correct / sum(totals):.1%} of {sum(totals)} images" if sum(totals) else "no images"
    width = int(11 * (side + 1.2))  # characters of 10 pt text across the figure
    fig.suptitle("\n".join([_wrap(line, width) for line in title.splitlines()] + [overall]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain_log_formatter(**kwargs: Any) -> Any:
    """Log-axis labels as plain numbers (0.1, 3, 20), on the ticks matplotlib would label anyway."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    return Plain(**kwargs)


def _cost(ok: pd.DataFrame) -> tuple[pd.Series, str]:
    """Seconds a trial cost: training plus feature extraction where recorded, else the whole trial."""
    train = pd.to_numeric(ok["train_time_s"], errors="coerce")
    feature = pd.to_numeric(ok["feature_time_s"], errors="coerce").fillna(0.0)
    wall = pd.to_numeric(ok["wall_s"], errors="coerce")
    timed = train.notna() & (train + feature > 0)
    cost = (train + feature).where(timed, wall)
    if timed.all():
        axis = "training + feature extraction time (s)"
    elif not timed.any():
        axis = "whole trial time, wall_s (s)"
    else:
        axis = "training + feature time (s); whole trial time where not recorded"
    return cost, axis


def cost_plot(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Test accuracy against seconds spent per trial: which strategy buys accuracy cheaply. None without ok trials."""
    ok = df[(df["status"] == "ok") & df["test_accuracy"].notna()]
    if ok.empty:
        return None
    cost, axis = _cost(ok)
    ok = ok.assign(label=row_labels(ok), cost=cost)
    ok = ok[ok["cost"].notna() & (ok["cost"] > 0)]  # a log axis has no place for 0 or unknown seconds
    if ok.empty:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    labels = sorted(ok["label"].unique(), key=_natural)
    sizes = sorted(ok["size_per_class"].unique())
    palette = "tab10" if len(labels) <= 10 else "tab20"
    cmap = plt.get_cmap(palette)
    colours = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}
    markers = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
    shapes = {s: markers[i % len(markers)] for i, s in enumerate(sizes)}
    panels = list(ok.groupby(["backend", "backbone"], sort=True))
    total = len(panels)
    panels = panels[:MAX_PANELS]
    nrows, ncols = _grid(len(panels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, ((backend, backbone), group) in zip(axes.flat, panels):
        for (label, size), g in group.groupby(["label", "size_per_class"], sort=True):
            ax.scatter(g["cost"], g["test_accuracy"] * 100, color=colours[label], marker=shapes[size], s=42,
                       alpha=0.85, edgecolors="black", linewidths=0.4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain_log_formatter())
        ax.xaxis.set_minor_formatter(_plain_log_formatter(minor_thresholds=(1, 0.4)))
        ax.set_xlabel(axis)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{backbone} ({backend})", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    handles = [Line2D([], [], ls="none", marker="o", ms=8, color=colours[lab], mec="black", mew=0.4, label=lab)
               for lab in labels]
    handles += [Line2D([], [], ls="none", marker=shapes[s], ms=8, color="0.6", mec="black", mew=0.4,
                       label=f"n={s} per class") for s in sizes]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False,
               title="strategy (colour), size (marker)", title_fontsize=8)
    note = f"; first {len(panels)} of {total} backbones shown" if total > len(panels) else ""
    fig.suptitle(f"{title}: test accuracy against training cost, one point per ok trial{note}")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits right of the panels
    plt.close(fig)
    return path


def _compact(x: float) -> str:
    """An axis number as people write counts: 3k, 1.3M, 25."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (cheaper or as cheap, and more accurate or as
    accurate, one of them strictly), cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy))
    return front


def deployment_plot(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Mean test accuracy of each configuration against its trained parameters and against its inference
    latency, a row per size, every backbone in one panel, the Pareto front of each panel drawn: what a
    deployment pays for accuracy. None without ok trials that carry both numbers."""
    ok = df[(df["status"] == "ok") & df["test_accuracy"].notna()]
    if ok.empty or "latency_ms" not in ok.columns:
        return None
    ok = ok.assign(label=[f"{b} {lab}" if ok["backbone"].nunique() > 1 else lab
                          for b, lab in zip(ok["backbone"], row_labels(ok))])
    means = ok.groupby(["label", "size_per_class"], sort=True).agg(
        accuracy=("test_accuracy", "mean"), params=("trainable_params", "mean"),
        latency=("latency_ms", "mean")).reset_index()
    axes_of = [("params", "trained parameters"), ("latency", "inference latency at batch 1 (ms)")]
    usable = means[means["params"].gt(0) | means["latency"].gt(0)]
    if usable.empty:
        return None
    plt = _pyplot()
    import matplotlib
    from matplotlib.lines import Line2D

    labels = sorted(usable["label"].unique(), key=_natural)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colours = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}
    sizes = sorted(usable["size_per_class"].unique())[:4]
    fig, axes = plt.subplots(len(sizes), 2, figsize=(12.0, 4.2 * len(sizes)), squeeze=False)
    for row, size in zip(axes, sizes):
        at = usable[usable["size_per_class"] == size]
        for ax, (column, axis) in zip(row, axes_of):
            points = at[at[column].notna() & (at[column] > 0)]
            for _, r in points.iterrows():
                ax.scatter(r[column], r["accuracy"] * 100, color=colours[r["label"]], s=46, edgecolors="black",
                           linewidths=0.4, zorder=3)
            front = pareto_front(list(zip(points[column], points["accuracy"] * 100)))
            if front:
                xs, ys = zip(*front)
                ax.step(xs, ys, where="post", color="0.3", linestyle="--", linewidth=1, zorder=2,
                        label="Pareto front")
                ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="0.2", linewidths=1.0, zorder=4)
            values = points[column]
            if len(values) and values.max() / values.min() > 10:  # a log axis only where it spans decades
                ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _compact(x)))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(axis)
            ax.set_ylabel("mean test accuracy (%)")
            low, high = ax.get_ylim()
            ax.set_ylim(low, min(high, 100.5))
            ax.set_title(f"n={size} per class", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
    handles = [Line2D([], [], ls="none", marker="o", ms=8, color=colours[lab], mec="black", mew=0.4, label=lab)
               for lab in labels]
    handles.append(Line2D([], [], ls="--", color="0.3", marker="o", mfc="none", mec="0.2", ms=10,
                          label="Pareto front (circled)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{title}: accuracy against what training changed and what inference costs\n(means over seeds: "
                 "`zoo-bench show RUN --versus` says which differences the paired test separates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def configuration_of(trial_id: str) -> str:
    """A trial id without its seed: the configuration whose seeds are summed."""
    return trial_id.rsplit("/seed=", 1)[0]


class ConfusionGroup(NamedTuple):
    """A configuration's confusion matrix summed over its seeds."""

    config: str  # the trial id without its seed
    name: str  # backend/backbone/strategy label/n=SIZE, with only the parameters that vary in the run
    matrix: list[list[int]]
    seeds: int


def confusion_configurations(df: pd.DataFrame, classes: list[str] | None) -> list[ConfusionGroup]:
    """The first configurations (in id order, numbers read as numbers) with a confusion matrix, summed over seeds.

    Matrices whose size differs from ``classes`` are left out: their rows cannot be named.
    """
    if not classes or "confusion" not in df.columns or df.empty:
        return []
    groups: dict[str, ConfusionGroup] = {}
    for trial_id, value, backend, backbone, label, size in zip(
            df["trial_id"], df["confusion"], df["backend"], df["backbone"], row_labels(df), df["size_per_class"]):
        matrix = matrix_of(value)
        if matrix is None or len(matrix) != len(classes):
            continue
        key = configuration_of(str(trial_id))
        old = groups.get(key)
        if old is None:
            groups[key] = ConfusionGroup(key, f"{backend}/{backbone}/{label}/n={size}", matrix, 1)
        else:
            summed = [[a + b for a, b in zip(r, s)] for r, s in zip(old.matrix, matrix)]
            groups[key] = old._replace(matrix=summed, seeds=old.seeds + 1)
    return [groups[key] for key in sorted(groups, key=_natural)[:MAX_CONFUSION]]


def versus_plot(evidence: Any, path: Path, title: str) -> Path | None:
    """A matrix of paired differences per cell (row minus column, points), marked where Holm's test over
    the cell's pairs separates them; rows and columns in order of mean accuracy."""
    panels = [(t.name, backend, backbone, size, comps) for t in evidence.tables
              for backend, backbone, size, comps in t.cells if comps][:MAX_PANELS]
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    rows, cols = _grid(len(panels))
    names_max = max(len({c.a.label for c in comps} | {c.b.label for c in comps}) for *_, comps in panels)
    side = max(3.2, 0.55 * names_max + 1.8)
    fig, axes = plt.subplots(rows, cols, figsize=(side * 1.35 * cols + 1.0, side * 1.15 * rows + 0.8), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    limit = max([abs(c.diff.delta) for *_, comps in panels for c in comps if c.diff is not None] + [0.5])
    norm = TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit)
    image = None
    for ax, (table, backend, backbone, size, comps) in zip(axes.flat, panels):
        configs = {}
        for c in comps:
            configs[c.a.label], configs[c.b.label] = c.a, c.b
        order = sorted(configs, key=lambda k: (-configs[k].accuracy, configs[k].order))
        index = {k: i for i, k in enumerate(order)}
        k = len(order)
        values = [[math.nan] * k for _ in range(k)]
        for i in range(k):
            values[i][i] = 0.0
        for c in comps:
            i, j = index[c.a.label], index[c.b.label]
            text_ij = text_ji = "n/p"  # not paired
            if c.diff is not None:
                values[i][j], values[j][i] = c.diff.delta, -c.diff.delta
                mark = "*" if c.p_holm is not None and c.p_holm < 0.05 else ""
                text_ij, text_ji = f"{c.diff.delta:+.1f}{mark}", f"{-c.diff.delta:+.1f}{mark}"
            strong = c.diff is not None and abs(c.diff.delta) > 0.6 * limit  # white on the dark end of the scale
            for (y, x), text in (((i, j), text_ij), ((j, i), text_ji)):
                ax.text(x, y, text, ha="center", va="center", fontsize=8, color="white" if strong else "black")
        image = ax.imshow(values, cmap="RdBu", norm=norm)
        labels = [f"{name} {configs[name].accuracy:.1f}" for name in order]
        ax.set_xticks(range(k), labels=order, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=labels, fontsize=8)
        where = {"trials": "", "defaults": ", defaults", "tuned": ", tuned"}.get(table, f", {table}")
        ax.set_title(f"{backend} {backbone}\nn={size}{where}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="row - column, points of test accuracy")
    fig.suptitle(f"{title}: paired differences (* Holm-corrected p < 0.05 over the cell's pairs)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(df: pd.DataFrame, out_dir: Path, title: str, classes: list[str] | None = None,
             evidence: Any = None) -> list[Path]:
    """Every plot into ``out_dir``; a plot with nothing to draw is left out.

    ``classes``: the run's class names (``run.json``'s ``classes``); without them no confusion matrix is drawn.
    ``evidence``: the run's paired evidence (:func:`zoo_bench.results.evidence.analyse`), for ``versus.png``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [accuracy_plot(df, out_dir / "accuracy.png", title), time_plot(df, out_dir / "epoch_time.png", title),
             learning_curves_plot(df, out_dir / "learning_curves.png", title),
             cost_plot(df, out_dir / "cost.png", title), deployment_plot(df, out_dir / "deployment.png", title),
             versus_plot(evidence, out_dir / "versus.png", title) if evidence is not None else None]
    for k, group in enumerate(confusion_configurations(df, classes), start=1):
        summed = f"\nsummed over {group.seeds} seeds" if group.seeds > 1 else ""
        plots.append(confusion_plot(group.matrix, list(classes or []), out_dir / f"confusion_{k}.png",
                                    f"{title}: confusion matrix\n{group.name}{summed}"))
    return [p for p in plots if p is not None]

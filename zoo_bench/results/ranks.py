"""Ranks across data sets: which strategy wins on many data sets, not on one (Demsar 2006).

One score per (data set, strategy): the mean test accuracy over seeds. Per data set the strategies are
ranked (1 = best, ties share the mean rank); Friedman's test asks whether the mean ranks differ more
than chance would, with the Iman-Davenport F (less conservative than Friedman's chi-square) and an
exact permutation p-value (the ranks of each data set permuted among the strategies, every
permutation counted). Nemenyi's critical difference says how far apart two mean ranks must be for
the pair to differ at 5%, after the Friedman test; with few data sets it is large, and the diagram's
caption says so. No pairwise Wilcoxon tests below 6 data sets: they could not reach 5%.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .evidence import configs, table_frames
from .store import RunStore, load_run

ALPHA = 0.05
MIN_SETS_FOR_WILCOXON = 6


def ranks_of(scores: Any) -> np.ndarray:
    """Rank of each strategy (column) within each data set (row): 1 = highest score, ties averaged."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    return np.vstack([rankdata(-row, method="average") for row in scores])


def friedman_statistic(rank_sums: np.ndarray, n: int, k: int) -> float:
    """Friedman's chi-square from the strategies' rank sums over n data sets."""
    return 12.0 / (n * k * (k + 1)) * float(np.sum(np.asarray(rank_sums, dtype=np.float64) ** 2)) - 3.0 * n * (k + 1)


def iman_davenport(chi2: float, n: int, k: int) -> float:
    """Iman and Davenport's F from Friedman's chi-square: F((k-1), (k-1)(n-1)); infinite when every data set agrees."""
    denominator = n * (k - 1) - chi2
    return math.inf if denominator <= 1e-12 else (n - 1) * chi2 / denominator


def exact_permutation_p(ranks: np.ndarray) -> float:
    """P(chi-square >= observed) when each data set's ranks are permuted among the strategies, all
    equally likely: every permutation counted, by convolving the rank-sum vectors data set by data set."""
    ranks = np.asarray(ranks, dtype=np.float64)
    n, k = ranks.shape
    scale = 2  # average ranks are multiples of 1/2: count in halves, exactly
    dist: Counter = Counter({tuple([0] * k): 1})
    for row in ranks:
        moves = Counter(tuple(int(round(scale * v)) for v in p) for p in permutations(row))
        nxt: Counter = Counter()
        for sums, count in dist.items():
            for move, ways in moves.items():
                nxt[tuple(a + b for a, b in zip(sums, move))] += count * ways
        dist = nxt
    observed = friedman_statistic(ranks.sum(axis=0), n, k)
    total = sum(dist.values())
    hit = sum(count for sums, count in dist.items()
              if friedman_statistic(np.asarray(sums) / scale, n, k) >= observed - 1e-9)
    return hit / total


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_alpha of the Nemenyi test: the studentized range quantile for k groups and infinite df, over sqrt 2."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for k strategies on n data sets."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


@dataclass
class Friedman:
    """Mean ranks, Friedman's chi-square with its p, Iman-Davenport's F with its p, the exact permutation p,
    and Nemenyi's critical difference."""

    names: list[str]
    datasets: list[str]
    scores: np.ndarray  # data sets x strategies, points
    ranks: np.ndarray
    mean_ranks: np.ndarray
    chi2: float
    p_chi2: float
    f: float
    p_f: float
    p_exact: float | None
    cd: float

    @property
    def n(self) -> int:
        return len(self.datasets)

    @property
    def k(self) -> int:
        return len(self.names)

    def groups(self) -> list[list[str]]:
        """Maximal runs of strategies (in mean-rank order) whose mean ranks lie within the critical difference."""
        order = np.argsort(self.mean_ranks, kind="stable")
        r = self.mean_ranks[order]
        out: list[list[str]] = []
        for i in range(len(order)):
            j = i
            while j + 1 < len(order) and r[j + 1] - r[i] <= self.cd + 1e-12:
                j += 1
            group = [self.names[x] for x in order[i:j + 1]]
            if j > i and not any(set(group) <= set(g) for g in out):
                out.append(group)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"strategies": self.names, "datasets": self.datasets, "scores": self.scores.tolist(),
                "ranks": self.ranks.tolist(), "mean_ranks": self.mean_ranks.tolist(), "chi2": self.chi2,
                "p_chi2": self.p_chi2, "iman_davenport_f": self.f, "p_f": self.p_f, "p_exact": self.p_exact,
                "critical_difference": self.cd, "groups": self.groups(), "alpha": ALPHA}


EXACT_LIMIT = 2_000_000  # rank-sum states x permutations per data set beyond which the exact p is left out


def friedman(scores: Any, names: list[str], datasets: list[str]) -> Friedman:
    """The whole analysis of a data sets x strategies table of scores (higher is better)."""
    from scipy.stats import chi2 as chi2_dist, f as f_dist

    scores = np.asarray(scores, dtype=np.float64)
    n, k = scores.shape
    if n < 2 or k < 2:
        raise ValueError(f"ranks need at least 2 data sets and 2 strategies, got {n} and {k}")
    ranks = ranks_of(scores)
    mean_ranks = ranks.mean(axis=0)
    chi2 = friedman_statistic(ranks.sum(axis=0), n, k)
    f = iman_davenport(chi2, n, k)
    p_f = 0.0 if math.isinf(f) else float(f_dist.sf(f, k - 1, (k - 1) * (n - 1)))
    states = (n * k * 2) ** (k - 1)
    p_exact = exact_permutation_p(ranks) if states * math.factorial(k) <= EXACT_LIMIT else None
    return Friedman(list(names), list(datasets), scores, ranks, mean_ranks, chi2, float(chi2_dist.sf(chi2, k - 1)),
                    f, p_f, p_exact, critical_difference(k, n))


def cd_diagram(result: Friedman, path: Path, title: str) -> Path:
    """Demsar's critical-difference diagram: mean ranks on an axis (1 at the left, best), a bar CD long,
    thick lines joining strategies whose mean ranks lie within it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.k
    order = list(np.argsort(result.mean_ranks, kind="stable"))
    left, right = order[: (k + 1) // 2], order[(k + 1) // 2:]
    groups = result.groups()
    rows = max(len(left), len(right))
    top_of_labels = -0.35 - 0.22 * len(groups)
    bottom = top_of_labels - 0.4 * rows
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * (1.6 - bottom)))
    ax.set_xlim(0.3, k + 0.7)
    ax.set_ylim(bottom - 0.2, 1.6)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.12, color="black", lw=1)
        ax.text(r, 0.2, str(r), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.1, 1, 1 + result.cd, color="black", lw=2)
    ax.vlines([1, 1 + result.cd], 1.02, 1.18, color="black", lw=1)
    ax.text(1 + result.cd / 2, 1.22, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=9)
    for side, members in (("left", left), ("right", right)):
        for i, idx in enumerate(members if side == "left" else members[::-1]):
            y = top_of_labels - (i + 0.5) * 0.4
            x = result.mean_ranks[idx]
            ax.plot([x, x], [0, y], color="black", lw=0.8)
            end = 0.9 if side == "left" else k + 0.1
            ax.plot([x, end], [y, y], color="black", lw=0.8)
            ax.text(end + (-0.05 if side == "left" else 0.05), y, f"{result.names[idx]} ({x:.2f})",
                    ha="right" if side == "left" else "left", va="center", fontsize=9)
    for g, group in enumerate(groups):
        xs = [result.mean_ranks[result.names.index(name)] for name in group]
        y = -0.2 - 0.22 * g
        ax.hlines(y, min(xs) - 0.03, max(xs) + 0.03, color="tab:red", lw=3)
    ax.set_title(title, fontsize=10)
    caption = (f"mean rank over {result.n} data sets (1 = best); red lines join strategies whose mean ranks are "
               f"within the critical difference (Nemenyi, 5%): not separated. With {result.n} data sets and {k} "
               f"strategies two mean ranks must lie {result.cd:.2f} apart to differ. Friedman p = {result.p_chi2:.3g}, "
               f"Iman-Davenport p = {result.p_f:.3g}"
               + (f", exact permutation p = {result.p_exact:.3g}" if result.p_exact is not None else "") + ".")
    fig.text(0.5, 0.0, _wrap(caption, 105), ha="center", va="top", fontsize=8, color="#333")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


@dataclass
class RankInput:
    """The scores of one size: data sets x configurations, and what was left out and why."""

    size: int
    result: Friedman | None
    dropped: list[str]
    why_none: str | None = None


def dataset_name(meta: dict[str, Any], run_dir: Path) -> str:
    """A run's data set: its suite's ``dataset.path`` (last part), else the suite name, else the folder."""
    dataset = (meta.get("suite") or {}).get("dataset") or {}
    path = dataset.get("path") if isinstance(dataset, dict) else None
    return Path(path).name if isinstance(path, str) and path else str(meta.get("suite_name") or run_dir.name)


def load_scores(run_dirs: list[Path], tuned: bool = False) -> tuple[dict[int, dict[str, dict[str, float]]], list[str]]:
    """size -> data set -> configuration -> mean test accuracy over seeds (points), and the data sets in order.

    A configuration is the results table's row (``backbone strategy`` when the runs hold several
    backbones); a run with ``[select]`` gives its defaults table, or with ``tuned`` its tuned one.

    Raises:
        UsageError: a folder is not a run, two runs hold the same data set, or ``tuned`` without ``[select]``.
    """

    out: dict[int, dict[str, dict[str, float]]] = {}
    names: list[str] = []
    backbones: set[str] = set()
    found = []
    for run_dir in run_dirs:
        if not (run_dir / "trials.jsonl").exists():
            raise UsageError(f"{run_dir}: not a run folder (no trials.jsonl)")
        meta = RunStore(run_dir).meta()
        name = dataset_name(meta, run_dir)
        if name in names:
            raise UsageError(f"{run_dir}: data set {name!r} is already given by another run folder; rank one run per data set")
        names.append(name)
        frames = dict(table_frames(load_run(run_dir), meta.get("selection")))
        if tuned and "tuned" not in frames:
            raise UsageError(f"{run_dir}: --tuned needs a run with [select]; this one has none")
        table = frames["tuned" if tuned else "defaults" if "defaults" in frames else "trials"]
        rows = configs(table, tuned=tuned)
        backbones |= {c.backbone for c in rows}
        found.append((name, rows))
    for name, rows in found:
        for c in rows:
            label = f"{c.backbone} {c.label}" if len(backbones) > 1 else c.label
            out.setdefault(c.size, {}).setdefault(name, {})[label] = c.accuracy
    return out, names


def rank_sizes(run_dirs: list[Path], tuned: bool = False) -> list[RankInput]:
    """Friedman's analysis per size over the configurations every data set has."""
    scores, names = load_scores(run_dirs, tuned)
    out = []
    for size in sorted(scores):
        per_set = scores[size]
        present = [n for n in names if n in per_set]
        if len(present) < 2:
            out.append(RankInput(size, None, [], f"only {len(present)} data set has size {size}"))
            continue
        everywhere = [c for c in per_set[present[0]] if all(c in per_set[n] for n in present)]
        dropped = sorted({c for n in present for c in per_set[n]} - set(everywhere))
        if len(everywhere) < 2:
            out.append(RankInput(size, None, dropped, "fewer than 2 configurations are in every data set"))
            continue
        table = np.array([[per_set[n][c] for c in everywhere] for n in present])
        out.append(RankInput(size, friedman(table, everywhere, present), dropped))
    return out


def write_html(found: list[RankInput], figures: list[tuple[int, Path]], path: Path, runs: list[str]) -> Path:
    """One self-contained page: per size the table, the test statistics and the diagram."""
    import base64
    import html

    pictures = {size: p for size, p in figures}
    parts = [f"<h1>zoo-bench ranks across data sets</h1><p>Run folders: {html.escape(', '.join(runs))}</p>"]
    for item in found:
        r = item.result
        if r is None:
            parts.append(f"<h2>{item.size} images per class</h2><p>{html.escape(str(item.why_none))}</p>")
            continue
        order = sorted(range(r.k), key=lambda j: (r.mean_ranks[j], j))
        head = "".join(f"<th>{html.escape(d)}</th>" for d in r.datasets)
        rows = "".join(f"<tr><td>{html.escape(r.names[j])}</td>"
                       + "".join(f"<td>{r.scores[i, j]:.1f} ({r.ranks[i, j]:g})</td>" for i in range(r.n))
                       + f"<td>{r.mean_ranks[j]:.2f}</td></tr>" for j in order)
        exact = f", exact permutation p = {r.p_exact:.3g}" if r.p_exact is not None else ""
        uri = "data:image/png;base64," + base64.b64encode(pictures[item.size].read_bytes()).decode()
        parts.append(
            f"<h2>{item.size} images per class</h2><table><tr><th>configuration</th>{head}<th>mean rank</th></tr>{rows}"
            f"</table><p>Test accuracy, mean over seeds (rank within the data set). Friedman chi2({r.k - 1}) = "
            f"{r.chi2:.2f}, p = {r.p_chi2:.3g}; Iman-Davenport F({r.k - 1}, {(r.k - 1) * (r.n - 1)}) = {r.f:.2f}, "
            f"p = {r.p_f:.3g}{html.escape(exact)}; Nemenyi critical difference {r.cd:.2f} ranks at 5%.</p>"
            f"<figure><img alt='critical-difference diagram' src='{uri}'></figure>")
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>zoo-bench ranks</title><style>"
                    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
                    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}</style></head>"
                    "<body>" + "".join(parts) + "</body></html>\n")
    return path

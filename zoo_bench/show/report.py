"""Everything zoo-bench prints: progress while running, tables after. The only module that prints."""
from __future__ import annotations

import json
import math
from typing import Any, Callable

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..backend import EpochStats
from ..plan.trial import Trial
from ..results.evidence import format_p, table_frames
from ..results.selection import format_chosen
from ..results.stats import estimate, format_accuracy, format_estimate
from ..results.store import row_labels

CAPTION = ("test accuracy and time per epoch (median after the first): mean ± half-width of the 95% "
           "confidence interval over seeds (Student t), n seeds; a cell of one seed: accuracy \\[low, high] (1 "
           "seed), the 95% Wilson interval over its test images, which sees test-set sampling only, not another "
           "training run; a feature epoch trains a head on cached "
           "features, a cut epoch trains the blocks above the frozen ones on their cached activations, a pixel epoch "
           "runs the network over the images")

out = Console()
if not out.is_terminal and "COLUMNS" not in __import__("os").environ:
    out.width = 160  # logs and pipes: wide enough that names are not cut
err = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the width


class RichReporter:
    """Trials done of total with an ETA, and a line per running trial with its epochs.

    ``label`` names a trial in those lines (:class:`zoo_bench.plan.trial.TrialLabels`: what tells the run's
    trials apart); by default its whole id.
    """

    def __init__(self, console: Console | None = None, enabled: bool = True,
                 label: Callable[[Trial], str] | None = None):
        self.console = console or err
        self.enabled = enabled
        self.label = label or (lambda trial: trial.id)
        self.progress: Progress | None = None
        self.failed = 0
        self.running: dict[str, Any] = {}  # trial id -> its progress task

    def start(self, total: int, already_done: int) -> None:
        if already_done:
            self.console.print(f"resuming: {already_done} of {total} trials already finished, skipped")
        if not self.enabled:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TimeElapsedColumn(), console=self.console, transient=False,
            )
            self.progress.start()
        self.trials_task = self.progress.add_task("trials", total=total, completed=already_done)

    def trial_started(self, trial: Trial) -> None:
        if self.progress and trial.id not in self.running:
            self.running[trial.id] = self.progress.add_task(f"  {escape(self.label(trial))}", total=None)

    def epoch(self, trial: Trial, index: int, total: int, stats: EpochStats) -> None:
        if self.progress:
            self.trial_started(trial)
            val = f", val {stats.val_accuracy:.3f}" if stats.val_accuracy is not None else ""
            self.progress.update(self.running[trial.id], completed=index + 1, total=total,
                                 description=f"  {escape(self.label(trial))}: epoch {index + 1}/{total} ({stats.phase}, "
                                             f"{stats.seconds:.2f}s{val})")

    def trial_finished(self, trial: Trial, row: dict[str, Any]) -> None:
        name = escape(self.label(trial))
        if row["status"] == "diverged":
            self.console.print(f"[yellow]diverged[/yellow] {name}: {escape(str(row['error']))}")
        elif row["status"] != "ok":
            self.failed += 1
            self.console.print(f"[red]error[/red] {name}: {escape(str(row['error']))}")
        else:
            self.console.print(f"[green]ok[/green] {name}: test {row['test_accuracy']:.3f} "
                               f"({row['wall_s']:.1f}s)")
        if self.progress:
            self.progress.advance(self.trials_task)
            task = self.running.pop(trial.id, None)
            if task is not None:
                self.progress.remove_task(task)

    def note(self, trial: Trial, text: str) -> None:
        self.console.print(f"[yellow]note[/yellow] {escape(self.label(trial))}: {escape(text)}")

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None
        self.running.clear()


def _fmt_cell(group: pd.DataFrame) -> str:
    ok = group[group["status"] == "ok"]
    diverged = int((group["status"] == "diverged").sum())
    failed = len(group) - len(ok) - diverged
    div_text = f"[yellow]diverged ×{diverged}[/yellow]" if diverged else ""
    if ok.empty:
        return "\n".join(t for t in (div_text, f"[red]error ×{failed}[/red]" if failed else "") if t)
    text = format_accuracy(ok["test_accuracy"], ok["test_images"])
    ept = estimate(ok["epoch_time_s"].dropna())
    if ept is not None:
        seconds = _fmt_seconds(ept.mean)
        spread = f" ±{_fmt_seconds(ept.half_width)}" if ept.half_width is not None else ""
        heads = ok["head_epoch_time_s"] if "head_epoch_time_s" in ok.columns else pd.Series(dtype=float)
        on_features = bool(heads.notna().all() and (heads == ok["epoch_time_s"]).all())  # no pixel epoch
        from_cut = bool("cut" in ok.columns and ok["cut"].notna().all())  # the top trained on cached activations
        text += f"\n{seconds}{spread}/{'feature' if on_features else 'cut' if from_cut else 'pixel'} epoch"
    elif ok["train_time_s"].notna().any():
        text += f"\nfit {_fmt_seconds(ok['train_time_s'].astype(float).mean())}"
    if diverged:
        text += f"\n{div_text}"
    if failed:
        text += f"\n[red]{failed} failed[/red]"
    if "chosen" in ok.columns and ok["chosen"].notna().any():
        text += _fmt_tuning(ok)
    return text


def _fmt_tuning(ok: pd.DataFrame) -> str:
    """The chosen values, how many configurations were tried, and what tuning cost next to the chosen trial."""
    tried = int(ok["configs_tried"].max())
    tuning = float(ok["tuning_time_s"].astype(float).mean())
    chosen = float(ok["chosen_time_s"].astype(float).mean())
    by = sorted({str(b) for b, m in zip(ok["selected_by"], ok["select_metric"]) if not str(b).startswith(str(m))})
    fallback = f" (by {', '.join(by)})" if by else ""
    if "cv_accuracy" in ok.columns and ok["cv_accuracy"].notna().any():
        cv = ok["cv_accuracy"].astype(float).mean() * 100
        runner = pd.to_numeric(ok["cv_runner_up"], errors="coerce").mean() * 100
        sd = pd.to_numeric(ok["cv_sd"], errors="coerce").mean() * 100
        one_se = ", one-SE rule" if ok["selected_by"].astype(str).str.contains("one-SE").any() else ""
        fallback += f"\nfolds {cv:.1f} ±{sd:.1f} sd{one_se}; best other {runner:.1f}"
    refit = ""
    statuses = set(ok["refit_status"].dropna()) if "refit_status" in ok.columns else set()
    if statuses - {"ok"}:
        refit = f"\n[red]refit {', '.join(sorted(statuses - {'ok'}))}: not refit[/red]"
    return (f"\n[cyan]{escape(format_chosen(ok))}[/cyan]{fallback}"
            f"\nof {tried} configs; tuning {_fmt_seconds(tuning)} (chosen {_fmt_seconds(chosen)}){refit}")


def _fmt_seconds(s: float) -> str:
    if math.isnan(s):
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def results_tables(df: pd.DataFrame, title: str = "") -> list[Table]:
    """One table per backend: rows backbone x strategy, columns sizes; accuracy mean ± std over seeds."""
    tables = []
    if df.empty:
        return tables
    df = df.assign(row_label=row_labels(df))
    sizes = sorted(df["size_per_class"].unique())
    for backend, bdf in df.groupby("backend", sort=False):
        device = ", ".join(sorted({str(d) for d in bdf["device_name"].dropna().unique()})) or "-"
        table = Table(title=f"{title} [{backend}] on {device}".strip(),
                      caption=CAPTION,
                      show_lines=True)
        table.add_column("backbone")
        table.add_column("strategy")
        for size in sizes:
            table.add_column(f"n={size}/class", justify="right")
        for (backbone, label), group in bdf.groupby(["backbone", "row_label"], sort=False):
            cells = []
            for size in sizes:
                g = group[group["size_per_class"] == size]
                cells.append(_fmt_cell(g) if len(g) else "")
            table.add_row(escape(backbone), escape(label), *cells)
        tables.append(table)
    return tables


def comparison_table(df: pd.DataFrame, title: str = "") -> Table | None:
    """Backends side by side per size, with the accuracy difference (points) against the first backend."""
    backends = list(dict.fromkeys(df["backend"]))
    if len(backends) < 2:
        return None
    df = df.assign(row_label=row_labels(df))
    ref = backends[0]
    table = Table(title=f"{title} backends side by side".strip(), show_lines=True,
                  caption=f"Δ: mean test accuracy minus {ref}'s, in points; " + CAPTION)
    table.add_column("backbone")
    table.add_column("strategy")
    sizes = sorted(df["size_per_class"].unique())
    for size in sizes:
        for backend in backends:
            table.add_column(f"n={size} {backend}", justify="right")
        for backend in backends[1:]:
            table.add_column(f"n={size} Δ {backend}", justify="right")
    for (backbone, label), group in df.groupby(["backbone", "row_label"], sort=False):
        cells = []
        for size in sizes:
            means = {}
            for backend in backends:
                g = group[(group["size_per_class"] == size) & (group["backend"] == backend)]
                cells.append(_fmt_cell(g) if len(g) else "")
                ok = g[g["status"] == "ok"]
                means[backend] = ok["test_accuracy"].astype(float).mean() * 100 if len(ok) else float("nan")
            for backend in backends[1:]:
                delta = means[backend] - means[ref]
                cells.append("-" if math.isnan(delta) else f"{delta:+.1f}")
        table.add_row(escape(backbone), escape(label), *cells)
    return table


def grouped_table(df: pd.DataFrame, by: list[str], title: str = "") -> Table:
    """Any result columns as rows; accuracy and time per epoch with their intervals, and n."""
    df = df.copy()
    for col in by:
        df[col] = df[col].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    table = Table(title=f"{title} by {', '.join(by)}".strip(), caption=CAPTION)
    for col in by:
        table.add_column(col)
    for col in ("trials", "test accuracy", "time per epoch", "errors", "diverged"):
        table.add_column(col, justify="right")
    for key, group in df.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = group[group["status"] == "ok"]
        ept = estimate(ok["epoch_time_s"].dropna())
        time_text = "-" if ept is None else format_estimate(ept, unit=" s", digits=3)
        table.add_row(*(escape(str(k)) for k in key), str(len(group)),
                      format_accuracy(ok["test_accuracy"], ok["test_images"]), time_text,
                      str(int((group["status"] == "error").sum())), str(int((group["status"] == "diverged").sum())))
    return table


def print_tables(df: pd.DataFrame, title: str = "", selection: dict[str, Any] | None = None,
                 show_all: bool = False, evidence: Any = None,
                 frames: list[tuple[str, pd.DataFrame]] | None = None) -> None:
    """The run's tables. A run with ``[select]`` shows its defaults and its tuned choice (``show_all``: every
    configuration); ``evidence`` (:func:`zoo_bench.results.evidence.analyse`) adds what to use under them.
    ``frames``: :func:`zoo_bench.results.evidence.table_frames` of ``df`` where the caller has them already."""
    if selection and not show_all:
        metric = selection.get("metric", "val_accuracy")
        if selection.get("folds"):
            metric = (f"{selection['folds']}-fold cross-validation"
                      + (f" x {selection['repeats']}" if (selection.get("repeats") or 1) > 1 else ""))
        named = dict(frames if frames is not None else table_frames(df, selection))
        for table in results_tables(named["defaults"], f"{title} defaults"):
            table.caption = "each strategy at its default settings; " + CAPTION
            out.print(table)
        for table in results_tables(named["tuned"], f"{title} tuned on {metric}"):
            refit = " refit on train + validation, then tested;" if selection.get("refit") else ""
            how = (f"the configuration with the best mean accuracy on the held-out folds of the size's train and "
                   f"validation images{' (one-SE rule: the simplest within one standard error of it)' if selection.get('one_se') else ''}; "
                   "strategies without folds: the best val_accuracy" if selection.get("folds") else
                   f"the configuration with the best {metric} (ties: validation loss, then trial id)")
            table.caption = (f"per seed, {how};{refit} its test accuracy; the chosen values (×seeds), configurations tried, tuning = "
                             "total trial time of a seed's configurations, mean over seeds; " + CAPTION)
            out.print(table)
    else:
        for table in results_tables(df, title):
            out.print(table)
        if not df.empty:
            side_by_side = comparison_table(df, title)
            if side_by_side is not None:
                out.print(side_by_side)
    if evidence is not None and not show_all:
        print_recommendations(evidence)


TABLE_NAMES = {"trials": "", "defaults": " at default settings", "tuned": " tuned on validation"}

RECOMMENDATION_NOTE = (
    "best: the highest mean test accuracy of the cell (backend, backbone, size). Equivalent: the 90% interval of "
    "(candidate - best) lies above -{eq:g} pt ([compare] equivalence). Otherwise not separated or worse by the "
    "paired test against the best, Holm-corrected within the cell (5%), not across cells. Differences are paired "
    "on the same test images and seeds: with several seeds a t interval whose variance adds the spread over seeds "
    "and the sampling of test images; with one seed exact McNemar and Newcombe's paired Wilson interval, which "
    "see the test images only, not another training run. With 3 seeds the critical t can reach 4.30: use 5 or "
    "more seeds for decisions. Cheapest to train: the fit or the epochs (tuned: every configuration tried, refit "
    "included); decoding, feature extraction and evaluation left out. `zoo-bench show RUN --versus`: every pair.")


def print_recommendations(evidence: Any) -> None:
    """What to use, per cell and per size across backbones, under the tables."""
    shown = False
    for t in evidence.tables:
        if not t.recommendations:
            continue
        shown = True
        out.print(f"[bold]what to use{TABLE_NAMES.get(t.name, ' (' + t.name + ')')}[/bold]")
        for rec in t.recommendations:
            out.print(f"  {escape(rec.backend)} {escape(rec.backbone or '')} {escape(rec.text())}", highlight=False)
        for rec in t.across:
            out.print(f"  {escape(rec.backend)} {escape(rec.text())}", highlight=False)
    if shown:
        out.print(f"[dim]{escape(RECOMMENDATION_NOTE.format(eq=evidence.equivalence))}[/dim]", highlight=False)


def _p_text(p: float | None) -> str:
    return format_p(p).replace("p=", "").replace("p<", "<").replace("p -", "-")


def _diff_cells(c: Any, ninety: bool = False) -> list[str]:
    """Δ, its interval, p, Holm p (with * below 5%), seeds x images and how it was tested."""
    if c.diff is None:
        return ["-", f"[yellow]not paired: {escape(str(c.why))}[/yellow]", "-", "-", "-", "-"]
    d = c.diff
    low, high = (d.low90, d.high90) if ninety else (d.low, d.high)
    mark = "*" if c.p_holm is not None and c.p_holm < 0.05 else ""
    how = {"seeds+images": f"t, df {d.df:.0f}" if d.df is not None else "t", "mcnemar": "McNemar (test images only)",
           "identical": "identical"}[d.method]
    return [f"{d.delta:+.2f}", f"{low:+.2f} ... {high:+.2f}", _p_text(d.p), _p_text(c.p_holm) + mark,
            f"{d.seeds} x {d.images}", how]


PAIR_COLUMNS = ("A - B", "95% CI", "p", "Holm", "paired", "test")
NUMERIC_COLUMNS = {"n", "A - B", "cand - best", "tuned - default", "p", "Holm"}


def _pairs_table(title: str, caption: str, columns: tuple[str, ...], groups: list[list[list[str]]]) -> Table:
    """A table of comparisons, a section per cell."""
    table = Table(title=title, caption=caption)
    for col in columns:
        table.add_column(col, justify="right" if col in NUMERIC_COLUMNS else "left")
    for rows in groups:
        for cells in rows:
            table.add_row(*cells)
        table.add_section()
    return table


def versus_tables(evidence: Any) -> list[Table]:
    """``show --versus``: every pair of each table, the comparisons with the best, tuned against default."""
    tables = []
    for t in evidence.tables:
        name = TABLE_NAMES.get(t.name, f" ({t.name})")
        if t.cells:
            tables.append(_pairs_table(
                f"paired differences{name}: every pair of a cell",
                "A - B in points of test accuracy, A the higher mean; 95% interval; p of the paired test; Holm: "
                "corrected over every pair of the cell (* below 0.05), not across cells; seeds x test images paired; "
                "t: variance over seeds plus over test images, Welch-Satterthwaite df; McNemar: one seed, exact test "
                "and Newcombe's interval", ("backend", "backbone", "n", "A", "B") + PAIR_COLUMNS,
                [[[escape(backend), escape(backbone), str(size), escape(c.a.label), escape(c.b.label), *_diff_cells(c)]
                  for c in comps] for backend, backbone, size, comps in t.cells]))
        if t.recommendations:
            tables.append(_pairs_table(
                f"against the best{name}", "candidate - best in points; 90% interval (the equivalence test); Holm: "
                "corrected over the cell's comparisons with its best; verdict as under the results tables",
                ("backend", "backbone", "n", "best", "candidate", "cand - best", "90% CI") + PAIR_COLUMNS[2:] + ("verdict",),
                [[[escape(rec.backend), escape(rec.backbone or "(all)"), str(rec.size),
                   escape(rec.best.name(rec.with_backbone)), escape(c.a.name(rec.with_backbone)),
                   *_diff_cells(c, ninety=True), rec.verdicts[c.a.name(rec.with_backbone)]] for c in rec.versus]
                 for rec in t.recommendations + t.across if rec.versus]))
        if t.backbones:
            tables.append(_pairs_table(
                f"one strategy across backbones{name}", "A - B in points, A the higher mean; 95% interval; Holm over "
                "the backbones' pairs of one strategy and size", ("backend", "strategy", "n", "A", "B") + PAIR_COLUMNS,
                [[[escape(backend), escape(label), str(size), escape(c.a.backbone), escape(c.b.backbone), *_diff_cells(c)]
                  for c in comps] for backend, label, size, comps in t.backbones]))
    if evidence.tuning:
        tables.append(_pairs_table(
            "did tuning help? tuned minus default", "per strategy, the tuned configuration's test accuracy minus its "
            "default's, in points; 95% interval; Holm over the strategies of the cell",
            ("backend", "backbone", "n", "strategy", "tuned - default") + PAIR_COLUMNS[1:],
            [[[escape(backend), escape(backbone), str(size), escape(c.a.label), *_diff_cells(c)] for c in comps]
             for backend, backbone, size, comps in evidence.tuning]))
    return tables


def rank_table(item: Any) -> Table:
    """``zoo-bench rank``: per size, each configuration's score and rank on each data set, and its mean rank."""
    r = item.result
    order = sorted(range(r.k), key=lambda j: (r.mean_ranks[j], j))
    exact = f"; exact permutation p = {r.p_exact:.3g}" if r.p_exact is not None else ""
    groups = "; ".join(" = ".join(g) for g in r.groups()) or "none: every pair differs"
    dropped = f"; left out (not in every data set): {', '.join(item.dropped)}" if item.dropped else ""
    table = Table(title=f"ranks across {r.n} data sets at {item.size} images per class",
                  caption=escape(
                      f"test accuracy, mean over seeds (rank within the data set, 1 = best); Friedman chi2({r.k - 1}) = "
                      f"{r.chi2:.2f}, p = {r.p_chi2:.3g}; Iman-Davenport F({r.k - 1}, {(r.k - 1) * (r.n - 1)}) = "
                      f"{r.f:.2f}, p = {r.p_f:.3g}{exact}. Nemenyi critical difference {r.cd:.2f} ranks at 5% "
                      f"({r.n} data sets, {r.k} configurations): mean ranks closer than that are not separated "
                      f"({groups}). Descriptive below 6 data sets: no pairwise tests{dropped}"))
    table.add_column("configuration")
    for name in r.datasets:
        table.add_column(escape(name), justify="right")
    table.add_column("mean rank", justify="right")
    for j in order:
        table.add_row(escape(r.names[j]), *(f"{r.scores[i, j]:.1f} ({r.ranks[i, j]:g})" for i in range(r.n)),
                      f"{r.mean_ranks[j]:.2f}")
    return table


def message(text: str) -> None:
    """A one-line note to the user (stderr, so tables on stdout stay clean)."""
    err.print(text, highlight=False, markup=False)


def error(text: str) -> None:
    """A one-line error (stderr)."""
    err.print(f"error: {text}", style="red", highlight=False, markup=False)


def _fmt_metric(e, metric: str) -> str:
    if e is None:
        return "-"
    if metric == "accuracy":
        return format_estimate(e, scale=100, unit="%")
    return format_estimate(e, unit=" s", digits=3)


def _fmt_delta(line) -> str:
    if line.delta is None:
        return "-"
    return f"{line.delta:+.2f} pt" if line.metric == "accuracy" else f"{line.delta * 100:+.1f}%"


STATUS_STYLE = {"pass": "green", "fail": "red", "error": "red", "missing": "red", "new": "yellow",
                "skipped": "yellow", "info": "dim"}


def compare_table(result, baseline_label: str, current_label: str) -> Table:
    """Per configuration and metric: baseline, current, delta, status."""
    table = Table(title=f"compare {baseline_label} -> {current_label}",
                  caption="mean ± half-width of the 95% CI over seeds; accuracy deltas in points, time in %")
    for col in ("trial (all seeds)", "metric", "baseline", "current", "delta", "status"):
        table.add_column(col, justify="right" if col in ("baseline", "current", "delta") else "left")
    for line in result.lines:
        style = STATUS_STYLE.get(line.status, "")
        status = f"[{style}]{line.status}[/{style}]" + (f" {escape(line.note)}" if line.note else "")
        table.add_row(escape(line.config), line.metric, _fmt_metric(line.baseline, line.metric),
                      _fmt_metric(line.current, line.metric), _fmt_delta(line), status)
    return table


def compare_markdown(result, baseline_label: str, current_label: str) -> str:
    """The same comparison as a Markdown table (for a CI job summary)."""
    verdict = {0: "pass", 1: "regression", 3: "broken run (errored or missing trials)"}.get(result.exit_code, "")
    out = [f"### zoo-bench compare: {verdict}", "", f"baseline `{baseline_label}`, current `{current_label}`", ""]
    out += [f"> warning: {w}" for w in result.warnings]
    out += ["", "| trial (all seeds) | metric | baseline | current | delta | status |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for line in result.lines:
        note = f" ({line.note})" if line.note else ""
        out.append(f"| `{line.config}` | {line.metric} | {_fmt_metric(line.baseline, line.metric)} | "
                   f"{_fmt_metric(line.current, line.metric)} | {_fmt_delta(line)} | {line.status}{note} |")
    return "\n".join(out) + "\n"

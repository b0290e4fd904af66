"""One self-contained report file (Markdown or HTML) of a run: tables, plots, machine, suite."""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..results.selection import display_frame, format_chosen
from ..results.stats import estimate, format_accuracy
from ..results.store import row_labels
from .plots import confusion_configurations, plot_run
from .report import RECOMMENDATION_NOTE, TABLE_NAMES


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rows backend x backbone x strategy, a column per size: accuracy and time, with 95% CIs."""
    rows: list[dict[str, Any]] = []
    df = df.assign(label=row_labels(df))
    for (backend, backbone, label), group in df.groupby(["backend", "backbone", "label"], sort=False):
        row: dict[str, Any] = {"backend": backend, "backbone": backbone, "strategy": label}
        for size, g in sorted(group.groupby("size_per_class")):
            ok = g[g["status"] == "ok"]
            acc = format_accuracy(ok["test_accuracy"], ok["test_images"])
            ept = estimate(ok["epoch_time_s"].dropna())
            row[f"n={size}"] = acc + ("" if ept is None else f"; {ept.mean:.3g} s/epoch")
            if "chosen" in ok.columns and ok["chosen"].notna().any():
                row[f"n={size}"] += (f"; chose {format_chosen(ok)} of {int(ok['configs_tried'].max())} configs; "
                                     f"tuning {ok['tuning_time_s'].astype(float).mean():.3g} s")
            for status in ("error", "diverged"):
                count = int((g["status"] == status).sum())
                if count:
                    row[f"n={size}"] += f"; {count} {'failed' if status == 'error' else 'diverged'}"
        rows.append(row)
    return pd.DataFrame(rows)


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


# What each plot shows, read from its file name: a heading and a caption for the report.
PLOT_TEXT = {
    "accuracy": ("Accuracy against images per class",
                 "Test accuracy per strategy, mean over seeds with its 95% confidence band, against the number "
                 "of training images per class (log scale)."),
    "epoch_time": ("Time per epoch",
                   "Median seconds of a training epoch after the first, per strategy and size (log scale)."),
    "learning_curves": ("Learning curves",
                        "Train loss (solid, left axis) and validation accuracy (dashed, right axis) per epoch, one "
                        "colour per size; the dashed vertical line marks where fine-tuning starts after the head "
                        "epochs, a star the epoch whose weights were kept."),
    "versus": ("Paired differences",
               "Per cell (backend, backbone, size) and table, the test accuracy of the row's configuration minus the "
               "column's, in points, paired on the same test images and seeds; rows and columns in order of mean "
               "accuracy (given beside each row). * marks a pair the paired test separates after Holm's correction "
               "over the cell's pairs (5%), no correction across cells; n/p: not paired."),
    "cost": ("Accuracy against training cost",
             "Test accuracy of each successful trial against the seconds it spent training and extracting "
             "features (whole trial time where those were not recorded), log scale; colour is the strategy, "
             "marker the images per class."),
}


def _figures(df: pd.DataFrame, meta: dict[str, Any], evidence: Any = None
             ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(heading, caption, data URI) of the plots, and of the confusion matrices, in report order."""
    classes = meta.get("classes")
    classes = [str(c) for c in classes] if isinstance(classes, list) else None
    configs = confusion_configurations(df, classes)
    plots: list[tuple[str, str, str]] = []
    confusions: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in plot_run(df, Path(tmp), meta.get("suite_name", "run"), classes, evidence=evidence):
            if path.stem.startswith("confusion_"):
                group = configs[int(path.stem.split("_")[1]) - 1]
                seeds = f"Summed over {group.seeds} seeds" if group.seeds > 1 else "One seed"
                confusions.append((group.name, f"{seeds}; configuration {group.config}.", _png_uri(path)))
            else:
                heading, caption = PLOT_TEXT.get(path.stem, (path.stem.replace("_", " "), ""))
                plots.append((heading, caption, _png_uri(path)))
    return plots, confusions


CONFUSION_INTRO = ("Test images per true class (rows) and predicted class (columns) for each configuration, "
                   "summed over its seeds. Colour is the share of the true class; each cell gives the count and "
                   "that share.")


ACTIVATION_INTRO = ("Grad-CAM (Selvaraju et al. 2017) of the predicted class for the first test images of each "
                    "class: each column shows an image (titled true -> predicted class) and, below it, where the "
                    "network found the evidence (red: most).")


def activation_figures(df: pd.DataFrame, run_dir: Path | None) -> list[tuple[str, str, str]]:
    """(heading, caption, data URI) of each trial's activation-map PNG (``run --activation-maps``)."""
    if run_dir is None or "activation_maps_file" not in df.columns:
        return []
    out = []
    for _, row in df.iterrows():
        name = row.get("activation_maps_file")
        if isinstance(name, str) and (Path(run_dir) / name).is_file():
            out.append((f"{row['backbone']} {row['strategy']}, {row['size_per_class']} per class, seed {row['seed']}",
                        str(row["trial_id"]), _png_uri(Path(run_dir) / name)))
    return out


def write_report(df: pd.DataFrame, meta: dict[str, Any], out: Path, fmt: str, run_dir: Path | None = None,
                 evidence: Any = None) -> Path:
    """Write the report to ``out``; images are embedded, so the file stands alone. ``evidence`` (the
    run's :func:`zoo_bench.results.evidence.analyse`) adds what to use and the paired differences."""

    title = f"zoo-bench report: {meta.get('suite_name', 'run')} / {meta.get('run_id', '')}"
    trials = len(df)
    failed = int((df["status"] == "error").sum())
    found = evidence
    advice = [] if found is None else [
        (f"What to use{TABLE_NAMES.get(t.name, ' (' + t.name + ')')}",
         [" ".join(x for x in (r.backend, r.backbone, r.text()) if x) for r in t.recommendations + t.across])
        for t in found.tables if t.recommendations]
    note = RECOMMENDATION_NOTE.format(eq=found.equivalence) if found is not None else ""
    df = display_frame(df, meta.get("selection"))  # a tuned run: defaults and tuned rows
    table = summary_frame(df)
    machine = {k: meta.get(k) for k in ("devices", "cpu_count", "platform", "versions", "git_commit", "started_at")}
    plots, confusions = _figures(df, meta, found)
    maps = activation_figures(df, run_dir)
    suite_json = json.dumps(meta.get("suite", {}), indent=2, default=str)
    machine_json = json.dumps(machine, indent=2, default=str)
    if fmt == "md":
        parts = [f"# {title}", "", f"{trials} trials, {failed} failed. Cells: test accuracy, mean ± half-width of "
                 "the 95% CI over seeds (Student t), or for one seed \\[the 95% Wilson interval over its test images\\], "
                 "and the mean time per epoch.", "",
                 table.to_markdown(index=False), ""]
        for heading, lines in advice:
            parts += [f"## {heading}", ""] + [f"- {_md_text(line)}" for line in lines] + ["", _md_text(note), ""]
        for heading, caption, uri in plots:
            parts += [f"## {heading}", "", caption, "", f"![{heading}]({uri})", ""]
        if confusions:
            parts += ["## Confusion matrices", "", CONFUSION_INTRO, ""]
            for config, caption, uri in confusions:
                parts += [f"### {_md_text(config)}", "", _md_text(caption), "", f"![confusion matrix]({uri})", ""]
        if maps:
            parts += ["## Activation maps", "", ACTIVATION_INTRO, ""]
            for heading, caption, uri in maps:
                parts += [f"### {_md_text(heading)}", "", _md_text(caption), "", f"![activation maps]({uri})", ""]
        parts += ["## Machine and packages", "", "```json", machine_json, "```", "", "## Suite as run", "",
                  "```json", suite_json, "```", ""]
        out.write_text("\n".join(parts))
    else:
        def figure(heading: str, caption: str, uri: str, level: int) -> str:
            return (f"<h{level}>{html.escape(heading)}</h{level}><figure><img alt=\"{html.escape(heading)}\" "
                    f"src=\"{uri}\"><figcaption>{html.escape(caption)}</figcaption></figure>")

        imgs = "".join(figure(h, c, u, 2) for h, c, u in plots)
        if confusions:
            imgs += (f"<h2>Confusion matrices</h2><p>{html.escape(CONFUSION_INTRO)}</p>"
                     + "".join(figure(h, c, u, 3) for h, c, u in confusions))
        if maps:
            imgs += (f"<h2>Activation maps</h2><p>{html.escape(ACTIVATION_INTRO)}</p>"
                     + "".join(figure(h, c, u, 3) for h, c, u in maps))
        out.write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "img{max-width:100%}figure{margin:0 0 2em}.note{color:#444;font-size:90%}"
            "figcaption{color:#444;font-size:90%;max-width:60em;overflow-wrap:anywhere}"
            "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{trials} trials, {failed} failed. Cells: test accuracy, mean ± "
            "half-width of the 95% CI over seeds (Student t), or for one seed [the 95% Wilson interval over its test "
            "images], and the mean time per epoch.</p>"
            f"{table.to_html(index=False, escape=True)}"
            + "".join(f"<h2>{html.escape(heading)}</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
                      + f"</ul><p class='note'>{html.escape(note)}</p>" for heading, lines in advice)
            + f"{imgs}"
            f"<h2>Machine and packages</h2><pre>{html.escape(machine_json)}</pre>"
            f"<h2>Suite as run</h2><pre>{html.escape(suite_json)}</pre></body></html>\n")
    return out


def _md_text(text: str) -> str:
    """Text safe in Markdown: trial ids hold ``[...]`` and ``*`` that would otherwise become links or emphasis."""
    return "".join("\\" + c if c in "\\`*_[]<>#|" else c for c in text)

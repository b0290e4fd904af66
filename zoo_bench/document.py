"""One self-contained report file (Markdown or HTML) of a run: tables, plots, machine, suite."""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .plots import plot_run
from .results import row_labels
from .stats import estimate, format_estimate


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rows backend x backbone x strategy, a column per size: accuracy and time, with 95% CIs."""
    rows: list[dict[str, Any]] = []
    df = df.assign(label=row_labels(df))
    for (backend, backbone, label), group in df.groupby(["backend", "backbone", "label"], sort=False):
        row: dict[str, Any] = {"backend": backend, "backbone": backbone, "strategy": label}
        for size, g in sorted(group.groupby("size_per_class")):
            ok = g[g["status"] == "ok"]
            acc = format_estimate(estimate(ok["test_accuracy"]), scale=100, unit="%")
            ept = estimate(ok["epoch_time_s"].dropna())
            row[f"n={size}"] = acc + ("" if ept is None else f"; {ept.mean:.3g} s/epoch")
            for status in ("error", "diverged"):
                count = int((g["status"] == status).sum())
                if count:
                    row[f"n={size}"] += f"; {count} {'failed' if status == 'error' else 'diverged'}"
        rows.append(row)
    return pd.DataFrame(rows)


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(df: pd.DataFrame, meta: dict[str, Any], out: Path, fmt: str) -> Path:
    """Write the report to ``out``; images are embedded, so the file stands alone."""
    title = f"zoo-bench report: {meta.get('suite_name', 'run')} / {meta.get('run_id', '')}"
    table = summary_frame(df)
    machine = {k: meta.get(k) for k in ("devices", "cpu_count", "platform", "versions", "git_commit", "started_at")}
    with tempfile.TemporaryDirectory() as tmp:
        plots = plot_run(df, Path(tmp), meta.get("suite_name", "run"))
        images = [(p.stem.replace("_", " "), _png_uri(p)) for p in plots]
    suite_json = json.dumps(meta.get("suite", {}), indent=2, default=str)
    machine_json = json.dumps(machine, indent=2, default=str)
    failed = int((df["status"] == "error").sum())
    if fmt == "md":
        parts = [f"# {title}", "", f"{len(df)} trials, {failed} failed. Cells: test accuracy, mean ± half-width of "
                 "the 95% CI over seeds (Student t), and the mean time per epoch.", "",
                 table.to_markdown(index=False), ""]
        parts += [f"![{name}]({uri})\n" for name, uri in images]
        parts += ["## Machine and packages", "", "```json", machine_json, "```", "", "## Suite as run", "",
                  "```json", suite_json, "```", ""]
        out.write_text("\n".join(parts))
    else:
        imgs = "".join(f'<figure><img alt="{html.escape(n)}" src="{u}"><figcaption>{html.escape(n)}</figcaption>'
                       f"</figure>" for n, u in images)
        out.write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{len(df)} trials, {failed} failed. Cells: test accuracy, mean ± "
            "half-width of the 95% CI over seeds (Student t), and the mean time per epoch.</p>"
            f"{table.to_html(index=False, escape=True)}{imgs}"
            f"<h2>Machine and packages</h2><pre>{html.escape(machine_json)}</pre>"
            f"<h2>Suite as run</h2><pre>{html.escape(suite_json)}</pre></body></html>\n")
    return out

"""Results on disk: ``run.json``, ``trials.jsonl`` appended per trial, and a table for pandas."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = [
    "trial_id", "backend", "backbone", "strategy", "params", "size_per_class", "seed", "status", "error",
    "test_accuracy", "val_accuracy", "epochs", "epoch_time_s", "first_epoch_s", "head_epoch_time_s",
    "feature_time_s", "train_time_s", "train_images_per_s", "peak_memory_mb", "trainable_params",
    "total_params", "skipped_images", "train_images", "val_images", "test_images", "image_size", "device",
    "device_name", "precision", "wall_s", "finished_at",
]


def new_run_id() -> str:
    """A time-stamped run id, sortable: ``20261122-101500``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


class RunStore:
    """One run folder. Rows are appended and flushed as each trial ends, so a crash loses none."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.jsonl = run_dir / "trials.jsonl"

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``run.json`` (kept from the first start; later resumes are appended to ``resumes``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "run.json"
        if path.exists():
            old = json.loads(path.read_text())
            old.setdefault("resumes", []).append({"started_at": meta["started_at"], "versions": meta.get("versions")})
            meta = old
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        os.replace(tmp, path)

    def append(self, row: dict[str, Any]) -> None:
        """Append one trial row and make it durable before returning."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.jsonl, "a+b") as fh:
            if fh.tell() > 0:  # a crash mid-write leaves a cut line: start on a fresh one
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write((json.dumps(row, default=_json_default) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """The latest row per trial id (a retried trial replaces its earlier error), in file order."""
        if not self.jsonl.exists():
            return []
        latest: dict[str, dict[str, Any]] = {}
        with open(self.jsonl) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash mid-write
                    continue
                latest.pop(row["trial_id"], None)
                latest[row["trial_id"]] = row
        return list(latest.values())

    def finished_ids(self) -> set[str]:
        """Trials that finished with status ok (skipped on resume; errors are retried)."""
        return {r["trial_id"] for r in self.rows() if r.get("status") == "ok"}

    def meta(self) -> dict[str, Any]:
        path = self.run_dir / "run.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def write_table(self) -> Path:
        """``trials.parquet`` (``trials.csv`` where pyarrow is missing); params as a JSON string."""
        df = to_dataframe(self.rows())
        flat = df.copy()
        flat["params"] = flat["params"].map(lambda p: json.dumps(p, sort_keys=True))
        try:
            path = self.run_dir / "trials.parquet"
            flat.to_parquet(path, index=False)
        except ImportError:
            path = self.run_dir / "trials.csv"
            flat.to_csv(path, index=False)
        return path


def to_dataframe(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every documented column present."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def row_labels(df: pd.DataFrame) -> list[str]:
    """Each row's strategy with only the parameters that vary between its trials: the table's row name."""
    from .grid import strategy_label

    varying: dict[str, set[str]] = {}
    for strategy, group in df.groupby("strategy"):
        params = list(group["params"])
        varying[strategy] = {k for k in {k for p in params for k in p} if len({repr(p.get(k)) for p in params}) > 1}
    return [strategy_label(s, {k: v for k, v in p.items() if k in varying[s]})
            for s, p in zip(df["strategy"], df["params"])]


def load_run(run_dir: Path) -> pd.DataFrame:
    """A run folder's trials as a DataFrame (from the jsonl, so it works mid-run too)."""
    return to_dataframe(RunStore(run_dir).rows())


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)
